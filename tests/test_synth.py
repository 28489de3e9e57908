import json

import numpy as np

from tal_core.data.annotations import load_dataset
from tal_core.data.synth import ACTIONS, WORLD_H, WORLD_W, SynthSpec, draw_action, synthesize
from tal_core.data.synth_hard import HARD_ACTIONS, HARD_PAIRS, draw_hard_action
from tal_core.data.video import decode_frames


def test_synth_output_loads_validates_and_has_every_view(tiny_data):
    spec = load_dataset(tiny_data)
    assert {v.subset for v in spec.videos.values()} == {"train", "val", "test"}
    assert all(set(v.views) == {"panoramic", "front", "ego"} for v in spec.videos.values())
    assert all(not v.segments for v in spec.subset("test"))
    frames = decode_frames(spec.video_path(spec.subset("train")[0], "panoramic"), 8, 32)
    assert frames.dtype.name == "uint8" and frames.shape[1:] == (32, 32, 3)


def object_mask(draw, action: int, elapsed: float) -> np.ndarray:
    frame = np.zeros((WORLD_H, WORLD_W, 3), np.uint8)
    draw(frame, action, elapsed, np.array([255, 255, 255], np.uint8), (48.0, 96.0))
    return frame[..., 0] > 0


def centre_x(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[1].mean())


def test_direction_only_pair_draws_one_square_moving_opposite_ways():
    left, right = ACTIONS.index("slide_left"), ACTIONS.index("slide_right")
    a0, a1 = object_mask(draw_action, left, 0.3), object_mask(draw_action, left, 0.5)
    b0, b1 = object_mask(draw_action, right, 0.3), object_mask(draw_action, right, 0.5)
    assert a0.sum() == b0.sum() > 0  # the same object
    assert centre_x(a1) < centre_x(a0) and centre_x(b1) > centre_x(b0)


def test_hard_pairs_differ_only_in_time():
    index = HARD_ACTIONS.index
    for pair in HARD_PAIRS:  # every action draws something at its start
        assert all(object_mask(draw_hard_action, index(name), 0.0).sum() > 0 for name in pair)
    # drift: the same disc, opposite directions
    a = [object_mask(draw_hard_action, index("drift_left"), t) for t in (0.2, 0.6)]
    b = [object_mask(draw_hard_action, index("drift_right"), t) for t in (0.2, 0.6)]
    assert a[0].sum() == b[0].sum() and centre_x(a[1]) < centre_x(a[0]) and centre_x(b[1]) > centre_x(b[0])
    # flash: on half the time either way, at 2 vs 5 changes of state per second x 2
    times = np.arange(0, 2, 1 / 64)
    for name, hz in (("flash_slow", 2), ("flash_fast", 5)):
        on = np.array([object_mask(draw_hard_action, index(name), t).any() for t in times])
        assert abs(on.mean() - 0.5) < 0.05 and np.count_nonzero(np.diff(on.astype(int))) in (4 * hz - 1, 4 * hz)
    # grow / shrink: the same sizes, in opposite order
    grow = [object_mask(draw_hard_action, index("grow"), t).sum() for t in (0.1, 0.7, 1.3)]
    shrink = [object_mask(draw_hard_action, index("shrink"), t).sum() for t in (0.1, 0.7, 1.3)]
    assert grow == sorted(grow) and shrink == sorted(shrink, reverse=True)
    # spin: the bar turns the other way
    cw, ccw = (object_mask(draw_hard_action, index(n), 0.2) for n in ("spin_cw", "spin_ccw"))
    def tilt(mask):  # the sign of the bar's slope: covariance of its pixels' x and y
        ys, xs = np.nonzero(mask)
        return np.sign(np.cov(xs, ys)[0, 1])

    assert abs(int(cw.sum()) - int(ccw.sum())) <= 2 and tilt(cw) == -tilt(ccw) != 0


def test_hard_preset_writes_eight_actions_at_sixteen_fps(tmp_path, capsys):
    from talsearch.cli import main

    assert main(["synth", str(tmp_path / "hard"), "--preset", "hard", "--videos", "3", "--size", "32"]) == 0
    spec = load_dataset(tmp_path / "hard")
    assert spec.taxonomy.actions == HARD_ACTIONS
    assert {v.subset for v in spec.videos.values()} == {"train", "val", "test"}
    assert all(20.0 <= v.duration <= 30.0 for v in spec.videos.values())
    frames = decode_frames(spec.video_path(spec.subset("train")[0], "panoramic"), 16, 32)
    assert len(frames) >= 16 * 20 - 1  # a 16 fps file decoded at 16 fps: every frame


def test_deterministic_by_seed(tmp_path):
    spec = SynthSpec(videos=3, seed=7, duration=(4.0, 5.0), size=32, views=("front",))
    a = json.loads(synthesize(tmp_path / "a", spec).read_text())
    b = json.loads(synthesize(tmp_path / "b", spec).read_text())
    c = json.loads(synthesize(tmp_path / "c", SynthSpec(videos=3, seed=8, duration=(4.0, 5.0), size=32,
                                                        views=("front",))).read_text())
    assert a == b and a != c
    fa = decode_frames(tmp_path / "a" / "videos" / "vid0000" / "front.mp4", 8, 32)
    fb = decode_frames(tmp_path / "b" / "videos" / "vid0000" / "front.mp4", 8, 32)
    assert (fa == fb).all()
