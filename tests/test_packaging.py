"""The wheel: every package of the tree, the configs (configs/ ships as ``talsearch_configs``), the licence, and
a config lookup that works from an installed copy run from another folder. Built offline (no index, no build
isolation: setuptools and wheel come from the environment)."""

import email
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tal_core", "search", "ensemble", "talsearch")
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_list_holds_every_package_of_the_tree():
    """pyproject lists its packages (a find cannot map configs/ onto ``talsearch_configs``): a new sub-package
    must be added there, or the wheel would silently lack it."""
    setuptools = pyproject()["tool"]["setuptools"]
    in_tree = find_packages(str(ROOT), include=[f"{name}*" for name in PACKAGES])
    assert sorted(setuptools["packages"]) == sorted([*in_tree, "talsearch_configs"])
    assert setuptools["package-dir"] == {"talsearch_configs": "configs"}
    assert setuptools["package-data"]["talsearch_configs"] == ["*.yaml"]


def test_the_metadata_is_honest_about_licence_and_python():
    project = pyproject()["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert project["requires-python"] == ">=3.11"
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("Copyright 2026 The tal-search authors\n")
    assert "Apache License\n                           Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence


def test_the_lookup_finds_the_checkout_configs_from_any_folder(tmp_path, monkeypatch):
    from tal_core.config import ConfigError
    from tal_core.shipped_configs import shipped_config

    monkeypatch.chdir(tmp_path)
    assert shipped_config("sweep_demo.yaml") == ROOT / "configs" / "sweep_demo.yaml"
    with pytest.raises(ConfigError, match="no config 'nope.yaml' ships with tal-search"):
        shipped_config("nope.yaml")


def pip(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "--quiet"], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the working tree (the build leaves build/ and egg-info in its source)."""
    source, dist = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for folder in (*PACKAGES, "configs"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip("wheel", "--no-build-isolation", "-w", str(dist), ".", cwd=source)
    (built,) = dist.glob("tal_search-*.whl")
    return built


def test_the_wheel_holds_the_packages_configs_and_licence(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"talsearch_configs/{name}" for name in CONFIGS} <= names
    assert {"base.yaml", "demo.yaml", "sweep_demo.yaml", "precise.yaml"} <= set(CONFIGS)
    modules = {str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    assert modules - names == set()
    assert not any(name.startswith(("tests/", "benchmarks/", "docs/", "configs/")) for name in names)
    info = next(name for name in names if name.endswith(".dist-info/METADATA"))
    metadata = email.message_from_bytes(zipfile.ZipFile(wheel).read(info))
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Requires-Python"] == ">=3.11"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_an_installed_wheel_resolves_its_configs_from_another_folder(wheel, tmp_path):
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip("install", "--target", str(site), str(wheel), cwd=tmp_path)
    probe = ("import tal_core, tal_core.shipped_configs as s, tal_core.config as c; "
             "p = s.shipped_config('demo.yaml'); c.load_config(p); "
             "print(tal_core.__file__); print(p); print(s.shipped_config('sweep_demo.yaml'))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    package_file, demo, sweep_demo = map(Path, done.stdout.split())
    assert package_file.is_relative_to(site)  # the installed copy, not the checkout
    assert demo == site / "talsearch_configs" / "demo.yaml"
    assert sweep_demo.read_text() == (ROOT / "configs" / "sweep_demo.yaml").read_text()
