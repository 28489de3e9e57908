"""What a frame cache folder holds, and pruning it (``talsearch cache ls|prune``).

Entries are ``<video stem>-<size>px-<fps>fps[-jpeg]-<digest>.npy`` files (``tal_core.data.video.cache_key``;
``-jpeg``: ``data.cache_format: jpeg``) and audio log-mel ``.npy`` files beside them; using an entry marks it used
(its modification time), so ``prune --older-than D`` removes what no run has read for D days. Locks and
temporaries that killed builders left are removed by every prune.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from tal_core.errors import UserError

FRAME_ENTRY = re.compile(
    r"^(?P<video>.+)-(?P<size>\d+)px-(?P<fps>[\d.]+)fps(?:-(?P<format>jpeg))?-(?P<digest>[0-9a-f]{20})\.npy$")
DAY_S = 86400.0


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # frames | other
    video: str
    size: int | None
    fps: float | None
    bytes: int
    last_used: float  # Unix time
    format: str | None = None  # a frames entry's data.cache_format: raw | jpeg

    def row(self) -> dict:
        return {"name": self.name, "kind": self.kind, "video": self.video, "size": self.size, "fps": self.fps,
                "format": self.format,
                "mb": round(self.bytes / 1e6, 3), "last_used": time.strftime("%Y-%m-%dT%H:%M:%S",
                                                                           time.localtime(self.last_used))}


def entries(cache_dir: str | Path) -> list[Entry]:
    """Every published entry of the folder, newest use first."""
    folder = Path(cache_dir)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such frame cache folder")
    found = []
    for path in folder.glob("*.npy"):
        stat = path.stat()
        match = FRAME_ENTRY.match(path.name)
        found.append(Entry(path.name, "frames" if match else "other", match["video"] if match else path.stem,
                           int(match["size"]) if match else None, float(match["fps"]) if match else None,
                           stat.st_size, stat.st_mtime, (match["format"] or "raw") if match else None))
    return sorted(found, key=lambda e: -e.last_used)


def prune(cache_dir: str | Path, older_than_days: float, now: float | None = None) -> dict:
    """Removes entries unused for ``older_than_days`` (0: all) and leftover locks and temporaries; returns
    ``{"removed": N, "freed_mb": MB, "kept": N}``."""
    if older_than_days < 0:
        raise UserError(f"--older-than must be >= 0 days, got {older_than_days}")
    now = time.time() if now is None else now
    removed, freed, kept = 0, 0, 0
    for entry in entries(cache_dir):
        if now - entry.last_used >= older_than_days * DAY_S:
            (Path(cache_dir) / entry.name).unlink(missing_ok=True)
            (Path(cache_dir) / entry.name).with_suffix(".lock").unlink(missing_ok=True)
            removed, freed = removed + 1, freed + entry.bytes
        else:
            kept += 1
    for leftover in [*Path(cache_dir).glob(".*.tmp*"), *Path(cache_dir).glob("*.lock")]:
        if leftover.is_file() and now - leftover.stat().st_mtime >= 3600:  # an hour: no live builder holds it
            freed += leftover.stat().st_size
            leftover.unlink(missing_ok=True)
    return {"removed": removed, "freed_mb": round(freed / 1e6, 3), "kept": kept}
