"""Defaults the CLI shows without importing the ensemble's numeric code."""

MIN_GAIN = 0.02  # out-of-fold mAP a fusion must gain over the best single member to be chosen instead of it
