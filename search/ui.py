"""``talsearch ui``: the MLflow UI over the project's tracking store, on 127.0.0.1 by default."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tal_core.tracking import artifact_location, redact_uri, resolve_uri


def ui_command(uri: str, host: str, port: int) -> list[str]:
    store = resolve_uri(uri)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", host,
               "--port", str(port), "--workers", "1"]
    artifacts = artifact_location(store)
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    return command


def run_ui(uri: str, host: str = "127.0.0.1", port: int = 5000) -> None:
    """Serve until Ctrl-C or SIGTERM; either stops the server's whole process group (its workers included),
    so nothing keeps the port."""
    command = ui_command(uri, host, port)
    print(f"MLflow UI: http://{host}:{port}  (store {redact_uri(resolve_uri(uri))}; Ctrl-C stops it)", file=sys.stderr)
    print(f"http://{host}:{port}")
    sys.stdout.flush()
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
