"""Reading, tokenizing and batching text-classification data."""
