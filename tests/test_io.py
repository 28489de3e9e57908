import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from tal_core.errors import UserError
from tal_core.io import atomic_file, clean_temporaries, read_jsonl, write_json_atomic, write_text_atomic


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]



def test_writers_on_two_hosts_under_one_pid_never_share_a_temporary(tmp_path, monkeypatch):
    """Nodes that share a folder may run their writers under the same pid: each writer's temporary names its host
    (and a random part, for threads of one process), so neither truncates the other's half-written entry and
    the last to publish wins whole."""
    target = tmp_path / "entry.npy"
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    monkeypatch.setattr(socket, "gethostname", lambda: "node-a")
    with atomic_file(target, "w") as on_a:
        on_a.write("from a")
        monkeypatch.setattr(socket, "gethostname", lambda: "node-b")
        with atomic_file(target, "w") as on_b, atomic_file(target, "w") as on_b_again:
            on_b_again.write("from b, another thread")
            on_b.write("from b")
            temporaries = sorted(p.name for p in tmp_path.iterdir())
            assert len(temporaries) == 3, temporaries
            assert sum(".node-a.4242." in name for name in temporaries) == 1
            assert sum(".node-b.4242." in name for name in temporaries) == 2
        assert target.read_text() == "from b"
    assert target.read_text() == "from a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.npy"]

def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "sweep.json"
    write_text_atomic(target, "old")
    code = ("import sys, time\nfrom tal_core.io import write_atomic\n"
            "def slow(handle):\n    handle.write('new' * 1000)\n    handle.flush()\n    print('writing', flush=True)\n"
            "    time.sleep(60)\n"
            f"write_atomic({str(target)!r}, slow)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.read_text() == "old"
    assert clean_temporaries(tmp_path) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["sweep.json"]


def test_torn_last_line_is_skipped_with_a_warning_and_other_bad_lines_named(tmp_path):
    history = tmp_path / "history.jsonl"
    history.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    with pytest.warns(UserWarning, match="torn last line"):
        assert read_jsonl(history) == [{"epoch": 1}, {"epoch": 2}]
    history.write_text('{"epoch": 1}\n{"ep\n{"epoch": 3}\n')
    with pytest.raises(UserError, match="history.jsonl: line 2"):
        read_jsonl(history)
