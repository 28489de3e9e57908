import ast
import os
import sys
from pathlib import Path

import pytest

from helpers import ASHA_STOPS_SECOND, free_port, stop_process_group, wait_for_port, write_sweep_file

# Fixtures that start Ray (or give a test its own Ray temp folder, which only a Ray test needs). The session's
# tiny sweep runs once: every test that reads it is in one unit of work.
SESSION_RAY_FIXTURES = frozenset({"tiny_sweep"})
RAY_FIXTURES = SESSION_RAY_FIXTURES | {"pg_sweep", "two_nodes", "own_ray_temp_dir"}


def _marks_ray(decorators) -> bool:
    """Whether a decorator list (or a ``pytestmark`` value) holds ``pytest.mark.ray``."""
    return any(isinstance(node, ast.Attribute) and node.attr == "ray" and isinstance(node.value, ast.Attribute)
               and node.value.attr == "mark" for decorator in decorators for node in ast.walk(decorator))


def ray_tests(path: Path) -> tuple[set[str] | None, bool]:
    """(the names of a test module's tests that start Ray: marked ray, or using a fixture that does, a conftest one
    above or one of the module's own fixtures that uses one at any depth; None: every test of the module, whose
    ``pytestmark`` holds ray), whether any of them reads the session's tiny sweep)."""
    tree = ast.parse(path.read_text())
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    functions += [item for node in tree.body if isinstance(node, ast.ClassDef) for item in node.body
                  if isinstance(item, ast.FunctionDef)]
    uses = {f.name: {a.arg for a in f.args.args} for f in functions}

    def users(fixtures: frozenset[str]) -> set[str]:
        reached, grew = set(fixtures), True
        while grew:
            found = {name for name, args in uses.items() if not name.startswith("test") and args & reached}
            grew = not found <= reached
            reached |= found
        return {name for name, args in uses.items() if name.startswith("test") and args & reached}

    session = bool(users(SESSION_RAY_FIXTURES))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
            if _marks_ray([node.value]):
                return None, session
    marked = {f.name for f in functions if f.name.startswith("test") and _marks_ray(f.decorator_list)}
    return marked | users(RAY_FIXTURES), session


def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs pytest-xdist on 2 processes (``-n 2 --dist loadgroup``). The tests that start Ray
    (``ray_tests``) are units of work that go first: the tests of the modules that read the session's tiny sweep
    (one unit, so that sweep runs once), then each other module's Ray tests (a unit each: their module's servers
    and clusters start once). A process takes one unit at a time and runs its tests one after another, so at most
    two clusters run at once; each process has a Ray temp folder of its own (``_ray_temp_dir_of_this_process``)
    and every local sweep a network namespace of its own: they share neither files nor ports. The other tests are
    grouped by module, units that fill the processes as they free up (the Ray modules' tests that start no Ray
    included). (xdist's own ``loadgroup`` cannot group here: it renames test ids in a way pytest 9 no longer
    reads.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    starting = {path.relative_to(config.rootpath).as_posix(): ray_tests(path)
                for path in Path(__file__).parent.glob("test_*.py")}
    tiny_sweep_unit = "ray:tiny_sweep"

    class RayTestsFirst(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module, _, rest = nodeid.partition("::")
            names, reads_tiny_sweep = starting.get(module, (set(), False))
            test = rest.split("::")[-1].split("[")[0]
            if names is None or test in names:
                return tiny_sweep_unit if reads_tiny_sweep else f"ray:{module}"
            return module

        def _assign_work_unit(self, node) -> None:
            ray_units = [unit for unit in self.workqueue if unit.startswith("ray:")]
            for unit in reversed(sorted(ray_units, key=lambda unit: unit != tiny_sweep_unit)):
                self.workqueue.move_to_end(unit, last=False)
            super()._assign_work_unit(node)

    return RayTestsFirst(config, log)


@pytest.fixture(scope="session", autouse=True)
def _ray_temp_dir_of_this_process():
    """Each pytest process (xdist worker) a Ray temp folder of its own (RAY_TMPDIR, inherited by the commands its
    tests start): Ray's shared files under it (``ray_current_cluster``, which a local ``ray.init()`` joins, and
    ``session_latest``) never name another process's cluster, and what the clusters leave is removed."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    os.environ["RAY_TMPDIR"] = str(folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


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
    stopped after epoch 1 of 2 and the third runs after it (with Tune's reuse_actors on, that third trial was
    aborted: the stopped trial's actor was still inside TorchTrainer.fit()). Tests do not rely on those draws:
    the sweep test checks the stops against Ray's ASHA replayed on what the trials reported.
    """
    import subprocess

    folder = tmp_path_factory.mktemp("tiny_sweep")
    out = folder / "sweep"
    done = subprocess.run([sys.executable, "-m", "talsearch.cli", "sweep", "--data", str(tiny_data), "--config",
                           str(write_sweep_file(folder, ASHA_STOPS_SECOND)), "--out", str(out), "--set",
                           f"tracking.uri={mlflow_server[0]}", "search.metric=train_loss", "search.seed=14",
                           "train.epochs=2"],
                          capture_output=True, text=True, timeout=1200,
                          cwd=folder)
    return out, done
