"""Split a model into segments and run them as a pipeline."""
