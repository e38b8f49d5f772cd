"""The models around the encoder, one module each: the LRA classifier (`classifier`),
the masked or causal language model and its inputs (`language_model`), the encoder-
decoder translation model with its cached decoding (`seq2seq`), and the token embedding
the classifier and the language model share (`embeddings`), so that pre-trained weights
start a classifier.
"""
