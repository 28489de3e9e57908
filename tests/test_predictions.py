import numpy as np
import pytest

from tal_core.scoring.predictions import IntervalPredictions, average_coinciding_cells

META = {"actions": ["a"], "scenes": ["s", "t"]}


def _pred(starts, p_action, scene=(1.0, 0.0), videos=("v",)):
    starts = np.asarray(starts, float)
    probs = np.stack([1 - np.asarray(p_action, float), p_action], axis=1)
    return IntervalPredictions.from_videos(list(videos), [starts], [starts + 0.25], [probs], [scene], META)


def test_cells_of_other_grids_are_averaged_into_the_cells_they_coincide_with():
    base = _pred([0.0, 0.25, 0.5, 0.75], [0.2, 0.4, 0.6, 0.8])
    shifted = _pred([-0.25, 0.0, 0.25, 0.5], [0.9, 0.0, 1.0, 0.0], scene=(0.0, 1.0))  # the first is before the video
    other = _pred([0.25, 0.625], [0.1, 0.5])  # 0.625 coincides with no base cell
    fused = average_coinciding_cells(base, [shifted, other])
    assert fused.starts.tolist() == base.starts.tolist() and fused.ends.tolist() == base.ends.tolist()
    assert fused.probs[:, 1] == pytest.approx([0.1, (0.4 + 1.0 + 0.1) / 3, 0.3, 0.8])
    assert np.allclose(fused.probs.sum(axis=1), 1)
    assert fused.scene_probs[0] == pytest.approx([2 / 3, 1 / 3])
    assert average_coinciding_cells(base, []) is base


def test_only_cells_with_the_same_start_and_end_coincide_and_videos_must_match():
    base = _pred([0.0, 0.25], [0.2, 0.4])
    longer = IntervalPredictions.from_videos(["v"], [np.array([0.0])], [np.array([0.5])],
                                             [np.array([[0.0, 1.0]])], [(1.0, 0.0)], META)
    assert average_coinciding_cells(base, [longer]).probs[:, 1] == pytest.approx([0.2, 0.4])
    with pytest.raises(ValueError, match="other videos"):
        average_coinciding_cells(base, [_pred([0.0], [0.5], videos=("w",))])
