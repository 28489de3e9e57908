"""search.storage: a sweep's Optuna study on a real PostgreSQL server (started here with initdb/pg_ctl), read by
--resume, --warm-start and `talsearch ui --optuna`, and an MLflow tracking server on PostgreSQL that the sweeps
log to. The password travels in PGPASSWORD or in the user's config at run time and lands in no file."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
import yaml

from helpers import TALSEARCH, free_port, stop_process_group, wait_for_port
from search.study_storage import StudyStorage, load_study, open_storage, redact, sweep_url
from tal_core.config import ConfigError, load_config
from tal_core.errors import UserError
from talsearch.cli import main

PASSWORD = "p@ss:w0rd/Q7"  # needs quoting in a URL: both spellings are looked for on disk
ROLE = "tal"


def _run_pg(argv: list[str]) -> subprocess.CompletedProcess:
    """initdb and pg_ctl refuse root: there they run as the postgres user."""
    if os.geteuid() == 0:
        runner = shutil.which("runuser")
        argv = [runner, "-u", "postgres", "--", *argv] if runner else \
            ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(argv)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _cannot(why: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL could not be started: {why}")
    pytest.skip(f"PostgreSQL could not be started: {why}")


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1 (password authentication over TCP) with role ROLE owning databases
    ``optuna`` and ``mlflow``: {"port", "folder"}; stopped with pg_ctl afterwards."""
    for tool in ("initdb", "pg_ctl"):
        if shutil.which(tool) is None:
            _cannot(f"{tool} is not on the PATH")
    folder = Path(tempfile.mkdtemp(prefix="talsearch-pg-"))
    if os.geteuid() == 0:
        try:
            shutil.chown(folder, "postgres")
        except (LookupError, OSError) as error:
            shutil.rmtree(folder, ignore_errors=True)
            _cannot(f"no postgres user to run it as ({error})")
    data, port = folder / "data", free_port()
    init = _run_pg([shutil.which("initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                    "--auth-host=scram-sha-256", "--no-sync"])
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        _cannot(f"initdb: {init.stderr[-500:]}")
    started = _run_pg([shutil.which("pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
                       "-o", f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder} "
                             "-c fsync=off", "start"])
    try:
        if started.returncode != 0:
            log = (folder / "server.log").read_text()[-500:] if (folder / "server.log").exists() else ""
            _cannot(f"pg_ctl start: {started.stderr[-500:]} {log}")
        import psycopg

        with psycopg.connect(host=str(folder), port=port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
            for database in ("optuna", "mlflow"):
                connection.execute(f"CREATE DATABASE {database} OWNER {ROLE}")
        yield {"port": port, "folder": folder}
    finally:
        _run_pg([shutil.which("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


def study_url(postgres, password: str | None = None) -> str:
    user = ROLE if password is None else f"{ROLE}:{quote(password, safe='')}"
    return f"postgresql://{user}@127.0.0.1:{postgres['port']}/optuna"


def with_password() -> dict:
    return {**os.environ, "PGPASSWORD": PASSWORD}


def without_password() -> dict:
    return {**{k: v for k, v in os.environ.items() if k != "PGPASSWORD"}, "PGPASSFILE": "/nonexistent/.pgpass"}


def assert_no_password_in(folder: Path) -> None:
    spellings = {PASSWORD.encode(), quote(PASSWORD, safe="").encode()}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            assert not any(s in content for s in spellings), f"the password is in {path}"


def test_a_bad_storage_url_is_refused_naming_key_and_value():
    for password in (PASSWORD, quote(PASSWORD, safe="")):  # even one left unquoted is kept out of the message
        with pytest.raises(ConfigError, match=r"search.storage.*'http://tal@db/optuna'") as error:
            load_config(None, {"search.storage": f"http://tal:{password}@db/optuna"})
        assert "w0rd" not in str(error.value)
    with pytest.raises(ConfigError, match="search.storage.*in-memory"):
        load_config(None, {"search.storage": "sqlite://"})
    config = load_config(None, {"search.storage": "postgresql://tal:pw@db:5432/optuna"})
    assert config.search.storage == "postgresql://tal@db:5432/optuna"  # the password stays in memory only
    assert "pw" not in json.dumps(config.model_dump(mode="json"))


def test_an_unreachable_database_stops_the_sweep_before_any_work(tiny_data, tmp_path, capsys):
    from helpers import write_sweep_file

    port = free_port()
    code = main(["sweep", "--data", str(tiny_data), "--config", str(write_sweep_file(tmp_path)), "--out",
                 str(tmp_path / "out"), "--set", f"search.storage=postgresql://nobody:{quote(PASSWORD, safe='')}"
                 f"@127.0.0.1:{port}/optuna"])
    err = capsys.readouterr().err
    assert code == 2, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: search.storage postgresql://nobody@127.0.0.1:{port}/optuna: "), err
    assert PASSWORD not in err and quote(PASSWORD, safe="") not in err
    assert not (tmp_path / "out").exists()


def test_the_pickled_storage_holds_no_password(postgres):
    """Ray Tune pickles its searcher (and so the study's storage) into the sweep folder: without the password;
    unpickled in a process that knows it (PGPASSWORD here), it connects again."""
    import pickle

    storage = open_storage(study_url(postgres, PASSWORD))
    assert isinstance(storage, StudyStorage) and storage.url == study_url(postgres)
    optuna.create_study(storage=storage, study_name="pickled", direction="maximize")
    blob = pickle.dumps(storage)
    assert PASSWORD.encode() not in blob and quote(PASSWORD, safe="").encode() not in blob
    os.environ["PGPASSWORD"] = PASSWORD
    try:
        again = pickle.loads(blob)
        assert optuna.load_study(study_name="pickled", storage=again).direction.name == "MAXIMIZE"
    finally:
        del os.environ["PGPASSWORD"]
    os.environ["PGPASSFILE"] = "/nonexistent/.pgpass"
    try:
        with pytest.raises(UserError, match="no password supplied"):
            open_storage(study_url(postgres))
    finally:
        del os.environ["PGPASSFILE"]


@pytest.fixture(scope="module")
def mlflow_on_postgres(postgres, tmp_path_factory):
    """`mlflow server` on loopback whose backend store is the PostgreSQL database ``mlflow`` (password from
    PGPASSWORD): its URL."""
    folder = tmp_path_factory.mktemp("mlflow_pg")
    port = free_port()
    store = f"postgresql+psycopg://{ROLE}@127.0.0.1:{postgres['port']}/mlflow"
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1", "--artifacts-destination",
                             str(folder / "artifacts")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=with_password())
    try:
        wait_for_port(port, timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(proc)
        log.close()


def sweep_config(folder: Path, name: str, storage: str, samples: int) -> Path:
    """The tiny sweep (two searched keys; 1 epoch of the 8-wide tiny TSM, 1 Ray Train worker per trial so that
    two trials share the 2 CPUs), its study in ``storage``."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"image_size": 32, "frames_per_interval": 2}, "model": {"tiny_width": 8},
        "train": {"epochs": 1, "batch_size": 8},
        "search": {"num_samples": samples, "trial_workers": 1, "grace_period": 1, "max_failures": 0,
                   "storage": storage},
        "space": {"model.shift_fraction": {"type": "categorical", "values": [0.0, 0.25]},
                  "train.lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True}}}))
    return path


def talsearch(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    done = subprocess.run([*TALSEARCH, *args], capture_output=True, text=True, timeout=900, env=env, cwd=cwd)
    print(f"talsearch {args[0]}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    for line in done.stderr.splitlines():
        if "[sweep]" in line or "[talsearch]" in line:
            print(line[:200], file=sys.stderr)
    return done


@pytest.fixture(scope="module")
def pg_sweep(tiny_data, postgres, mlflow_on_postgres, tmp_path_factory):
    """A 2-trial sweep whose study is on the PostgreSQL server (password from PGPASSWORD; the URL and config
    without it), logged to the MLflow server on PostgreSQL: (sweep folder, its folder's parent, sweep.json)."""
    folder = tmp_path_factory.mktemp("pg_sweep")
    out = folder / "sweep"
    config = sweep_config(folder, "first", study_url(postgres), 2)
    done = talsearch(["sweep", "--data", str(tiny_data), "--config", str(config), "--out", str(out),
                      "--set", f"tracking.uri={mlflow_on_postgres}", "tracking.experiment=pg"],
                     with_password(), folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, folder, json.loads((out / "sweep.json").read_text())


@pytest.mark.slow
@pytest.mark.ray
def test_sweep_keeps_its_study_on_postgres(pg_sweep, postgres, mlflow_on_postgres):
    from mlflow.tracking import MlflowClient

    out, _, state = pg_sweep
    assert state["study_storage"] == study_url(postgres) and sweep_url(out) == study_url(postgres)
    assert not (out / "optuna.db").exists()
    os.environ["PGPASSWORD"] = PASSWORD
    try:
        study = load_study(state["study_storage"], state["study_name"])
    finally:
        del os.environ["PGPASSWORD"]
    assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)
    assert {t["status"] for t in state["trials"].values()} <= {"FINISHED", "STOPPED_EARLY"}
    assert (out / "plots" / "optuna_history.png").is_file()  # the sweep's plots read the study back
    client = MlflowClient(mlflow_on_postgres)
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["search.storage"] == study_url(postgres)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 2 and all("val_mAP" in c.data.metrics for c in children)
    assert_no_password_in(out)


@pytest.mark.slow
@pytest.mark.ray
def test_resume_reads_the_study_from_sweep_json(pg_sweep, tiny_data, postgres, monkeypatch, capsys):
    """--resume takes the study from sweep.json (the config given again names none) and Tune's pickled
    searcher connects again with PGPASSWORD; without a password it stops at once, naming the URL."""
    out, folder, state = pg_sweep
    config = sweep_config(folder, "again", "", 2)
    args = ["sweep", "--data", str(tiny_data), "--config", str(config), "--out", str(out), "--resume", "--set",
            f"tracking.uri={state['tracking_uri']}", "tracking.experiment=pg"]
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/.pgpass")
    assert main(args) == 2  # before any work: no Ray, no trial
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: search.storage {study_url(postgres)}: ") and "no password supplied" in line
    done = talsearch(args, with_password(), folder)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads((out / "sweep.json").read_text())
    assert resumed["study_storage"] == state["study_storage"] and set(resumed["trials"]) == set(state["trials"])
    assert_no_password_in(out)


@pytest.mark.slow
@pytest.mark.ray
def test_warm_start_from_the_postgres_study_with_the_password_in_the_config(pg_sweep, tiny_data, postgres,
                                                                          mlflow_on_postgres):
    """A second sweep warm-started from the first, its study in the same database; the password is in the
    user's config only (no PGPASSWORD): it opens both studies and lands in no file of the new sweep."""
    old, folder, state = pg_sweep
    out = folder / "warm"
    config = sweep_config(folder, "warm", study_url(postgres, PASSWORD), 1)
    done = talsearch(["sweep", "--data", str(tiny_data), "--config", str(config), "--out", str(out),
                      "--warm-start", str(old), "--set", f"tracking.uri={mlflow_on_postgres}",
                      "tracking.experiment=pg"], without_password(), folder)
    assert done.returncode == 0, done.stderr[-3000:]
    warm = json.loads((out / "sweep.json").read_text())
    assert warm["study_storage"] == study_url(postgres) and warm["study_name"] != state["study_name"]
    assert warm["warm_start"]["added"] == 2
    os.environ["PGPASSWORD"] = PASSWORD
    try:
        study = load_study(warm["study_storage"], warm["study_name"])
    finally:
        del os.environ["PGPASSWORD"]
    assert len(study.trials) == 3  # the 2 warm trials, then its own
    assert_no_password_in(out)
    assert PASSWORD not in done.stderr and quote(PASSWORD, safe="") not in done.stderr
    import psycopg

    with psycopg.connect(host=str(postgres["folder"]), port=postgres["port"], user="postgres",
                         dbname="mlflow") as connection:
        logged = connection.execute("SELECT value FROM params UNION ALL SELECT value FROM tags").fetchall()
    assert logged and not any(PASSWORD in v or quote(PASSWORD, safe="") in v for (v,) in logged if v)


@pytest.mark.slow
@pytest.mark.ray
def test_optuna_dashboard_serves_the_postgres_study(pg_sweep, monkeypatch, capsys):
    out, folder, state = pg_sweep
    port = free_port()
    proc = subprocess.Popen([*TALSEARCH, "ui", "--optuna", str(out), "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True, env=with_password(),
                            cwd=folder)
    try:
        url = proc.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}"
        wait_for_port(port, timeout=120)
        studies = json.load(urllib.request.urlopen(f"{url}/api/studies", timeout=30))["study_summaries"]
        (study,) = [s for s in studies if s["study_name"] == state["study_name"]]
        trials = json.load(urllib.request.urlopen(f"{url}/api/studies/{study['study_id']}?after=0",
                                                  timeout=30))["trials"]
        assert len(trials) == 2
    finally:
        stop_process_group(proc)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/.pgpass")
    assert main(["ui", "--optuna", str(out), "--port", str(free_port())]) == 2
    assert f"search.storage {redact(state['study_storage'])}: " in capsys.readouterr().err
