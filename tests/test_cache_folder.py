"""``talsearch cache ls|prune``: what a frame cache folder holds, and removing what no run used lately."""

import json
import os
import time

import numpy as np

from tal_core.data.cache_folder import entries, prune
from tal_core.data.video import FrameCache
from talsearch.cli import main


def test_ls_lists_entries_and_prune_removes_only_the_unused(tmp_path, tiny_data, capsys):
    video = tiny_data / "videos" / "vid0000" / "front.mp4"
    cache = FrameCache(tmp_path)
    old = cache.ensure(video, 4, 16)
    new = cache.ensure(video, 4, 24)
    day = 86400
    os.utime(old, (time.time() - 10 * day, time.time() - 10 * day))
    (tmp_path / ".stale.npy.host.1.abc.tmp").write_bytes(b"x")
    os.utime(tmp_path / ".stale.npy.host.1.abc.tmp", (time.time() - 2 * day, time.time() - 2 * day))
    listed = entries(tmp_path)
    assert [e.name for e in listed] == [new.name, old.name] and listed[0].size == 24 and listed[0].fps == 4.0
    assert main(["cache", "ls", "--dir", str(tmp_path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["video"] for r in rows] == ["front", "front"] and rows[1]["mb"] == round(old.stat().st_size / 1e6, 3)
    assert main(["cache", "prune", "--dir", str(tmp_path), "--older-than", "7"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["removed"] == 1 and result["kept"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([new.name, new.with_suffix(".lock").name])
    assert cache.ensure(video, 4, 24) == new and np.load(new).shape[1:] == (24, 24, 3)  # a hit marks it used
    assert time.time() - new.stat().st_mtime < 60
    assert prune(tmp_path, 0)["removed"] == 1 and not list(tmp_path.glob("*.npy"))


def test_cache_commands_name_what_is_wrong(tmp_path, capsys):
    assert main(["cache", "ls", "--dir", str(tmp_path / "missing")]) == 2
    assert "missing: no such frame cache folder" in capsys.readouterr().err
    assert main(["cache", "prune", "--dir", str(tmp_path)]) == 2
    assert "--older-than" in capsys.readouterr().err


def test_jpeg_entries_are_listed_with_their_format_and_pruned(tmp_path, tiny_data, capsys):
    video = tiny_data / "videos" / "vid0000" / "front.mp4"
    cache = FrameCache(tmp_path)
    raw, jpeg = cache.ensure(video, 4, 16), cache.ensure(video, 4, 16, cache_format="jpeg")
    listed = {e.name: e for e in entries(tmp_path)}
    assert listed[jpeg.name].kind == "frames" and listed[jpeg.name].format == "jpeg"
    assert listed[jpeg.name].video == "front" and (listed[jpeg.name].size, listed[jpeg.name].fps) == (16, 4.0)
    assert listed[raw.name].format == "raw"
    assert main(["cache", "ls", "--dir", str(tmp_path)]) == 0
    assert any("jpeg" in line and jpeg.name in line for line in capsys.readouterr().out.splitlines())
    assert prune(tmp_path, 0)["removed"] == 2 and not list(tmp_path.glob("*.npy"))
