"""The frame and sound caches a trial's rank reads: a miss there is decoded, and said.

A sweep builds every entry its trials can ask for before its first trial (``search.node_cache`` on a cluster,
``search.sweep.warm_cache`` on one machine), so a rank finds its entries and never decodes inside its dataset
constructor, where a long decode would meet the process group's timeout. A node that joined the cluster after
that build has none: its ranks decode what they need (frames and log-mel alike), and each miss is logged with
the node and the entry, so a slow trial start is explained (``talsearch sweep --resume`` builds the caches of
every node alive again).
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import numpy as np

from tal_core.data.audio import AudioCache
from tal_core.data.video import FrameCache

logger = logging.getLogger("talsearch.cache")


def _say_miss(kind: str, entry: str, folder: Path) -> None:
    logger.warning(f"[cache] node {socket.gethostname()}: no {kind} cache entry for {entry} in {folder}; decoding "
                   "it inside this trial's rank (the sweep built every node's cache before its first trial: did "
                   "this node join later?)")


class RankFrameCache(FrameCache):
    """``FrameCache`` that warns at every entry it has to decode (module level: data-loader workers pickle it)."""

    def _build(self, video: Path, decode_fps: float, size: int, target: Path, *args, **kwargs) -> None:
        _say_miss("frame", f"{video} ({size} px, {decode_fps:g} fps)", self.cache_dir)
        super()._build(video, decode_fps, size, target, *args, **kwargs)

    def audio_cache(self, timeout_s: float | None) -> AudioCache:
        """The sound cache a rank's dataset reads (``tal_core.data.dataset.sound_cache``)."""
        return RankAudioCache(self.cache_dir, timeout_s)


class RankAudioCache(AudioCache):
    """``AudioCache`` that warns at every entry it has to decode."""

    def _decode(self, audio: Path, start: float, end: float) -> np.ndarray:
        _say_miss("sound", f"{audio} ({start:g}-{end:g} s)", self.cache_dir)
        return super()._decode(audio, start, end)
