"""Each node's own frame cache: built before trials, with a free-disk check (the Ray side runs in
tests/test_preflight.py's two-node cluster)."""

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from search.node_cache import CacheJob, CacheSpaceError, build_here, needed_bytes
from tal_core.data.annotations import load_dataset


def _jobs(tiny_data, count=2):
    spec = load_dataset(tiny_data)
    videos = list(spec.videos.values())[:count]
    return [CacheJob(str(spec.video_path(v, "front")), 4.0, 16, v.duration) for v in videos]


def test_a_node_builds_the_entries_it_lacks_into_its_own_cache(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TALSEARCH_CACHE", str(tmp_path / "node_cache"))
    jobs = _jobs(tiny_data)
    expected = sum(int(j.duration_s * 4 + 2) * 16 * 16 * 3 for j in jobs)
    assert needed_bytes(jobs, tmp_path / "node_cache", "auto") == expected
    first = build_here(jobs, 60.0, "auto", skip_bad=False)
    assert first.cache_dir == str(tmp_path / "node_cache") and (first.entries, first.built) == (2, 2)
    assert len(list(Path(first.cache_dir).glob("*.npy"))) == 2
    assert needed_bytes(jobs, tmp_path / "node_cache", "auto") == 0
    again = build_here(jobs, 60.0, "auto", skip_bad=False)
    assert (again.entries, again.built) == (2, 0)  # nothing decoded twice


def test_a_node_without_room_for_the_sweep_says_so_before_decoding(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TALSEARCH_CACHE", str(tmp_path / "small_disk"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(CacheSpaceError, match=r"the frame cache .*small_disk needs about .* GB .* 0.0 GB free"):
        build_here(_jobs(tiny_data), 60.0, "auto", skip_bad=False)
    assert not list((tmp_path / "small_disk").glob("*.npy"))


def test_a_node_builds_jpeg_entries_and_counts_their_smaller_size(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TALSEARCH_CACHE", str(tmp_path / "node_cache"))
    raw = _jobs(tiny_data)
    jpeg = [CacheJob(j.video, j.fps, j.size, j.duration_s, cache_format="jpeg") for j in raw]
    assert needed_bytes(jpeg, tmp_path / "node_cache", "auto") < needed_bytes(raw, tmp_path / "node_cache", "auto")
    built = build_here(jpeg, 60.0, "auto", skip_bad=False)
    assert (built.entries, built.built) == (2, 2) and len(list(Path(built.cache_dir).glob("*-jpeg-*.npy"))) == 2
    assert needed_bytes(jpeg, tmp_path / "node_cache", "auto") == 0 < needed_bytes(raw, tmp_path / "node_cache", "auto")
