"""The lowest layer: atomic file IO, fixed-shape batching, summary statistics."""
