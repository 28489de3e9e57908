"""Defaults the CLI shows without importing the ensemble's numeric code."""

MIN_GAIN = 0.02  # out-of-fold mAP a fusion must gain over the best single member to be chosen instead of it
SECOND_TRIAL_SHARE = 0.65  # under "cv", a fusion across trials needs a second trial whose best member scores at least
# this share of the best member's mAP on the videos it is fitted on; without one there is one strong member and every
# fusion is the best single (select.across_trials). 0 turns the gate off
