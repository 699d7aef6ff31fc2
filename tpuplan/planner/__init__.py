"""Optimal contiguous segmentation of a profiled model over K accelerators (OR-Tools CP-SAT)."""
