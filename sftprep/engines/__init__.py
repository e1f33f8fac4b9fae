"""Engines: where the per-batch transform runs (worker processes here, or Ray)."""
