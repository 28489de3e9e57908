"""The MLflow UI names we rely on (tal_core.reporting.mlflow_compat) are still read by the installed MLflow's UI."""

from pathlib import Path

import mlflow
import pytest

from tal_core.reporting.mlflow_compat import UI_NAMES


def ui_bundle() -> str:
    build = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    files = sorted(build.glob("*.js"))
    if not files:
        pytest.skip(f"this MLflow install carries no UI bundle under {build}")
    return "\n".join(path.read_text(errors="ignore") for path in files)


def test_the_ui_reads_every_name_we_set():
    bundle = ui_bundle()
    missing = [name for name in UI_NAMES if name not in bundle]
    assert not missing, f"MLflow {mlflow.__version__}'s UI no longer reads {missing}: update tal_core.reporting.mlflow_compat"
