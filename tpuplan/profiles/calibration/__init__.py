"""Fitting device and host specs to real measurements."""
