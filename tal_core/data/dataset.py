"""Torch Dataset of intervals: frames sampled from the frame cache plus labels.

Frame times: cached frame i (decoded at ``fps``) owns the cell [i / fps, (i + 1) / fps) and shows the
time at its centre, (i + 0.5) / fps (see ``video.source_frame_indices``).
- Training samples one frame at random from each of ``frames_per_interval`` equal parts of the
  interval's frames (TSN), or (``data.sampling: stride``) equally spaced frames from one random start,
  from a window moved by up to ``augment.temporal_jitter`` of the interval;
  each sampled frame is labelled with the action at the time it shows.
- Evaluation cuts the interval into ``frames_per_interval`` equal cells and takes, for each cell, the
  cached frame that shows the cell's centre; with ``model.output=frame`` every cell gets its own
  prediction (``cells_of``). With ``phases`` P > 1 (``eval.frame_phases``) each interval is cut into
  ``frames_per_interval * P`` cells and seen in P passes: pass p takes the frames of cells p, p + P,
  p + 2P, ... (one per TSN segment, as in training), so every cell is classified from its own frame.
- ``grid_offset`` o (evaluation only, ``eval.grid_offsets``) shifts the interval grid by o of an interval:
  intervals start at (o - 1) * interval + k * interval, so the first one reaches back before the video's start
  (frames there repeat the first one) and every cell of the unshifted grid also lies in a clip of this one,
  seen from other neighbours (``predictions.average_coinciding_cells`` then averages them).
- Sound (``data.modalities`` audio or video+audio): each sampled frame also hears the log-mel window of
  ``audio.window_seconds`` centred on the time it shows (``audio.windows_at``), read from the video's declared
  ``audio`` file or else its view's file; an item's first element is then a dict, ``{"video": frames, "audio":
  (T, W, 64) float32}``, without "video" for audio alone (no frame is decoded; positions and labels are the same).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from tal_core.config import AudioConfig, DataConfig
from tal_core.data.annotations import DatasetSpec, Video
from tal_core.data.audio import AudioCache, AudioMissingError, audio_range, windows_at
from tal_core.data.intervals import cell_grid, interval_grid, label_at_times, label_intervals
from tal_core.data.video import FrameCache, VideoDecodeError, open_frames


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
    return _frames_at(first, count, offsets)


def _frames_at(first: int, count: int, offsets: np.ndarray) -> np.ndarray:
    """Frame indices of fractional ``offsets`` into frames [first, first + count)."""
    return first + np.minimum(np.floor(offsets).astype(np.int64), count - 1)


def stride_positions(first: int, count: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Frame indices of strided sampling over frames [first, first + count): ``frames`` frames ``count / frames``
    apart (the spacing of evaluation's cell centres), all moved by one random offset within a spacing, so that
    the clip's frame spacing never changes (a flicker or a speed looks as it does in evaluation)."""
    count = max(count, 1)
    return _frames_at(first, count, (np.arange(frames) + rng.random()) * (count / frames))


def interval_frame_span(start: float, end: float, fps: float, available: int) -> tuple[int, int]:
    """(first frame, frame count) of the cached frames whose centre time (i + 0.5) / fps lies in [start, end)."""
    first = int(np.ceil(start * fps - 0.5 - 1e-9))
    stop = int(np.ceil(end * fps - 0.5 - 1e-9))
    first = min(max(first, 0), available - 1)
    return first, max(1, min(stop, available) - first)


def cell_centre_positions(start: float, end: float, cells: int, fps: float, available: int) -> np.ndarray:
    """Cached frame showing the centre of each of ``cells`` equal cells of [start, end)."""
    centres = start + (np.arange(cells) + 0.5) * (end - start) / cells
    return np.clip(np.floor(centres * fps + 1e-9).astype(np.int64), 0, available - 1)


def frame_times(positions: np.ndarray, fps: float) -> np.ndarray:
    """The time each cached frame shows: the centre of its cell."""
    return (positions + 0.5) / fps


@dataclass(frozen=True)
class VideoIntervals:
    video: Video
    starts: np.ndarray
    ends: np.ndarray
    labels: np.ndarray
    scene: int
    segment_table: tuple = ()  # (start, end, class) of each ground-truth segment, for per-frame labels


