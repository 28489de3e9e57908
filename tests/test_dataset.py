import numpy as np
import torch

from tal_core.config import DataConfig
from tal_core.data.annotations import load_dataset
from tal_core.data.dataset import (
    IntervalDataset,
    cell_centre_positions,
    frame_times,
    interval_frame_span,
    stride_positions,
    tsn_positions,
)


def test_tsn_positions_centre_and_random_within_segments():
    assert tsn_positions(10, 8, 4, None).tolist() == [11, 13, 15, 17]
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos = tsn_positions(10, 8, 4, rng) - 10
        assert all(2 * k <= p < 2 * k + 2 for k, p in enumerate(pos))
    assert tsn_positions(5, 1, 3, None).tolist() == [5, 5, 5]


def test_stride_positions_keep_the_evaluation_spacing_from_a_random_start():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(40):
        pos = stride_positions(10, 8, 4, rng)
        assert np.diff(pos).tolist() == [2, 2, 2] and 10 <= pos[0] <= 11  # one spacing, the phases of evaluation
        starts.add(int(pos[0]))
    assert starts == {10, 11}
    assert stride_positions(5, 2, 4, rng).tolist() in ([5, 5, 6, 6],)  # fewer frames than samples: clipped in order
    assert stride_positions(0, 1, 3, rng).tolist() == [0, 0, 0]


def test_interval_frame_span():
    assert interval_frame_span(1.0, 2.0, 8.0, 100) == (8, 8)
    assert interval_frame_span(12.0, 12.5, 8.0, 98) == (96, 2)
    # frames whose centre (i + 0.5) / fps lies in [start, end): 0.3 s -> frame 2 (centre 0.3125) onwards
    assert interval_frame_span(0.3, 0.7, 8.0, 100) == (2, 4)  # centres 0.3125 .. 0.6875


def test_evaluation_frames_show_cell_centres():
    # 1 s interval, 4 cells at 8 fps: cell centres 0.125, 0.375, ... fall in frames 1, 3, 5, 7
    assert cell_centre_positions(0.0, 1.0, 4, 8.0, 100).tolist() == [1, 3, 5, 7]
    assert cell_centre_positions(2.0, 3.0, 8, 8.0, 100).tolist() == list(range(16, 24))
    assert cell_centre_positions(9.5, 10.0, 4, 8.0, 78).tolist() == [76, 77, 77, 77]  # clipped to the video
    assert frame_times(np.array([0, 7]), 8.0).tolist() == [0.0625, 0.9375]


def test_dataset_items(tiny_data):
    spec = load_dataset(tiny_data)
    data = DataConfig(image_size=32, frames_per_interval=3, interval_seconds=0.5)
    train = IntervalDataset(spec, "train", data, train=True)
    clip, action, frame_labels, scene, index = train[0]
    assert clip.shape == (3, 3, 32, 32) and clip.dtype == torch.uint8 and frame_labels.shape == (3,)
    assert 0 <= action <= len(spec.taxonomy.actions) and scene >= 0 and index == 0
    labels = np.concatenate([v.labels for v in train.videos])
    assert (labels > 0).any() and (labels == 0).any()
    evaluation = IntervalDataset(spec, "val", data, train=False)
    other = IntervalDataset(spec, "val", data, train=False, seed=7, temporal_jitter=0.5)
    other.set_epoch(3)  # evaluation frames depend on neither seed, epoch nor training jitter
    assert np.array_equal(evaluation[1][0].numpy(), other[1][0].numpy())
    train.set_epoch(1)
    moved = [train.positions(0.0, 1.0, 100, item) for item in range(5)]
    train.set_epoch(2)
    assert any(not np.array_equal(a, train.positions(0.0, 1.0, 100, i)) for i, a in enumerate(moved))


def test_frame_labels_follow_the_time_each_frame_shows(tiny_data):
    spec = load_dataset(tiny_data)
    data = DataConfig(image_size=32, frames_per_interval=4, interval_seconds=1.0, decode_fps=8.0)
    train = IntervalDataset(spec, "train", data, train=True, seed=1)
    video = train.videos[0].video
    first = video.segments[0]
    for item, (v, i, _) in enumerate(train.index.tolist()):
        if v != 0:
            break
        positions = train.positions(train.videos[0].starts[i], train.videos[0].ends[i], 10_000, item)
        _, _, frame_labels, _, _ = train[item]
        shown = (positions + 0.5) / 8.0
        inside = (shown >= first.start) & (shown < first.end)
        expected = spec.taxonomy.action_index(first.label)
        assert (frame_labels.numpy()[inside] == expected).all()
    cells_s, cells_e = IntervalDataset(spec, "val", data, train=False).cells_of(0)
    assert cells_s[0] == 0.0 and np.allclose(cells_s[1:], cells_e[:-1])  # contiguous
    assert np.allclose((cells_e - cells_s)[:-4], 0.25)  # 4 equal cells per interval; the last one is clipped
    assert np.allclose(np.diff(cells_s[-4:]), (cells_e[-1] - cells_s[-4]) / 4)


