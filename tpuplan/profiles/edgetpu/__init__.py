"""What the Edge TPU compiler does to a model: which ops it maps."""
