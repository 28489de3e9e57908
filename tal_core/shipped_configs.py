"""The configs that ship with tal-search (``configs/*.yaml``), found the same way from a checkout and from an
installed wheel: the wheel holds ``configs/`` as the data package ``talsearch_configs`` (pyproject.toml maps
the package onto the top-level folder, which stays YAML only)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tal_core.config import ConfigError

PACKAGE = "talsearch_configs"


def shipped_config_dirs() -> list[Path]:
    """Where the shipped configs are, first match first: ``configs/`` of the checkout these packages run from
    (whatever the working directory), then the ``talsearch_configs`` package of an installed wheel."""
    checkout = Path(__file__).resolve().parents[1]
    dirs = [checkout / "configs"] if (checkout / "pyproject.toml").is_file() else []
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations is not None:
        dirs += [Path(location) for location in spec.submodule_search_locations]
    return dirs


def shipped_config(name: str) -> Path:
    """A shipped config by file name (``demo.yaml``, ``sweep_demo.yaml``, ``precise.yaml`` ...)."""
    dirs = shipped_config_dirs()
    for folder in dirs:
        if (folder / name).is_file():
            return folder / name
    where = ", ".join(str(folder) for folder in dirs) or f"no checkout and no installed {PACKAGE}"
    raise ConfigError(f"no config {name!r} ships with tal-search (looked in: {where})")
