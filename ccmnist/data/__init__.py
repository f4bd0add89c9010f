"""Data: MNIST loading, the palette, coloring and the study's splits."""
