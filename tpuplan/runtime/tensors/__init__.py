"""Inputs fed to a run and the outputs it writes."""
