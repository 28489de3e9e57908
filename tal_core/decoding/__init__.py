"""Decoding: interval probabilities -> scored segments, evaluation of a split, the decoding choice (no torch)."""