def test_evaluation_phases_cover_every_cell_with_its_own_frame(tiny_data):
    spec = load_dataset(tiny_data)
    data = DataConfig(image_size=32, frames_per_interval=4, interval_seconds=1.0, decode_fps=8.0)
    evaluation = IntervalDataset(spec, "val", data, train=False, phases=2)
    assert len(evaluation) == 2 * sum(len(v.starts) for v in evaluation.videos)
    first_pass = evaluation.positions(0.0, 1.0, 100, 0, phase=0)
    second_pass = evaluation.positions(0.0, 1.0, 100, 1, phase=1)
    assert first_pass.tolist() == [0, 2, 4, 6] and second_pass.tolist() == [1, 3, 5, 7]
    starts, ends = evaluation.cells_of(0)
    assert np.allclose((ends - starts)[:8], 0.125)
    assert IntervalDataset(spec, "train", data, train=True, phases=2).phases == 1  # training: one pass


def test_strided_training_clips_are_the_frames_of_one_evaluation_pass(tiny_data):
    spec = load_dataset(tiny_data)
    data = DataConfig(image_size=32, frames_per_interval=4, interval_seconds=1.0, decode_fps=8.0, sampling="stride")
    train = IntervalDataset(spec, "train", data, train=True, seed=3)
    evaluation = IntervalDataset(spec, "val", data, train=False, phases=2)
    passes = [evaluation.positions(2.0, 3.0, 100, 0, phase=p).tolist() for p in range(2)]
    seen = [train.positions(2.0, 3.0, 100, item).tolist() for item in range(30)]
    assert all(clip in passes for clip in seen) and all(p in seen for p in passes)
    tsn = IntervalDataset(spec, "train", data.model_copy(update={"sampling": "tsn"}), train=True, seed=3)
    assert any(tsn.positions(2.0, 3.0, 100, item).tolist() not in passes for item in range(30))


def test_a_shifted_evaluation_grid_holds_every_full_cell_of_the_unshifted_one(tiny_data):
    spec = load_dataset(tiny_data)
    data = DataConfig(image_size=32, frames_per_interval=4, interval_seconds=1.0, decode_fps=8.0)
    plain = IntervalDataset(spec, "val", data, train=False, phases=2)
    shifted = IntervalDataset(spec, "val", data, train=False, phases=2, grid_offset=0.25)
    duration = plain.videos[0].video.duration
    starts = shifted.videos[0].starts
    assert starts[0] == -0.75 and np.allclose(np.diff(starts), 1.0) and starts[-1] < duration <= starts[-1] + 1.0
    assert np.allclose(shifted.videos[0].ends - starts, 1.0)  # full intervals, also past the video's end
    plain_cells = set(zip(*(np.round(c, 6) for c in plain.cells_of(0)), strict=True))
    shifted_cells = set(zip(*(np.round(c, 6) for c in shifted.cells_of(0)), strict=True))
    full = {cell for cell in plain_cells if abs(cell[1] - cell[0] - 0.125) < 1e-6}
    assert full <= shifted_cells  # every full cell is seen again, inside another clip
    clip, *_ = shifted[0]  # the first clip reaches back before the video: its frames there repeat frame 0
    assert clip.shape == (4, 3, 32, 32) and torch.equal(clip[0], clip[1])
    try:
        IntervalDataset(spec, "train", data, train=True, grid_offset=0.5)
    except ValueError as error:
        assert "evaluation" in str(error)
    else:
        raise AssertionError("a training set took a grid offset")


def test_jpeg_cache_items_match_raw_ones(tiny_data, tmp_path):
    import pickle

    from tal_core.data.jpeg_frames import JpegFrames
    from tal_core.data.video import FrameCache

    spec = load_dataset(tiny_data)
    data = DataConfig(image_size=32, frames_per_interval=4, interval_seconds=1.0)
    jpeg_data = data.model_copy(update={"cache_format": "jpeg"})
    for train in (True, False):
        raw = IntervalDataset(spec, "train", data, train=train, cache=FrameCache(tmp_path), seed=2)
        jpeg = IntervalDataset(spec, "train", jpeg_data, train=train, cache=FrameCache(tmp_path), seed=2)
        assert len(jpeg) == len(raw) and set(raw.cache_files).isdisjoint(jpeg.cache_files)
        jpeg = pickle.loads(pickle.dumps(jpeg))  # as a DataLoader worker gets it: it maps each entry itself
        for item in (0, len(raw) // 2, len(raw) - 1):
            (a, *labels_a), (b, *labels_b) = raw[item], jpeg[item]
            assert b.shape == a.shape and b.dtype == a.dtype == torch.uint8
            assert (b.int() - a.int()).abs().float().mean() < 4  # grey levels
            assert labels_a[0] == labels_b[0] and torch.equal(labels_a[1], labels_b[1]) and labels_a[2:] == labels_b[2:]
        assert isinstance(jpeg.frames_of(0), JpegFrames) and len(jpeg.frames_of(0)) == len(raw.frames_of(0))
