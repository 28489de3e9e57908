"""Frame cache formats, raw (uint8 frames) against jpeg (``data.cache_format``): bytes per frame, build seconds,
the training DataLoader's clips/s, and the val mAP of a short training run.

    python benchmarks/bench_cache_format.py [--sizes 224 64] [--workers 0 2] [--seeds 0] [--epochs 3] [--videos 12]

- Bytes per frame and build seconds (decode + write, one process) of each format, at each size and 8 fps, on two
  sources: a ``talsearch synth`` video (flat shapes on a plain ground: what the training run below sees) and a
  640x320, 25 fps mpeg4 pan across a photograph (matplotlib's grace_hopper.jpg sample: the texture of camera
  footage); with the jpeg entry's mean absolute error against the raw frames (grey levels).
- Clips/s: the training DataLoader (``IntervalDataset``, TSN, 8 frames per 1 s interval, batch 8, shuffled) read
  through for one epoch, no model, per format x size x ``num_workers``, on 4 one-minute photo pans; the second
  epochs of persistent workers are timed after an untimed one (start-up and a cold page cache left out), the two
  formats taking turns, median of ``--repeats``; without workers also the CPU milliseconds a clip costs.
- val mAP: ``talsearch train``'s ``fit`` on ``talsearch synth --videos V`` (64 px), the base config with
  ``train.epochs`` E, once per seed and format.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tal_core.config import load_config  # noqa: E402
from tal_core.data.annotations import load_dataset  # noqa: E402
from tal_core.data.synth import SynthSpec, synthesize  # noqa: E402
from tal_core.data.video import FrameCache  # noqa: E402

FORMATS = ("raw", "jpeg")
FPS = 8.0
WIDTH, HEIGHT, SOURCE_FPS = 640, 320, 25


def write_pan(path: Path, seconds: float, phase: float) -> None:
    """A camera panning and zooming slowly across a photograph, as an mpeg4 file."""
    import av
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as photo:
        photo = np.asarray(photo.convert("RGB").resize((1200, 1024), Image.BICUBIC))
    frames = int(seconds * SOURCE_FPS)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=SOURCE_FPS)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = WIDTH, HEIGHT, "yuv420p", 2_000_000
        for i in range(frames):
            t = (i / max(1, frames - 1) + phase) % 1.0
            zoom = 1.0 + 0.4 * abs(np.sin(np.pi * t))
            w, h = int(WIDTH * zoom), int(HEIGHT * zoom)
            x = int((photo.shape[1] - w) * abs(np.sin(np.pi * t)))
            y = int((photo.shape[0] - h) * t)
            view = Image.fromarray(photo[y: y + h, x: x + w]).resize((WIDTH, HEIGHT), Image.BILINEAR)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(view), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def entry_figures(video: Path, cache_dir: Path, size: int) -> dict:
    """Bytes per frame and build seconds of each format; the jpeg frames' error against the raw ones."""
    out = {}
    FrameCache(cache_dir / "warm-up").ensure(video, FPS, size)  # the file in the page cache, the decoder loaded
    for fmt in FORMATS:
        cache = FrameCache(cache_dir, cache_format=fmt)
        started = time.perf_counter()
        path = cache.ensure(video, FPS, size)
        seconds = time.perf_counter() - started
        frames = len(cache.load(video, FPS, size))
        out[fmt] = {"bytes_per_frame": round(path.stat().st_size / frames), "build_s": round(seconds, 2),
                    "frames": frames}
    raw = np.asarray(FrameCache(cache_dir).load(video, FPS, size))
    jpeg = np.asarray(FrameCache(cache_dir, cache_format="jpeg").load(video, FPS, size))
    out["jpeg_share"] = round(out["jpeg"]["bytes_per_frame"] / out["raw"]["bytes_per_frame"], 4)
    out["jpeg_mean_abs_error"] = round(float(np.abs(jpeg.astype(np.int16) - raw).mean()), 3)
    return out


def pan_dataset(root: Path, videos: int, seconds: float) -> Path:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    database = {}
    for i in range(videos):
        write_pan(root / "videos" / f"pan{i}.mp4", seconds, i / videos)
        database[f"pan{i}"] = {"subset": "train", "duration": seconds, "scene": "office",
                               "views": {"front": f"videos/pan{i}.mp4"},
                               "annotations": [{"segment": [seconds / 4, seconds / 2], "label": "zoom"}]}
    annotations = {"taxonomy": {"actions": ["zoom"], "scenes": ["office"], "views": ["front"]}, "database": database}
    (root / "annotations.json").write_text(json.dumps(annotations))
    return root


