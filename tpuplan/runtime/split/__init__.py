"""Segment files: cutting a model, the manifest, writing a split, the Edge TPU compiler."""
