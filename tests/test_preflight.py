"""A real two-node Ray cluster on one machine whose worker node does not share the sweep folder.

The head (``ray start --head``, 1 CPU) runs in this machine's mount namespace; the worker node (``ray start
--address``, 1 CPU) runs inside ``unshare --mount`` with a tmpfs over ``private/``, so the sweep folder the
driver writes there is invisible to it, as on a cluster whose nodes share no disk. Token auth is on, with one
token for every process. Nodes are stopped by SIGTERM to the ``ray start --block`` processes this test started
(never Ray's stop command, which ends every Ray process on the machine).
"""

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ensemble.candidates import collect
from helpers import TALSEARCH, free_port, kill_process_tree, write_sweep_file
from search import preflight

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# 3 trials, 1 single-CPU worker each: two run at once, one on each node. Grid order (seed 1): 4.0 first, so
# whichever trial reports its first epoch second or third with a small loss weight is below ASHA's cutoff
# (the metric is the train loss, maximised; the loss weight scales it 80x).
SPACE = "  loss.action_weight: {type: categorical, values: [4.0, 0.05, 0.04]}\n"
SETTINGS = ["search.num_samples=3", "search.trial_workers=1", "search.sampler=grid", "search.seed=1",
            "search.metric=train_loss", "search.grace_period=1", "search.reduction_factor=2", "train.epochs=2",
            "search.max_failures=0"]


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _alive_nodes(address: str, env: dict) -> int:
    probe = (f"import ray\nray.init(address={address!r}, log_to_driver=False)\n"
             "print(sum(1 for n in ray.nodes() if n['Alive']))")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else 0


def _stop(procs: list[subprocess.Popen]) -> None:
    """Every node's `ray start --block` and what it started, killed (SIGTERM makes each take about 15 s to shut
    its node down; nothing of the cluster outlives the test either way)."""
    for proc in procs:
        kill_process_tree(proc)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """(address, env, private folder, shared folder) of a running two-node cluster."""
    folder = tmp_path_factory.mktemp("cluster")
    private, shared = folder / "private", folder / "shared"
    private.mkdir()
    shared.mkdir()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = free_port()
    address = f"127.0.0.1:{port}"
    ray_cli = str(Path(sys.executable).with_name("ray"))
    # each node its own frame cache folder (TALSEARCH_CACHE in the environment `ray start` runs in)
    # a dashboard port of its own: on Ray's default (8265) a dashboard another test's cluster still holds makes
    # this head's fail, and without it Ray Train cannot free a trial that ASHA stops (the sweep then waits forever)
    head = _start([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=1", "--dashboard-host=127.0.0.1",
                   f"--dashboard-port={free_port()}", "--block"], {**env, "TALSEARCH_CACHE": str(folder / "cache_head")}, folder / "head.log")
    nodes = [head]
    try:
        deadline = time.time() + 180
        while _alive_nodes(address, env) < 1:
            assert head.poll() is None and time.time() < deadline, (folder / "head.log").read_text()[-2000:]
            time.sleep(2)
        worker_start = (f"mount -t tmpfs tmpfs {private} && exec {ray_cli} start --address={address} "
                        f"--num-cpus=1 --block")
        worker = _start(["unshare", "--mount", "--propagation", "private", "sh", "-c", worker_start],
                        {**env, "TALSEARCH_CACHE": str(folder / "cache_worker")}, folder / "worker.log")
        nodes.append(worker)
        while _alive_nodes(address, env) < 2:
            log = (folder / "worker.log").read_text()
            if worker.poll() is not None:
                if "mount" in log and os.environ.get("CI") != "true" and os.geteuid() != 0:
                    pytest.skip(f"no private mount namespace here (not root): {log[-300:]}")
                pytest.fail(f"the worker node did not start: {log[-2000:]}")
            assert time.time() < deadline, log[-2000:]
            time.sleep(2)
        yield address, env, private, shared
    finally:
        _stop(nodes)


def _sweep(tiny_data, folder: Path, out: Path, address: str, env: dict, *extra: str):
    config = write_sweep_file(folder, space=SPACE)
    return subprocess.run([*TALSEARCH, "sweep", "--data", str(tiny_data), "--config", str(config), "--out",
                           str(out), "--address", address, *extra, "--set", *SETTINGS],
                          env=env, capture_output=True, text=True, timeout=900, cwd=folder)