logger = logging.getLogger(__name__)


def sound_cache(cache: FrameCache, timeout_s: float | None) -> AudioCache:
    """The log-mel cache beside ``cache``'s frames (same folder); a frame cache with an ``audio_cache(timeout_s)``
    method gives its own (``search.rank_cache``: a rank's, which warns at a miss)."""
    own = getattr(cache, "audio_cache", None)
    return own(timeout_s) if own is not None else AudioCache(cache.cache_dir, timeout_s)


class IntervalDataset(Dataset):
    """One item per interval: (frames uint8 (T, 3, H, W), interval label, per-frame labels (T,), scene label,
    item index); with sound the frames become ``{"video": frames, "audio": windows}`` (see the module's doc)."""

    def __init__(self, spec: DatasetSpec, subset: str, data: DataConfig, train: bool,
                 cache: FrameCache | None = None, seed: int = 0, phases: int = 1, temporal_jitter: float = 0.0,
                 grid_offset: float = 0.0, audio: AudioConfig | None = None):
        if grid_offset and train:
            raise ValueError("grid_offset shifts evaluation grids only")
        self.spec, self.data, self.train, self.seed = spec, data, train, seed
        self.grid_offset = grid_offset
        self.temporal_jitter = temporal_jitter if train else 0.0
        self.phases = 1 if train else phases
        self.cache = cache or FrameCache(decode_timeout_s=data.decode_timeout_s, decoder=data.decoder)
        self.audio = audio or AudioConfig()
        self.sees, self.hears = data.modalities != "audio", "audio" in data.modalities
        self.audio_cache = sound_cache(self.cache, data.decode_timeout_s or None)
        self.epoch = 0
        self.videos: list[VideoIntervals] = []
        self.cache_files: list[str] = []
        self.audio_files: list[str | None] = []  # None: the video hears silence (audio.missing=silence)
        self.silent: list[str] = []  # ids of the videos without sound
        for video in sorted(spec.subset(subset), key=lambda v: v.video_id):
            path = self._prepare(video) if self.sees else ""
            if path is not None:
                self.videos.append(self._intervals(video))
                self.cache_files.append(str(path))
                self.audio_files.append(self._prepare_audio(video) if self.hears else None)
        if self.silent:
            logger.warning(f"{len(self.silent)} of {len(self.videos)} {subset} videos have no sound and hear "
                           f"silence (audio.missing=silence): {', '.join(self.silent[:5])}"
                           + (" ..." if len(self.silent) > 5 else ""))
        self.index = np.array(  # (video, interval, phase) per item, in that order
            [(v, i, p) for v, vi in enumerate(self.videos) for i in range(len(vi.starts)) for p in range(self.phases)],
            dtype=np.int64).reshape(-1, 3)
        self._arrays: dict[int, np.ndarray] = {}
        self._sounds: dict[int, np.ndarray] = {}

    def _prepare(self, video: Video):
        try:
            return self.cache.ensure(self.spec.video_path(video, self.data.view), self.data.decode_fps,
                                     self.data.image_size, self.data.decoder,
                                     self.spec.decode_end(video, self.data.view),  # clips: their range only
                                     self.data.cache_format)
        except VideoDecodeError as error:
            if self.data.on_bad_video == "skip":
                warnings.warn(f"skipping video '{video.video_id}': {error}", stacklevel=2)
                return None
            raise

    def _prepare_audio(self, video: Video) -> str | None:
        """The video's log-mel in the audio cache (its clip of the file, with context either side), or None
        where it has no sound and ``audio.missing`` is silence."""
        try:
            return str(self.audio_cache.ensure(self.spec.audio_path(video, self.data.view),
                                               *audio_range(video.offset, video.duration)))
        except AudioMissingError as error:
            if self.audio.missing == "silence":
                self.silent.append(video.video_id)
                return None
            raise AudioMissingError(f"{error} (video '{video.video_id}': data.modalities={self.data.modalities} "
                                    "hears it; audio.missing=silence lets it hear silence)") from None

    def _intervals(self, video: Video) -> VideoIntervals:
        starts, ends = interval_grid(video.duration, self.data.interval_seconds)
        if self.grid_offset:  # full-length intervals from (offset - 1) * interval on, covering the video
            step = self.data.interval_seconds
            starts = (self.grid_offset - 1) * step + np.arange(len(starts) + 1) * step
            starts = starts[starts < video.duration]
            ends = starts + step
        labels = label_intervals(starts, ends, video.segments, self.spec.taxonomy, self.data.min_action_overlap)
        scenes = self.spec.taxonomy.scenes
        scene = scenes.index(video.scene) if video.scene in scenes else -1
        return VideoIntervals(video, starts, ends, labels, scene, tuple(video.segments))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):  # memory maps are reopened in each worker process
        state = dict(self.__dict__)
        state["_arrays"] = {}
        state["_sounds"] = {}
        return state

    def frames_of(self, video_index: int) -> np.ndarray:
        """The video's cached frames, opened once per process: a memory map (raw), or (``data.cache_format``
        jpeg) a ``JpegFrames`` over the mapped entry that decodes only the frames an item samples."""
        if video_index not in self._arrays:
            self._arrays[video_index] = open_frames(self.cache_files[video_index], self.data.cache_format)
        return self._arrays[video_index]

    def sounds_of(self, video_index: int) -> np.ndarray | None:
        """The video's memory-mapped log-mel (None: silence); frame 0 begins at ``audio_range(...)[0]``."""
        if self.audio_files[video_index] is None:
            return None
        if video_index not in self._sounds:
            self._sounds[video_index] = np.load(self.audio_files[video_index], mmap_mode="r")
        return self._sounds[video_index]

    def frames_available(self, video_index: int) -> int:
        """Cached frames of the video's file: the cache's count, or without frames (audio alone) the count a
        decode of its clip would give."""
        if self.sees:
            return len(self.frames_of(video_index))
        video = self.videos[video_index].video
        return max(1, int(np.ceil((video.offset + video.duration) * self.data.decode_fps - 1e-6)))

    def __getitem__(self, item: int):
        video_index, interval_index, phase = (int(x) for x in self.index[item])
        vi = self.videos[video_index]
        offset = vi.video.offset  # a clip's times start this far into its view files
        start, end = vi.starts[interval_index] + offset, vi.ends[interval_index] + offset
        positions = self.positions(start, end, self.frames_available(video_index), item, phase)
        times = frame_times(positions, self.data.decode_fps)
        frame_labels = label_at_times(times - offset, vi.segment_table, self.spec.taxonomy)
        inputs = {}
        if self.sees:
            frames = self.frames_of(video_index)
            inputs["video"] = torch.from_numpy(np.ascontiguousarray(frames[positions])).permute(0, 3, 1, 2)
        if self.hears:
            begin = audio_range(vi.video.offset, vi.video.duration)[0]
            windows = windows_at(self.sounds_of(video_index), begin, times, self.audio.window_seconds)
            inputs["audio"] = torch.from_numpy(windows)
        inputs = inputs if self.hears else inputs["video"]
        return inputs, int(vi.labels[interval_index]), torch.from_numpy(frame_labels), vi.scene, item

    def positions(self, start: float, end: float, available: int, item: int, phase: int = 0) -> np.ndarray:
        """Cached frames of one interval: TSN-random or strided in training, cell centres in evaluation (pass ``phase``)."""
        fps, count = self.data.decode_fps, self.data.frames_per_interval
        if not self.train:
            return cell_centre_positions(start, end, count * self.phases, fps, available)[phase::self.phases]
        rng = np.random.default_rng([self.seed, self.epoch, item])
        if self.temporal_jitter:  # the clip's window moves by up to temporal_jitter of the interval
            move = (end - start) * self.temporal_jitter * (2 * rng.random() - 1)
            start, end = start + move, end + move
        first, span = interval_frame_span(start, end, fps, available)
        if self.data.sampling == "stride":
            return stride_positions(first, span, count, rng)
        return tsn_positions(first, span, count, rng)

    def cells_of(self, video_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of the evaluation cells of a video: ``frames_per_interval * phases`` per interval."""
        vi = self.videos[video_index]
        return cell_grid(vi.starts, vi.ends, self.data.frames_per_interval * self.phases)
