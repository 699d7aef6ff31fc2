"""Prices: device and host specs, per-op prices, the cost formula, the stage tables."""
