"""Where a segment runs: the interpreter, the Edge TPU delegate, the probe."""
