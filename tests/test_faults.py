"""Fault and bad-input suite: each fault gives a clear message naming its cause, a non-zero exit where it is
fatal, and loses no finished trial, metric or prediction. (A killed sweep driver: tests/test_refit.py; a killed
worker and a lost node: tests/test_sweep.py.)"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from helpers import (
    LOOPBACK,
    TINY_OVERRIDES,
    kill_process_tree,
    listening_addresses,
    network_interfaces,
    ray_server_processes,
    wait_until,
    write_sweep_file,
)
from helpers import _stat as process_stat
from helpers import epochs_done as _epochs
from search import private_network

CLI = [sys.executable, "-m", "talsearch.cli"]
SETS = [f"{k}={v}" for k, v in TINY_OVERRIDES.items()]


def cli(*args, **kw):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=900, **kw)


@pytest.fixture()
def data_copy(tiny_data, tmp_path):
    target = tmp_path / "data"
    shutil.copytree(tiny_data, target)
    return target


def test_corrupt_mp4_is_named_or_skipped(data_copy, tmp_path):
    victim = data_copy / "videos" / "vid0000" / "front.mp4"
    victim.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 4000)
    done = cli("train", "--data", str(data_copy), "--out", str(tmp_path / "r1"), "--set", *SETS)
    assert done.returncode == 2 and "vid0000/front.mp4" in done.stderr
    skipped = cli("train", "--data", str(data_copy), "--out", str(tmp_path / "r2"), "--set", *SETS,
                  "data.on_bad_video=skip")
    assert skipped.returncode == 0, skipped.stderr
    assert "skipping video 'vid0000'" in skipped.stderr


def test_missing_video_and_bad_annotations(data_copy, tmp_path):
    (data_copy / "videos" / "vid0001" / "front.mp4").unlink()
    raw = json.loads((data_copy / "annotations.json").read_text())
    raw["database"]["vid0002"]["annotations"].append({"segment": [5.0, 2.0], "label": "dance"})
    raw["database"]["vid0003"]["views"]["front"] = "../../etc/passwd"
    (data_copy / "annotations.json").write_text(json.dumps(raw))
    done = cli("train", "--data", str(data_copy), "--out", str(tmp_path / "r"), "--set", *SETS)
    assert done.returncode == 2
    for needle in ("video file missing: videos/vid0001/front.mp4", "unknown label 'dance'",
                   "segment end 2.0 <= start 5.0", "escapes the data-set folder"):
        assert needle in done.stderr
    assert not (tmp_path / "r").exists()


def test_config_unknown_key_and_out_of_range(tiny_data, tmp_path):
    done = cli("train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--set", "model.depth=3",
               "data.interval_seconds=-1")
    assert done.returncode == 2
    assert "unknown config key 'model.depth'" in done.stderr and "data.interval_seconds" in done.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_server_unreachable_fails_before_ray(tiny_data, tmp_path):
    started = time.time()
    done = cli("sweep", "--data", str(tiny_data), "--config", str(write_sweep_file(tmp_path)), "--out",
               str(tmp_path / "s"), "--set", f"tracking.uri=http://127.0.0.1:{_free_port()}")
    assert done.returncode == 2 and "not reachable" in done.stderr
    assert time.time() - started < 60 and "Ray" not in done.stderr


def test_ensemble_over_empty_sweep(tiny_data, tmp_path):
    (tmp_path / "s" / "trials").mkdir(parents=True)
    done = cli("ensemble", "--sweep", str(tmp_path / "s"), "--data", str(tiny_data), "--out", str(tmp_path / "e"))
    assert done.returncode == 2 and "no finished trial" in done.stderr


@pytest.mark.ray
@pytest.mark.slow
def test_failing_trial_is_marked_failed_and_sweep_goes_on(tiny_data, tmp_path):
    space = "  model.pretrained: {type: categorical, values: [none, /nonexistent/weights.pt]}\n"
    out = tmp_path / "s"  # the grid runs both values, in whichever order
    done = cli("sweep", "--data", str(tiny_data), "--config", str(write_sweep_file(tmp_path, space=space)), "--out",
               str(out), "--set", "search.num_samples=2", "search.asha=false", "train.epochs=1",
               "search.sampler=grid", "search.trial_workers=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = json.loads((out / "sweep.json").read_text())["trials"]
    failed = [t for t in trials.values() if t["status"] == "FAILED"]
    finished = [t for t in trials.values() if t["status"] == "FINISHED"]
    assert len(failed) == 1 and len(finished) == 1 and len(trials) == 2
    assert all("weights file not found" in t["error"] for t in failed)
    for t in finished:
        assert (out / "trials" / t["trial_id"] / "predictions" / "val.npz").exists()
    state = json.loads((out / "sweep.json").read_text())
    client = MlflowClient(state["tracking_uri"])
    exp = client.get_run(state["parent_run_id"]).info.experiment_id
    statuses = sorted(r.info.status for r in client.search_runs(
        [exp], f"tags.mlflow.parentRunId = '{state['parent_run_id']}'"))
    assert statuses.count("FAILED") == len(failed)


def _running(pid: int) -> bool:
    """Whether process PID still runs (a zombie waiting for its parent does not)."""
    stat = process_stat(pid)
    return stat is not None and stat[1] != "Z"


@pytest.mark.ray
@pytest.mark.slow
def test_local_sweep_listens_on_loopback_only_and_sigterm_marks_runs_killed(tiny_data, tmp_path):
    out = tmp_path / "s"
    proc = subprocess.Popen([*CLI, "sweep", "--data", str(tiny_data), "--config", str(write_sweep_file(tmp_path)),
                             "--out", str(out), "--set", "search.num_samples=1", "search.asha=false",
                             "train.epochs=20", "search.trial_workers=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        wait_until(lambda: any(len(_epochs(d)) >= 1 for d in (out / "trials").glob("*")), "one epoch")
        ray_servers = ray_server_processes(proc.pid)
        assert {"gcs_server", "raylet"} <= set(ray_servers.values())
        namespaces = private_network.unshare_prefix() is not None
        if namespaces:  # the local cluster is unreachable from outside
            for server in ray_servers:  # in a namespace of their own whose only interface is loopback
                assert os.readlink(f"/proc/{server}/ns/net") != os.readlink("/proc/self/ns/net")
                assert network_interfaces(server) == {"lo"} and listening_addresses(server), ray_servers
                assert listening_addresses(server) <= LOOPBACK | {"0.0.0.0", "::"}
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=180)
    finally:
        kill_process_tree(proc)  # on a failure too: the driver and its own Ray cluster, nothing else
    assert proc.returncode == 130 and stderr.strip().splitlines()[-1] == "interrupted", stderr[-3000:]
    if not namespaces:  # no private network here: the sweep must have said that Ray listens on all interfaces
        assert "network namespaces are unavailable" in stderr
    state = json.loads((out / "sweep.json").read_text())
    client = MlflowClient(state["tracking_uri"])
    parent = client.get_run(state["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert parent.info.status == "KILLED" and children and all(r.info.status == "KILLED" for r in children)
    # the sweep's own Ray servers are gone (other tests' clusters may run meanwhile)
    assert not [pid for pid in ray_servers if _running(pid)], ray_servers
