"""Frame-cache build against video length and count: cache bytes, build seconds and peak RSS of the building process.

    python benchmarks/bench_cache.py [--minutes 1 10] [--counts 1 4 16] [--decoders decord pyav] [--fps 8] [--size 224]

Writes one 640x320 mp4 per length (25 fps, moving gradients; kept in --work), then builds its cache entry in a
fresh process per (length, decoder; ``FrameCache.ensure_many``, as a node builds its entries), reading that process's peak RSS (ru_maxrss). Then, per count N, N copies of
the shortest video (hard links: each its own cache entry, read from one file, so what is measured is decoding, not disk reads) built in a fresh process as a node builds its sweep's
entries (``FrameCache.ensure_many``: one video per CPU at once). Prints one JSON line: per run ``{minutes,
decoder, seconds, peak_rss_mb, cache_mb}``, per decoder ``rss_growth_mb`` (the longest video's peak RSS minus the
shortest's; the target is <= 100 MB: decoding streams, whatever the length), and ``by_count``: per (count,
decoder) ``{videos, entries, decoder, seconds, seconds_per_video, peak_rss_mb, cache_mb}`` (the peak should stop growing
once every CPU decodes one video).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, SOURCE_FPS = 640, 320, 25

BUILD = """
import json, resource, sys, time
from pathlib import Path
from tal_core.data.video import FrameCache
cache_dir, fps, size, decoder, videos = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
started = time.perf_counter()
entries = FrameCache(cache_dir, decoder=decoder).ensure_many([(Path(v), fps, size) for v in videos])
files = set(entries.values())
print(json.dumps({"seconds": time.perf_counter() - started, "bytes": sum(e.stat().st_size for e in files),
                  "entries": len(files), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_video(path: Path, minutes: float) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=SOURCE_FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = 400_000
        x = np.linspace(0, 255, WIDTH, dtype=np.float32)[None, :]
        y = np.linspace(0, 255, HEIGHT, dtype=np.float32)[:, None]
        for i in range(int(minutes * 60 * SOURCE_FPS)):
            frame = np.stack([(x + 3 * i) % 256 + 0 * y, (y + 2 * i) % 256 + 0 * x, (x + y + i) % 256], axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def build(videos: list[Path], cache_dir: Path, fps: float, size: int, decoder: str) -> dict:
    """Builds the entries of ``videos`` in a fresh process (``FrameCache.ensure_many``, as a node does)."""
    done = subprocess.run([sys.executable, "-c", BUILD, str(cache_dir), str(fps), str(size), decoder,
                           *map(str, videos)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def by_count(video: Path, counts: list[int], work: Path, fps: float, size: int, decoders: list[str]) -> list[dict]:
    """N copies of ``video`` built as a node builds its entries, per count and decoder."""
    runs = []
    for count in counts:
        copies = []
        for i in range(count):
            copy = work / f"copy{i}_{video.name}"
            copy.unlink(missing_ok=True)  # a link to an older file of that name would time that file
            os.link(video, copy)
            copies.append(copy)
        for decoder in decoders:
            with tempfile.TemporaryDirectory(dir=work) as cache_dir:
                result = build(copies, Path(cache_dir), fps, size, decoder)
            runs.append({"videos": count, "entries": result["entries"], "decoder": decoder,
                         "seconds": round(result["seconds"], 2),
                         "seconds_per_video": round(result["seconds"] / count, 2),
                         "peak_rss_mb": round(result["peak_rss_mb"], 1), "cache_mb": round(result["bytes"] / 1e6, 1)})
            print(json.dumps(runs[-1]), file=sys.stderr)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--counts", type=int, nargs="*", default=[1, 4, 16],
                        help="numbers of videos of the shortest length built together (none: skip)")
    parser.add_argument("--decoders", nargs="+", default=["decord", "pyav"])
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "talsearch-bench-cache")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    runs = []
    for minutes in args.minutes:
        video = args.work / f"video_{minutes:g}min.mp4"
        if not video.is_file():
            write_video(video, minutes)
        for decoder in args.decoders:
            with tempfile.TemporaryDirectory(dir=args.work) as cache_dir:
                result = build([video], Path(cache_dir), args.fps, args.size, decoder)
            runs.append({"minutes": minutes, "decoder": decoder, "seconds": round(result["seconds"], 2),
                         "peak_rss_mb": round(result["peak_rss_mb"], 1),
                         "cache_mb": round(result["bytes"] / 1e6, 1)})
            print(json.dumps(runs[-1]), file=sys.stderr)
    growth = {}
    for decoder in args.decoders:
        mine = sorted((r for r in runs if r["decoder"] == decoder), key=lambda r: r["minutes"])
        growth[decoder] = round(mine[-1]["peak_rss_mb"] - mine[0]["peak_rss_mb"], 1)
    print(json.dumps({"benchmark": "cache", "fps": args.fps, "size": args.size, "video": f"{WIDTH}x{HEIGHT}",
                      "runs": runs, "rss_growth_mb": growth,
                      "by_count": by_count(args.work / f"video_{min(args.minutes):g}min.mp4", args.counts, args.work,
                                           args.fps, args.size, args.decoders),
                      "target_met": all(g <= 100 for g in growth.values())}))


if __name__ == "__main__":
    main()
