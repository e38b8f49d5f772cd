"""Configurations of the LRA tasks (ml_collections; see each file's docstring)."""
