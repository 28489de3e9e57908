"""Search spaces in YAML, validated before Ray starts.

A sweep file is a run config (fixed keys, as in configs/base.yaml) plus a
``space`` section mapping dotted config keys to distributions::

    space:
      data.interval_seconds: {type: categorical, values: [0.5, 1.0]}
      model.shift_fraction:  {type: float, low: 0.0, high: 0.25}
      train.lr:              {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      train.epochs:          {type: int, low: 2, high: 6}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna.distributions as od

from tal_core.config import Config, ConfigError, load_config, read_yaml

from .reported import SEARCHABLE_METRICS, mlflow_name

TYPES = ("categorical", "float", "int")


@dataclass(frozen=True)
class Param:
    key: str
    kind: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    def distribution(self) -> od.BaseDistribution:
        if self.kind == "categorical":
            return od.CategoricalDistribution(list(self.values))
        if self.kind == "int":
            return od.IntDistribution(int(self.low), int(self.high), log=self.log)
        return od.FloatDistribution(float(self.low), float(self.high), log=self.log)

    def corner_values(self) -> list[Any]:
        return list(self.values) if self.kind == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class SweepSpec:
    base: Config
    params: tuple[Param, ...]

    def optuna_space(self) -> dict[str, od.BaseDistribution]:
        return {p.key: p.distribution() for p in self.params}

    def config_for(self, sampled: dict[str, Any]) -> Config:
        return self.base.with_overrides(sampled)


def space_entry(param: Param) -> dict:
    """``param`` as a sweep file's ``space`` entry (what ``_parse_param`` reads back)."""
    if param.kind == "categorical":
        return {"type": "categorical", "values": list(param.values)}
    return {"type": param.kind, "low": param.low, "high": param.high, "log": param.log}


def parse_space(space_raw: dict, known: set[str]) -> tuple[Param, ...]:
    return tuple(_parse_param(key, raw, known) for key, raw in space_raw.items())


def _parse_param(key: str, raw: Any, known: set[str]) -> Param:
    where = f"space.{key}"
    if key not in known:
        raise ConfigError(f"{where}: unknown config key '{key}'")
    if not isinstance(raw, dict) or raw.get("type") not in TYPES:
        raise ConfigError(f"{where}: needs 'type' one of {TYPES}")
    kind = raw["type"]
    extra = set(raw) - {"type", "values", "low", "high", "log"}
    if extra:
        raise ConfigError(f"{where}: unknown fields {sorted(extra)}")
    if kind == "categorical":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: categorical needs a non-empty 'values' list")
        return Param(key, kind, values=tuple(values))
    low, high = raw.get("low"), raw.get("high")
    if not all(isinstance(v, int | float) for v in (low, high)) or low > high:
        raise ConfigError(f"{where}: needs numbers low <= high, got low={low!r} high={high!r}")
    if raw.get("log") and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0, got {low}")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: int range needs integer bounds")
    return Param(key, kind, low=low, high=high, log=bool(raw.get("log", False)))


def load_sweep(path: str | Path | None, overrides=()) -> SweepSpec:
    """Parse and validate a sweep file: every key known, every corner of every range a valid config."""
    space_raw = (read_yaml(path).get("space") if path else None) or {}
    if not isinstance(space_raw, dict):
        raise ConfigError(f"{path}: 'space' must map config keys to distributions")
    base = load_config(path, overrides)
    known = set(base.flat())
    params = parse_space(space_raw, known)
    for param in params:
        for value in param.corner_values():
            try:
                base.with_overrides({param.key: value})
            except ConfigError as error:
                raise ConfigError(f"space.{param.key}: value {value!r} is not allowed:\n{error}") from None
    check_metric(base)
    if base.search.sampler == "grid":
        check_grid(params, base.search.num_samples)
    return SweepSpec(base, params)


def require_space(spec: SweepSpec, path: str | Path | None) -> None:
    """A sweep searches at least one key (a config file without ``space`` trains one run: ``talsearch train``)."""
    if not spec.params:
        raise ConfigError(f"{path or 'the default config'}: no 'space' to search; a sweep file names at least one "
                          "key under space (one configuration: a key with one value, e.g. space: data.modalities: "
                          "{type: categorical, values: [audio]})")


def grid_size(params: tuple[Param, ...]) -> int:
    size = 1
    for param in params:
        size *= len(param.values)
    return size


def check_grid(params: tuple[Param, ...], num_samples: int) -> None:
    """search.sampler=grid: every searched key categorical, and no more trials than combinations."""
    ranged = [p.key for p in params if p.kind != "categorical"]
    if ranged:
        raise ConfigError(f"search.sampler=grid needs categorical values for every searched key; "
                          f"space.{ranged[0]} is a {next(p.kind for p in params if p.key == ranged[0])} range")
    if num_samples > grid_size(params):
        raise ConfigError(f"search.num_samples: {num_samples} trials but the grid holds {grid_size(params)} "
                          "combinations (search.sampler=grid)")


def searchable_metrics(cfg: Config) -> list[str]:
    """The metrics ``search.metric`` may name, spelled as trials report them."""
    return [*SEARCHABLE_METRICS, *(mlflow_name(f"val_mAP@{t:g}") for t in cfg.eval.tiou_thresholds)]


def check_metric(cfg: Config) -> None:
    allowed = searchable_metrics(cfg)
    if cfg.search.metric not in allowed:
        raise ConfigError(f"search.metric: '{cfg.search.metric}' is not a metric trials report; one of {allowed}")
