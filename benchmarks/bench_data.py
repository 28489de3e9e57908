"""Clips/s reading intervals straight from decord vs from the decoded-frame cache.

Also: cache build time vs one plain sequential decode of each video, building one video at a time
(``build_vs_decode``) and as the sweep does, one video per CPU at a time (``parallel_build_vs_decode``).
Prints one JSON line.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tal_core.config import DataConfig  # noqa: E402
from tal_core.data.annotations import load_dataset  # noqa: E402
from tal_core.data.dataset import IntervalDataset, interval_frame_span, tsn_positions  # noqa: E402
from tal_core.data.synth import SynthSpec, synthesize  # noqa: E402
from tal_core.data.video import FrameCache, decode_frames, decode_side, source_frame_indices  # noqa: E402


def decord_clips(spec, data: DataConfig, items, rng) -> float:
    """Baseline: open each video with decord and fetch each interval's frames by random access."""
    import decord

    readers = {}
    started = time.perf_counter()
    for video, start, end in items:
        path = str(spec.video_path(video, data.view))
        if path not in readers:
            side = decode_side(data.image_size)
            readers[path] = decord.VideoReader(path, width=side, height=side, num_threads=1)
        reader = readers[path]
        index = source_frame_indices(len(reader), reader.get_avg_fps(), data.decode_fps)
        first, count = interval_frame_span(start, end, data.decode_fps, len(index))
        reader.get_batch(index[tsn_positions(first, count, data.frames_per_interval, rng)].tolist()).asnumpy()
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", SynthSpec(videos=8, seed=1, size=128, views=("front",), duration=(30.0, 40.0)))
        spec = load_dataset(tmp / "data")
        data = DataConfig(view="front", image_size=128, frames_per_interval=8, interval_seconds=1.0)
        videos = list(spec.videos.values())

        jobs = [(spec.video_path(v, "front"), data.decode_fps, data.image_size) for v in videos]
        plain, build = [], []
        for attempt in range(3):  # interleaved, best of three: the machine's noise hits both alike
            started = time.perf_counter()
            for job in jobs:
                decode_frames(*job)
            plain.append(time.perf_counter() - started)
            cache = FrameCache(tmp / f"cache{attempt}")
            started = time.perf_counter()
            for job in jobs:
                cache.ensure(*job)
            build.append(time.perf_counter() - started)
        plain_decode_s, cache_build_s = min(plain), min(build)
        parallel = []
        for attempt in range(3):  # what the sweep does: one video per CPU at a time
            started = time.perf_counter()
            FrameCache(tmp / f"parallel{attempt}").ensure_many(jobs)
            parallel.append(time.perf_counter() - started)
        parallel_build_s = min(parallel)
        pyav = []
        for attempt in range(3):  # the second decoder (data.decoder=pyav), same cache build
            started = time.perf_counter()
            FrameCache(tmp / f"pyav{attempt}", decoder="pyav").ensure_many(jobs, workers=1)
            pyav.append(time.perf_counter() - started)
        pyav_build_s = min(pyav)

        dataset = IntervalDataset(spec, "train", data, train=True, cache=cache)
        rng = np.random.default_rng(0)
        order = rng.permutation(len(dataset))[:200]
        items = [(dataset.videos[v].video, dataset.videos[v].starts[i], dataset.videos[v].ends[i])
                 for v, i, _ in dataset.index[order]]
        decord_rate = decord_clips(spec, data, items, rng)
        started = time.perf_counter()
        for _ in range(5):
            for item in order:
                dataset[int(item)]
        cache_rate = 5 * len(order) / (time.perf_counter() - started)
    print(json.dumps({"bench": "data", "clips": len(order), "frames_per_clip": data.frames_per_interval,
                      "image_size": data.image_size, "decord_clips_per_s": round(decord_rate, 1),
                      "cache_clips_per_s": round(cache_rate, 1), "speedup": round(cache_rate / decord_rate, 1),
                      "cache_build_s": round(cache_build_s, 3), "plain_sequential_decode_s": round(plain_decode_s, 3),
                      "build_vs_decode": round(cache_build_s / plain_decode_s, 3),
                      "parallel_build_s": round(parallel_build_s, 3),
                      "parallel_build_vs_decode": round(parallel_build_s / plain_decode_s, 3),
                      "pyav_cache_build_s": round(pyav_build_s, 3),
                      "pyav_vs_decord_build": round(pyav_build_s / cache_build_s, 3), "machine": platform.machine(),
                      "cpus": __import__("os").cpu_count()}))


if __name__ == "__main__":
    main()
