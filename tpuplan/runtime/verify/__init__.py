"""Predicted against measured: verify, its report, the refit, pictures."""