def loader_figures(spec, cache_dir: Path, size: int, workers: int, repeats: int) -> dict:
    """Per format: the median clips/s (and, without workers, CPU ms per clip) of ``repeats`` epochs, the formats
    taking turns, after one untimed epoch each (workers started, page cache warm)."""
    import torch
    from torch.utils.data import DataLoader

    from tal_core.data.dataset import IntervalDataset

    loaders = {}
    for fmt in FORMATS:
        cfg = load_config(None, {"data.image_size": size, "data.frames_per_interval": 8, "data.decode_fps": FPS,
                                 "data.interval_seconds": 1.0, "data.cache_format": fmt})
        dataset = IntervalDataset(spec, "train", cfg.data, train=True, cache=FrameCache(cache_dir))
        loaders[fmt] = DataLoader(dataset, batch_size=8, shuffle=True, num_workers=workers, drop_last=True,
                                  persistent_workers=workers > 0)
    timings: dict[str, list] = {fmt: [] for fmt in FORMATS}
    torch.manual_seed(0)
    for epoch in range(repeats + 1):
        for fmt, loader in loaders.items():
            loader.dataset.set_epoch(epoch)
            started, cpu, clips = time.perf_counter(), time.process_time(), 0
            for batch in loader:
                clips += len(batch[1])
            if epoch and clips:
                timings[fmt].append((clips / (time.perf_counter() - started), 1e3 * (time.process_time() - cpu) / clips))
    out = {}
    for fmt, runs in timings.items():
        if not runs:  # fewer clips than a batch
            out[fmt] = {"clips_per_s": None}
            continue
        # without workers the loading is this process's own CPU time: a figure that other work on the cores moves less
        out[fmt] = {"clips_per_s": round(float(np.median([r[0] for r in runs])), 1),
                    **({"cpu_ms_per_clip": round(float(np.median([r[1] for r in runs])), 2)} if workers == 0 else {})}
    return out


def train_map(spec, cache_dir: Path, out: Path, fmt: str, seed: int, epochs: int) -> dict:
    from tal_core.training.trainer import fit

    cfg = load_config(None, {"train.epochs": epochs, "train.seed": seed, "data.cache_format": fmt})
    started = time.perf_counter()
    fit(cfg, spec, out, cache=FrameCache(cache_dir))
    metrics = json.loads((out / "metrics.json").read_text())
    return {"val_mAP": round(metrics["val_mAP"], 4), "val_mAP@0.5": round(metrics["val_mAP@0.5"], 4),
            "best_epoch": metrics["best_epoch"], "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 64])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0], help="train.seed of the mAP runs (none: no run)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--videos", type=int, default=12, help="synthetic videos of the mAP runs")
    parser.add_argument("--repeats", type=int, default=5, help="timed loader epochs per format (median)")
    parser.add_argument("--pan-videos", type=int, default=4)
    parser.add_argument("--pan-seconds", type=float, default=60.0)
    args = parser.parse_args()
    result = {"bench": "cache_format", "fps": FPS, "jpeg": "quality 90, 4:4:4", "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "synth", SynthSpec(videos=args.videos, seed=0))  # as `talsearch synth --videos V`
        synth = load_dataset(tmp / "synth")
        pans = load_dataset(pan_dataset(tmp / "pans", args.pan_videos, args.pan_seconds))
        synth_video = synth.video_path(next(iter(synth.videos.values())), "front")
        pan_video = pans.video_path(pans.videos["pan0"], "front")
        result["bytes"] = {f"{name}_{size}px": entry_figures(video, tmp / f"entries_{name}", size)
                           for size in args.sizes for name, video in (("synth", synth_video), ("pan", pan_video))}
        print(json.dumps(result["bytes"]), file=sys.stderr)
        result["loader"] = {f"{fmt}_{size}px_workers{workers}": figures
                            for size in args.sizes for workers in args.workers
                            for fmt, figures in loader_figures(pans, tmp / "cache", size, workers, args.repeats).items()}
        print(json.dumps(result["loader"]), file=sys.stderr)
        if not args.seeds:
            print(json.dumps(result))
            return
        result["train"] = {"data": f"synth --videos {args.videos} --seed 0 (64 px)", "epochs": args.epochs,
                           "runs": {f"{fmt}_seed{seed}": train_map(synth, tmp / "cache", tmp / f"run_{fmt}_{seed}",
                                                                   fmt, seed, args.epochs)
                                    for seed in args.seeds for fmt in FORMATS}}
        changes = [result["train"]["runs"][f"jpeg_seed{s}"]["val_mAP"] - result["train"]["runs"][f"raw_seed{s}"]["val_mAP"]
                   for s in args.seeds]
        result["train"]["jpeg_minus_raw_val_mAP"] = [round(c, 4) for c in changes]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
