"""Data: atomic I/O with CF attributes, the target grid, data prep, field plots, synthetic study."""
