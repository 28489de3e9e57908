"""``talsearch ui``: the MLflow UI over the project's tracking store, or (``--optuna SWEEP``) optuna-dashboard
over a sweep's Optuna study; on 127.0.0.1 by default."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tal_core.errors import UserError
from tal_core.reporting.tracking import artifact_location, redact_uri, resolve_uri

_OPTUNA_DASHBOARD = ("import sys, optuna_dashboard; from search.study_storage import open_storage; "
                     "optuna_dashboard.run_server(open_storage(sys.argv[1]), host=sys.argv[2], port=int(sys.argv[3]))")


def ui_command(uri: str, host: str, port: int) -> list[str]:
    store = resolve_uri(uri)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", host,
               "--port", str(port), "--workers", "1"]
    artifacts = artifact_location(store)
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    return command


def optuna_command(sweep: str | Path, host: str, port: int) -> list[str]:
    """optuna-dashboard over the sweep's Optuna study (the one its sweep.json names: SWEEP/optuna.db by default,
    or search.storage's database, reached here first; the URL carries no password: libpq's PGPASSWORD or
    ~/.pgpass supply it)."""
    from .study_storage import open_storage, study_file_missing, sweep_url

    url = sweep_url(sweep)
    missing = study_file_missing(url)
    if missing is not None:
        raise UserError(f"{missing}: no Optuna study here (is {sweep} a sweep folder?)")
    open_storage(url).engine.dispose()
    return [sys.executable, "-c", _OPTUNA_DASHBOARD, url, host, str(port)]


def run_ui(uri: str, host: str = "127.0.0.1", port: int = 5000, optuna_sweep: str | Path | None = None,
           announce=None) -> None:
    """Serve until Ctrl-C or SIGTERM; either stops the server's whole process group (its workers included),
    so nothing keeps the port. ``announce(what, url)`` is told what is served where before it starts."""
    if optuna_sweep is not None:
        command, what = optuna_command(optuna_sweep, host, port), f"optuna-dashboard (study {optuna_sweep})"
    else:
        command, what = ui_command(uri, host, port), f"MLflow UI (store {redact_uri(resolve_uri(uri))})"
    if announce is not None:
        announce(what, f"http://{host}:{port}")
    server = subprocess.Popen(command, cwd=Path.cwd(), start_new_session=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_group(server)


def stop_group(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
            return
