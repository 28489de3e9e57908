"""Scoring: mAP, the challenge's bins, file formats and the prediction store (numpy only, no torch)."""
