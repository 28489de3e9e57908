"""The frame cache a trial's rank reads: a miss there is decoded, and said.

A sweep builds every entry its trials can ask for before its first trial (``search.node_cache`` on a cluster,
``search.sweep.warm_cache`` on one machine), so a rank finds its entries and never decodes inside its dataset
constructor, where a long decode would meet the process group's timeout. A node that joined the cluster after
that build has none: its ranks decode what they need, and each miss is logged with the node and the entry, so a
slow trial start is explained (``talsearch sweep --resume`` builds the caches of every node alive again).
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from tal_core.data.video import FrameCache

logger = logging.getLogger("talsearch.cache")


class RankFrameCache(FrameCache):
    """``FrameCache`` that warns at every entry it has to decode (module level: data-loader workers pickle it)."""

    def _build(self, video: Path, decode_fps: float, size: int, target: Path, *args, **kwargs) -> None:
        logger.warning(f"[cache] node {socket.gethostname()}: no frame cache entry for {video} ({size} px, "
                       f"{decode_fps:g} fps) in {self.cache_dir}; decoding it inside this trial's rank (the sweep "
                       "built every node's cache before its first trial: did this node join later?)")
        super()._build(video, decode_fps, size, target, *args, **kwargs)
