"""Torch Dataset of intervals: frames sampled from the frame cache plus labels."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from .annotations import DatasetSpec, Video
from .intervals import interval_grid, label_intervals
from .video import FrameCache, VideoDecodeError


def tsn_positions(first: int, count: int, segments: int, rng: np.random.Generator | None) -> np.ndarray:
    """Frame indices of TSN sampling over frames [first, first + count).

    The span is cut into ``segments`` equal parts; one frame per part: a random one
    when ``rng`` is given (training), the centre one otherwise (evaluation).
    """
    count = max(count, 1)
    edges = np.linspace(0, count, segments + 1)
    lows, highs = edges[:-1], edges[1:]
    if rng is None:
        offsets = (lows + highs) / 2
    else:
        offsets = lows + rng.random(segments) * (highs - lows)
    return first + np.minimum(np.floor(offsets).astype(np.int64), count - 1)


def interval_frame_span(start: float, end: float, fps: float, available: int) -> tuple[int, int]:
    """(first frame, frame count) of the cached frames whose time i / fps lies in [start, end)."""
    first = int(np.ceil(start * fps - 1e-9))
    stop = int(np.ceil(end * fps - 1e-9))
    first = min(first, available - 1)
    return first, max(1, min(stop, available) - first)


@dataclass(frozen=True)
class VideoIntervals:
    video: Video
    starts: np.ndarray
    ends: np.ndarray
    labels: np.ndarray
    scene: int


class IntervalDataset(Dataset):
    """One item per interval: (frames uint8 (T, 3, H, W), action label, scene label, item index)."""

    def __init__(self, spec: DatasetSpec, subset: str, data: DataConfig, train: bool,
                 cache: FrameCache | None = None, seed: int = 0):
        self.spec, self.data, self.train, self.seed = spec, data, train, seed
        self.cache = cache or FrameCache(decode_timeout_s=data.decode_timeout_s)
        self.epoch = 0
        self.videos: list[VideoIntervals] = []
        self.cache_files: list[str] = []
        for video in sorted(spec.subset(subset), key=lambda v: v.video_id):
            path = self._prepare(video)
            if path is not None:
                self.videos.append(self._intervals(video))
                self.cache_files.append(str(path))
        self.index = np.array(
            [(v, i) for v, vi in enumerate(self.videos) for i in range(len(vi.starts))], dtype=np.int64
        ).reshape(-1, 2)
        self._arrays: dict[int, np.ndarray] = {}

    def _prepare(self, video: Video):
        try:
            return self.cache.ensure(self.spec.video_path(video, self.data.view), self.data.decode_fps,
                                     self.data.image_size)
        except VideoDecodeError as error:
            if self.data.on_bad_video == "skip":
                warnings.warn(f"skipping video '{video.video_id}': {error}", stacklevel=2)
                return None
            raise

    def _intervals(self, video: Video) -> VideoIntervals:
        starts, ends = interval_grid(video.duration, self.data.interval_seconds)
        labels = label_intervals(starts, ends, video.segments, self.spec.taxonomy, self.data.min_action_overlap)
        scenes = self.spec.taxonomy.scenes
        scene = scenes.index(video.scene) if video.scene in scenes else -1
        return VideoIntervals(video, starts, ends, labels, scene)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):  # memory maps are reopened in each worker process
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state

    def frames_of(self, video_index: int) -> np.ndarray:
        if video_index not in self._arrays:
            self._arrays[video_index] = np.load(self.cache_files[video_index], mmap_mode="r")
        return self._arrays[video_index]

    def __getitem__(self, item: int):
        video_index, interval_index = (int(x) for x in self.index[item])
        vi = self.videos[video_index]
        frames = self.frames_of(video_index)
        first, count = interval_frame_span(vi.starts[interval_index], vi.ends[interval_index],
                                           self.data.decode_fps, len(frames))
        rng = np.random.default_rng([self.seed, self.epoch, item]) if self.train else None
        positions = tsn_positions(first, count, self.data.frames_per_interval, rng)
        clip = torch.from_numpy(np.ascontiguousarray(frames[positions])).permute(0, 3, 1, 2)
        return clip, int(vi.labels[interval_index]), vi.scene, item
