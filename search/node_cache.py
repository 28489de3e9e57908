"""The frame cache on a cluster: each node builds its own, before any trial starts.

On a cluster (``talsearch sweep --address``) a frame cache folder is a node's own: its ``TALSEARCH_CACHE``, else
the default under its home. Before the first trial, a task pinned to each live node decodes every (video, view,
fps, size) entry the sweep's trials can ask for into that node's folder (entries already there are kept), after
checking that the folder has room for them; trials then find their entries and never decode inside a rank's
dataset constructor (where a long decode would meet the process group's timeout). A local sweep builds the
one cache of its one machine (``search.sweep.warm_cache``), as before.
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from tal_core.errors import UserError

logger = logging.getLogger("talsearch.cache")

BYTES_PER_PIXEL = 3  # uint8 RGB frames
JPEG_SHARE = 0.25  # a jpeg entry's bytes against a raw one's, estimated high (measured 5-23%: docs/performance.md)
HEADROOM = 1.1  # the estimate leaves 10% of the free space unused


class CacheSpaceError(UserError):
    """A node's frame cache folder lacks the room the sweep's entries need; the message names node and path."""


@dataclass(frozen=True)
class CacheJob:
    video: str  # absolute path
    fps: float
    size: int
    duration_s: float  # of the video that uses the entry (a clip's, for a clip)
    end_s: float | None = None  # decoded up to here (clips of a longer file); None: the whole file
    cache_format: str = "raw"  # data.cache_format: raw | jpeg

    def estimated_bytes(self) -> int:
        seconds = self.end_s if self.end_s is not None else self.duration_s
        raw = int(seconds * self.fps + 2) * self.size * self.size * BYTES_PER_PIXEL
        return int(raw * JPEG_SHARE) if self.cache_format == "jpeg" else raw

    def entry(self) -> tuple:
        """The ``FrameCache.ensure_many`` job: (video, fps, size, end_s, cache_format)."""
        return Path(self.video), self.fps, self.size, self.end_s, self.cache_format


@dataclass(frozen=True)
class NodeBuild:
    host: str
    cache_dir: str
    entries: int
    built: int
    seconds: float
    skipped: tuple[str, ...] = ()


def needed_bytes(jobs: list[CacheJob], cache_dir: Path, decoder: str) -> int:
    """Bytes the entries that are not yet in ``cache_dir`` will take (an estimate from duration and size)."""
    from tal_core.data.video import FrameCache

    cache = FrameCache(cache_dir, decoder=decoder)
    unique = {job.entry(): job for job in jobs}.values()  # clips share entries
    return sum(job.estimated_bytes() for job in unique if Path(job.video).is_file()
               and not cache.path_for(Path(job.video), job.fps, job.size, end_s=job.end_s,
                                      cache_format=job.cache_format).exists())


def build_here(jobs: list[CacheJob], decode_timeout_s: float, decoder: str, skip_bad: bool) -> NodeBuild:
    """Builds this node's own frame cache for ``jobs`` (runs inside the pinned task; also callable directly)."""
    from tal_core.data.video import FrameCache

    cache = FrameCache(None, decode_timeout_s, decoder)
    cache.cache_dir.mkdir(parents=True, exist_ok=True)
    need = needed_bytes(jobs, cache.cache_dir, decoder)
    free = shutil.disk_usage(cache.cache_dir).free
    if need * HEADROOM > free:
        raise CacheSpaceError(f"node {socket.gethostname()}: the frame cache {cache.cache_dir} needs about "
                              f"{need / 1e9:.1f} GB for this sweep's videos but has {free / 1e9:.1f} GB free "
                              f"(set TALSEARCH_CACHE on that node to a larger disk)")
    entries = sorted({j.entry() for j in jobs}, key=str)
    before = sum(1 for video, fps, size, end_s, cache_format in entries if video.is_file()
                 and cache.path_for(video, fps, size, end_s=end_s, cache_format=cache_format).exists())
    skipped = []
    started = time.perf_counter()
    cache.ensure_many(entries,
                      on_error=(lambda job, error: skipped.append(f"{job[0]}: {error}")) if skip_bad else None)
    return NodeBuild(socket.gethostname(), str(cache.cache_dir), len(entries), len(entries) - before - len(skipped),
                     time.perf_counter() - started, tuple(skipped))


def build_on_every_node(jobs: list[CacheJob], decode_timeout_s: float, decoder: str, skip_bad: bool
                        ) -> list[NodeBuild]:
    """Runs ``build_here`` in a task pinned to each live node, at once; logs each node's result as it comes."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .preflight import live_nodes

    task = ray.remote(num_cpus=0, max_retries=0)(build_here)
    pending = {}
    for node in live_nodes():
        # a task's environment is its node's (the one `ray start` ran in): its own TALSEARCH_CACHE
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        pending[task.options(scheduling_strategy=strategy).remote(jobs, decode_timeout_s, decoder, skip_bad)] = node
    logger.info(f"[cache] building the frame cache on {len(pending)} node(s): {len(jobs)} entries each")
    builds = []
    remaining = list(pending)
    while remaining:
        ready, remaining = ray.wait(remaining, num_returns=1)
        try:
            build = ray.get(ready[0])
        except ray.exceptions.RayTaskError as error:
            cause = error.as_instanceof_cause()
            if isinstance(cause, UserError):
                raise UserError(str(cause).splitlines()[0]) from None
            raise
        for line in build.skipped:
            logger.info(f"[cache] node {build.host}: skipping {line} (data.on_bad_video=skip)")
        logger.info(f"[cache] node {build.host}: {build.entries} entries ready in {build.cache_dir} "
                    f"({build.built} decoded, {build.seconds:.1f} s)")
        builds.append(build)
    return builds
