"""The layers of docs/design.md, read from the import graph (function-level imports included):
tal_core <- ensemble <- talsearch (the CLI) and tal_core <- search <- talsearch; nothing imports the CLI."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tal_core", "search", "ensemble", "talsearch")
ALLOWED = {  # package -> the top-level packages of ours it may import
    "tal_core": {"tal_core"},
    "search": {"tal_core", "search"},
    "ensemble": {"tal_core", "ensemble"},
    "talsearch": {"tal_core", "search", "ensemble", "talsearch"},
}


def imported_packages(path: Path, package: str) -> set[str]:
    """Top-level packages of ours that a module imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(package if node.level else (node.module or "").split(".")[0])
    return found & set(PACKAGES)


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            graph[str(path.relative_to(ROOT))] = imported_packages(path, package)
    return graph


def test_every_module_imports_only_its_own_layer_and_below():
    graph = import_graph()
    assert len(graph) > 30
    wrong = {module: sorted(uses - ALLOWED[module.split("/")[0]]) for module, uses in graph.items()
             if uses - ALLOWED[module.split("/")[0]]}
    assert wrong == {}


def test_nothing_outside_the_cli_imports_it():
    outside = [p for p in (ROOT / "benchmarks").glob("*.py") if "talsearch" in imported_packages(p, "benchmarks")]
    assert outside == []


def test_the_graph_reader_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from search.sweep import run_sweep\n    import ensemble.run\n")
    assert imported_packages(module, "tal_core") == {"search", "ensemble"}


SCORING_NEVER = ("torch", "decord", "ray", "pandas", "mlflow", "optuna", "matplotlib")
LEADERBOARD_NEVER = ("torch", "decord", "ray", "mlflow", "optuna")  # pandas renders its table


@pytest.mark.parametrize("command", ["evaluate", "submit", "leaderboard"])
def test_light_commands_import_no_heavy_library(command, tmp_path):
    from tal_core.scoring.formats import write_detections

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "annotations.json").write_text(json.dumps({
        "taxonomy": {"actions": ["a"], "scenes": [], "views": ["front"]},
        "database": {"v": {"subset": "val", "duration": 10.0, "scene": None, "views": {"front": "v.mp4"},
                           "annotations": [{"segment": [1.0, 2.0], "label": "a"}]}}}))
    (tmp_path / "data" / "v.mp4").write_bytes(b"")
    write_detections({"v": [{"label": "a", "score": 0.9, "segment": [1.0, 2.0]}]}, tmp_path / "det.json")
    (tmp_path / "sweep" / "trials").mkdir(parents=True)
    argv = {"evaluate": ["evaluate", "--gt", str(tmp_path / "data" / "annotations.json"), "--pred",
                         str(tmp_path / "det.json")],
            "submit": ["submit", "--gt", str(tmp_path / "data" / "annotations.json"), "--pred",
                       str(tmp_path / "det.json"), "--out", str(tmp_path / "sub.csv"), "--subset", "val"],
            "leaderboard": ["leaderboard", str(tmp_path / "sweep"), "--format", "json"]}[command]
    never = LEADERBOARD_NEVER if command == "leaderboard" else SCORING_NEVER
    probe = ("import sys, runpy\nsys.argv = ['talsearch'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('talsearch.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             f"print(sorted(m for m in {never!r} if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    loaded = done.stderr.strip().splitlines()[-1]
    assert loaded == "[]", done.stderr


TORCH_FREE_LAYERS = ("scoring", "decoding")  # numpy only: the ensemble and evaluate run without torch


@pytest.mark.parametrize("layer", TORCH_FREE_LAYERS)
def test_scoring_and_decoding_import_no_torch(layer):
    heavy = {"torch", "torchvision", "decord", "ray", "mlflow"}
    wrong = {}
    for path in sorted((ROOT / "tal_core" / layer).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        guarded = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in guarded or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad = [n for n in names if n.split(".")[0] in heavy or n in ("tal_core.data.dataset", "tal_core.training")
                   or n.startswith(("tal_core.training.", "tal_core.model", "tal_core.reporting"))]
            if bad:
                wrong.setdefault(path.name, []).extend(bad)
    assert wrong == {}


def test_scoring_and_decoding_load_without_torch():
    probe = ("import sys\nimport tal_core.scoring.metrics, tal_core.scoring.formats, tal_core.scoring.binning\n"
             "import tal_core.scoring.predictions, tal_core.decoding.decode, tal_core.decoding.evaluation\n"
             "import tal_core.decoding.decoding_choice\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_tal_core_top_level_holds_at_most_twelve_modules():
    modules = sorted(p.name for p in (ROOT / "tal_core").glob("*.py"))
    assert len(modules) <= 12, modules
    assert {"scoring", "decoding", "training", "reporting", "data", "model"} <= {
        p.name for p in (ROOT / "tal_core").iterdir() if (p / "__init__.py").exists()}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolved_imports(path: Path) -> set[str]:
    """Our own modules a module imports, relative imports resolved, ``from pkg import mod`` counted as ``pkg.mod``."""
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def test_no_import_cycle_between_modules():
    paths = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    modules = {_module_name(p): p for p in paths}
    graph = {name: {m for m in _resolved_imports(p) if m in modules and m != name} for name, p in modules.items()}
    # a package's __init__ being imported on the way to a sub-module is not an edge of ours
    graph = {name: {m for m in uses if not modules[m].name == "__init__.py"} for name, uses in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