def test_a_node_that_cannot_see_the_sweep_folder_stops_the_sweep_before_training(two_nodes, tiny_data):
    address, env, private, shared = two_nodes
    out = private / "sweep_unshared"
    started = time.time()
    done = _sweep(tiny_data, shared, out, address, env)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pre-flight: node ") and f"cannot see the sweep folder {out}" in last, last
    assert "--storage" in last
    assert not (out / "trials").exists() and not (out / "sweep.json").exists()  # nothing trained, no state
    assert time.time() - started < 120
    check = subprocess.run([*TALSEARCH, "sweep", "--check", "--data", str(tiny_data), "--config",
                            str(write_sweep_file(shared, space=SPACE)), "--out", str(private / "checked"),
                            "--address", address, "--storage", str(shared / "storage")],
                           env=env, capture_output=True, text=True, timeout=300, cwd=shared)
    assert check.returncode == 0, check.stderr[-3000:]
    assert json.loads(check.stdout)["check"] == "passed"
    assert not (shared / "storage").exists() or not any((shared / "storage").rglob(preflight.NONCE_NAME))


def test_with_storage_both_see_every_trial_reaches_the_drivers_sweep_folder(two_nodes, tiny_data, tmp_path):
    address, env, private, shared = two_nodes
    out = private / "sweep"
    storage = shared / "storage"
    done = _sweep(tiny_data, shared, out, address, env, "--storage", str(storage))
    assert done.returncode == 0, done.stderr[-4000:]
    state = json.loads((out / "sweep.json").read_text())
    assert state["storage"] == str(storage)
    trials = state["trials"]
    assert len(trials) == 3
    statuses = sorted(t["status"] for t in trials.values())
    assert "STOPPED_EARLY" in statuses and "FINISHED" in statuses and "FAILED" not in statuses, trials
    assert "3 trial(s): " in done.stderr and " stopped early, 0 failed" in done.stderr
    nodes = {json.loads((out / "trials" / t / "worker_0.json").read_text())["node_id"] for t in trials}
    assert len(nodes) == 2  # rank 0 ran on each node at least once
    for cache in ("cache_head", "cache_worker"):  # each node built the sweep's 8 entries into its own folder
        assert len(list((shared.parent / cache).glob("*.npy"))) == 8, cache
    board = subprocess.run([*TALSEARCH, "leaderboard", str(out), "--format", "json"], env=env,
                           capture_output=True, text=True, timeout=120)
    rows = json.loads(board.stdout)
    assert {r["trial_id"] for r in rows} == set(trials)
    assert all(r["val_mAP"] == pytest.approx(trials[r["trial_id"]]["val_mAP"]) for r in rows)
    assert sorted(r["loss.action_weight"] for r in rows) == [0.04, 0.05, 4.0]  # each trial's config arrived
    # Ray keeps only the checkpoint resume needs
    for trial_id in trials:
        kept = [p for p in (storage / state["study_name"]).glob(f"{trial_id}/checkpoint_*") if p.is_dir()]
        assert len(kept) == 1, kept

    ensemble = subprocess.run([*TALSEARCH, "ensemble", "--sweep", str(out), "--data", str(tiny_data), "--out",
                               str(tmp_path / "ensemble"), "--folds", "2"],
                              env=env, capture_output=True, text=True, timeout=600)
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    assert json.loads((tmp_path / "ensemble" / "metrics.json").read_text())["best_single"]["run_id"] in trials
    candidates = collect(str(out), "", tmp_path / "candidates", 0)  # what the ensemble chose among
    assert {c.run_id.split("@")[0] for c in candidates} == set(trials)

    refit = subprocess.run([*TALSEARCH, "refit", str(out), "--top", "1", "--seeds", "1", "--address", address],
                           env=env, capture_output=True, text=True, timeout=600)
    assert refit.returncode == 0, refit.stderr[-3000:]
    refitted = json.loads((out / "refit.json").read_text())["trials"]
    assert len(refitted) == 1
    (trial_id, outcome), = refitted.items()
    assert outcome["status"] == "FINISHED" and isinstance(outcome["val_mAP"], float)
    assert (out / "trials" / trial_id / "predictions" / "val.npz").is_file()


STATE_API_PROBE = """
import sys
import ray
from search import preflight
ray.init(address="local", num_cpus=1, log_to_driver=False, include_dashboard=sys.argv[1] == "dashboard",
         dashboard_host="127.0.0.1", dashboard_port=int(sys.argv[2]))
try:
    preflight.check_state_api()
    print("passed")
except preflight.PreflightError as error:
    print(error)
"""


def test_a_cluster_without_a_state_api_fails_the_pre_flight(tmp_path, own_ray_temp_dir):
    """A head without its dashboard: Ray Train could not free a stopped trial's workers (the sweep would wait
    forever), so the pre-flight names the cause; with the dashboard it passes."""
    from helpers import ROOT

    said = {}
    for head in ("dashboard", "none"):
        done = subprocess.run([sys.executable, "-c", STATE_API_PROBE, head, str(free_port())], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        said[head] = done.stdout.strip().splitlines()[-1]
    assert said["dashboard"] == "passed"
    assert said["none"].startswith("pre-flight: the cluster's") and "wait forever" in said["none"], said["none"]
    assert "--include-dashboard=true" in said["none"]
