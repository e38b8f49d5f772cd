"""Benchmarks and probes, each a script whose docstring gives its commands; they write
their results (the device in the file name) to benchmarks/results/, and docs/ quotes them:

  mixers, luna_rate, train_speed   time and memory against length: one layer of every
                                   mixer, Luna against its matrix-product rate, whole
                                   Text training steps
  mlm_perplexity                   masked-LM perplexity against length at a fixed budget
  pathfinder_images, pathfinder_speed, pathfinder_cnn_probe
                                   generated Pathfinder images against the original, the
                                   generator's speed, a plain CNN on generated images
  tpu_compile, tpu_longest_sequence, tpu_compile_time
                                   every config compiled for TPU slices, the longest
                                   sequence per chip, what the compile time is made of
  accelerator_check.sh             the first command to run on a GPU machine
  curve                            a run's loss and accuracy against steps, from its
                                   metrics.jsonl
  common                           the timing and memory helpers they share
"""
