import numpy as np
import torch

from tal_core.config import DataConfig
from tal_core.data.annotations import load_dataset
from tal_core.data.dataset import IntervalDataset, interval_frame_span, tsn_positions


def test_tsn_positions_centre_and_random_within_segments():
    assert tsn_positions(10, 8, 4, None).tolist() == [11, 13, 15, 17]
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos = tsn_positions(10, 8, 4, rng) - 10
        assert all(2 * k <= p < 2 * k + 2 for k, p in enumerate(pos))
    assert tsn_positions(5, 1, 3, None).tolist() == [5, 5, 5]


def test_interval_frame_span():
    assert interval_frame_span(1.0, 2.0, 8.0, 100) == (8, 8)
    assert interval_frame_span(12.0, 12.5, 8.0, 98) == (96, 2)


def test_dataset_items(tiny_data):
    spec = load_dataset(tiny_data)
    data = DataConfig(image_size=32, frames_per_interval=3, interval_seconds=0.5)
    train = IntervalDataset(spec, "train", data, train=True)
    clip, action, scene, index = train[0]
    assert clip.shape == (3, 3, 32, 32) and clip.dtype == torch.uint8
    assert 0 <= action <= len(spec.taxonomy.actions) and scene >= 0 and index == 0
    labels = np.concatenate([v.labels for v in train.videos])
    assert (labels > 0).any() and (labels == 0).any()
    evaluation = IntervalDataset(spec, "val", data, train=False)
    assert np.array_equal(evaluation[1][0].numpy(), evaluation[1][0].numpy())
