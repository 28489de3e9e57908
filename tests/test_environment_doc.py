"""docs/configuration.md lists every environment variable the code reads or sets."""

import re

from helpers import ROOT

PREFIXES = ("TALSEARCH_", "RAY_", "TUNE_", "MLFLOW_", "OMP_", "CUDA_", "PG", "AWS_")


def test_every_environment_variable_is_in_the_table():
    found = set()
    for top in ("tal_core", "search", "ensemble", "talsearch", "benchmarks"):
        for path in (ROOT / top).rglob("*.py"):
            text = path.read_text()
            if "environ" in text or "getenv" in text:
                found |= {name for name in re.findall(r"\"([A-Z][A-Z0-9]*_[A-Z0-9_]+)\"", text)
                          if name.startswith(PREFIXES)}
    doc = (ROOT / "docs" / "configuration.md").read_text()
    table = doc[doc.index("## Environment variables"):]
    assert "TALSEARCH_ENSEMBLE_WORKERS" in found and "TALSEARCH_CACHE" in found
    assert sorted(name for name in found if f"`{name}`" not in table) == []
