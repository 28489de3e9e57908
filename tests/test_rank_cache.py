import logging
import pickle
import socket

import numpy as np

from search.rank_cache import RankFrameCache
from tal_core.data.video import FrameCache


def test_a_rank_decodes_a_missing_entry_and_says_which_node_and_entry(tmp_path, tiny_data, caplog):
    """A rank on a node whose cache lacks an entry (a node that joined after the sweep's build) decodes it, as
    the plain cache would, and warns naming the node, the video and the folder; a hit is silent. Data-loader
    workers pickle the cache with the data set."""
    video = tiny_data / "videos" / "vid0000" / "front.mp4"
    cache = RankFrameCache(tmp_path / "rank", decoder="decord")
    with caplog.at_level(logging.WARNING, logger="talsearch.cache"):
        entry = cache.ensure(video, 8, 24)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "talsearch.cache"]
    assert socket.gethostname() in warning and str(video) in warning and str(tmp_path / "rank") in warning
    plain = FrameCache(tmp_path / "plain", decoder="decord").ensure(video, 8, 24)
    assert np.array_equal(np.load(entry), np.load(plain))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="talsearch.cache"):
        assert pickle.loads(pickle.dumps(cache)).ensure(video, 8, 24) == entry
    assert not [r for r in caplog.records if r.name == "talsearch.cache"]


def test_a_rank_decodes_a_missing_sound_entry_and_says_so(tmp_path, caplog):
    """The sound cache a rank's dataset gets from its frame cache warns the same way on a miss (naming the node,
    the file and the time range) and decodes what the plain cache decodes; a hit is silent."""
    from test_audio import click, write_wav

    from tal_core.data.audio import AudioCache

    path = write_wav(tmp_path / "a.wav", click(2.0, 1.0), 16000)
    from tal_core.data.dataset import sound_cache

    sound = sound_cache(RankFrameCache(tmp_path / "rank"), None)
    assert sound.cache_dir == tmp_path / "rank" and type(sound_cache(FrameCache(tmp_path), None)) is AudioCache
    with caplog.at_level(logging.WARNING, logger="talsearch.cache"):
        values = sound.load(path, 0.0, 2.0)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "talsearch.cache"]
    assert socket.gethostname() in warning and str(path) in warning and "0-2 s" in warning
    np.testing.assert_array_equal(values, AudioCache(tmp_path / "plain").load(path, 0.0, 2.0))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="talsearch.cache"):
        pickle.loads(pickle.dumps(sound)).load(path, 0.0, 2.0)
    assert not [r for r in caplog.records if r.name == "talsearch.cache"] and sound.decoded == 1
