"""The exact searches: labels, the reference, bounds, CP-SAT, copies."""
