"""``talsearch ui``: the MLflow UI over the project's tracking store, on 127.0.0.1 by default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tal_core.tracking import artifact_location, resolve_uri


def ui_command(uri: str, host: str, port: int) -> list[str]:
    store = resolve_uri(uri)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", host,
               "--port", str(port), "--workers", "1"]
    artifacts = artifact_location(store)
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    return command


def run_ui(uri: str, host: str = "127.0.0.1", port: int = 5000) -> None:
    command = ui_command(uri, host, port)
    print(f"MLflow UI: http://{host}:{port}  (store {resolve_uri(uri)}; Ctrl-C stops it)", file=sys.stderr)
    print(f"http://{host}:{port}")
    sys.stdout.flush()
    try:
        subprocess.run(command, check=False, cwd=Path.cwd())
    except KeyboardInterrupt:
        pass
