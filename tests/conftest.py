import os
import re
import sys
from pathlib import Path

import pytest

from helpers import ASHA_STOPS_SECOND, free_port, stop_process_group, wait_for_port, write_sweep_file

# A test module that starts Ray: one of its tests is marked ray, or uses a fixture that ran a sweep.
STARTS_RAY = re.compile(r"pytest\.mark\.ray\b|\b(tiny_sweep|pg_sweep|two_nodes)\b")


def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs pytest-xdist on 2 processes (``-n 2 --dist loadgroup``). Every module that starts Ray
    is part of one unit of work, which starts first and runs its tests one at a time in one process: one Ray
    cluster at a time (two local clusters on one machine once left a sweep waiting for its next trial for 20
    minutes, and slow each other's trials), the session's tiny sweep and each module's servers start once. The
    other modules are units of their own and fill the second process. (xdist's own ``loadgroup`` cannot group
    here: it renames test ids in a way pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    starts_ray = {path.relative_to(config.rootpath).as_posix() for path in Path(__file__).parent.glob("test_*.py")
                  if STARTS_RAY.search(path.read_text())}

    class RayModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return "ray" if module in starts_ray else module

        def _assign_work_unit(self, node) -> None:
            if "ray" in self.workqueue:
                self.workqueue.move_to_end("ray", last=False)
            super()._assign_work_unit(node)

    return RayModulesTogether(config, log)


@pytest.fixture(scope="session", autouse=True)
def _frame_cache(tmp_path_factory):
    os.environ["TALSEARCH_CACHE"] = str(tmp_path_factory.mktemp("frame_cache"))
    yield


@pytest.fixture()
def own_ray_temp_dir(monkeypatch):
    """A Ray temp folder of the test's own (RAY_TMPDIR, inherited by the commands it starts). A local
    ``ray.init()`` joins the cluster that the last ``ray start`` on the machine named in
    ``<temp>/ray/ray_current_cluster``, which may be someone else's (from a private network namespace it then waits
    for it forever); a test that kills its driver leaves no such file behind either. Short: Ray's unix sockets
    live under it (108 bytes at most)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small real synthetic data set: 8 videos of 6-8 s, 32 px, 3 views."""
    from tal_core.data.synth import SynthSpec, synthesize

    out = tmp_path_factory.mktemp("tiny_data")
    synthesize(out, SynthSpec(videos=8, seed=3, duration=(7.0, 9.0), size=32))
    return out


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback over a SQLite file: (url, backend store URI)."""
    import subprocess

    folder = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    store = f"sqlite:///{folder}/server.db"
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1", "--artifacts-destination",
                             str(folder / "artifacts")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}", store
    stop_process_group(proc)


@pytest.fixture(scope="session")
def tiny_sweep(tiny_data, mlflow_server, tmp_path_factory):
    """One real sweep (local Ray, tracked on the real MLflow server) shared by the sweep, tracking, ensemble
    and UI tests: (sweep folder, finished process).

    ASHA ranks trials by train loss (maximised) after epoch 1; TPE seed 14 draws action-loss weights 4.0, 0.05,
    4.0 (and outputs interval, interval, frame: the sweep mixes both kinds), so the second trial is usually
    stopped after epoch 1 of 3 and the third runs after it (with Tune's reuse_actors on, that third trial was
    aborted: the stopped trial's actor was still inside TorchTrainer.fit()). Tests do not rely on those draws:
    the sweep test checks the stops against Ray's ASHA replayed on what the trials reported.
    """
    import subprocess

    folder = tmp_path_factory.mktemp("tiny_sweep")
    out = folder / "sweep"
    done = subprocess.run([sys.executable, "-m", "talsearch.cli", "sweep", "--data", str(tiny_data), "--config",
                           str(write_sweep_file(folder, ASHA_STOPS_SECOND)), "--out", str(out), "--set",
                           f"tracking.uri={mlflow_server[0]}", "search.metric=train_loss", "search.seed=14",
                           "train.epochs=3"],
                          capture_output=True, text=True, timeout=1200,
                          cwd=folder)
    return out, done
