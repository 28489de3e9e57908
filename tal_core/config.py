"""Typed, immutable run configuration.

Defaults live here as pydantic fields and are documented key by key in
``configs/base.yaml`` (a test keeps the two equal). Configs are frozen values:
``with_overrides`` returns a new one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import UserError
from .io import write_text_atomic


class ConfigError(UserError, ValueError):
    """A config file, key or value is wrong; the message names it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DataConfig(_Section):
    view: str = "front"
    interval_seconds: float = Field(1.0, gt=0)
    frames_per_interval: int = Field(4, ge=1, le=64)
    image_size: int = Field(64, ge=8, le=1024)
    min_action_overlap: float = Field(0.5, gt=0, le=1)
    decode_fps: float = Field(8.0, gt=0, le=120)
    on_bad_video: Literal["error", "skip"] = "error"
    decode_timeout_s: float = Field(120.0, ge=0)
    num_workers: int = Field(0, ge=0, le=64)


class ModelConfig(_Section):
    backbone: Literal["tiny", "resnet18", "resnet34", "resnet50", "mobilenet_v2"] = "tiny"
    pretrained: str = "none"
    shift_fraction: float = Field(0.125, ge=0, le=0.5)
    shift_place: Literal["blockres", "block"] = "blockres"
    dropout: float = Field(0.2, ge=0, lt=1)
    tiny_width: int = Field(32, ge=4, le=512)
    output: Literal["interval", "frame"] = "interval"


class LossConfig(_Section):
    action_weight: float = Field(1.0, ge=0)
    scene_weight: float = Field(0.5, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    background_weight: float = Field(1.0, gt=0)
    frame_weight: float = Field(1.0, ge=0)


class TrainConfig(_Section):
    epochs: int = Field(12, ge=1, le=10_000)
    batch_size: int = Field(8, ge=1, le=4096)
    lr: float = Field(3e-3, gt=0, le=10)
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    threads: int = Field(0, ge=0, le=256)


class EvalConfig(_Section):
    tiou_thresholds: tuple[float, ...] = (0.5, 0.75, 0.95)
    decode: Literal["merge", "multithreshold"] = "multithreshold"
    thresholds: tuple[float, ...] = (0.2, 0.35, 0.5, 0.65, 0.8)
    nms_tiou: float = Field(0.45, gt=0, le=1)
    max_segments_per_video: int = Field(200, ge=1)
    scene_prior: bool = False
    smooth: Literal["median", "mean"] = "median"
    smooth_seconds: float = Field(0.0, ge=0)
    boundary_contrast: bool = True
    frame_phases: int = Field(1, ge=1, le=16)

    @field_validator("tiou_thresholds", "thresholds")
    @classmethod
    def _in_unit_interval(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not values:
            raise ValueError("must not be empty")
        bad = [v for v in values if not 0 < v <= 1]
        if bad:
            raise ValueError(f"values must lie in (0, 1], got {bad}")
        return tuple(float(v) for v in values)


class SearchConfig(_Section):
    num_samples: int = Field(6, ge=1)
    trial_workers: int = Field(2, ge=1, le=1024)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    max_concurrent: int = Field(0, ge=0)
    metric: str = "val_mAP"
    asha: bool = True
    grace_period: int = Field(2, ge=1)
    reduction_factor: int = Field(2, ge=2)
    max_failures: int = Field(1, ge=0)
    seed: int = 0
    sampler: Literal["tpe", "grid"] = "tpe"
    poll_interval_s: float = Field(0.5, gt=0, le=60)


class TrackingConfig(_Section):
    uri: str = ""
    experiment: str = "tal-search"


class Config(_Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    search: SearchConfig = SearchConfig()
    tracking: TrackingConfig = TrackingConfig()

    def with_overrides(self, flat: Mapping[str, Any]) -> Config:
        return from_dict(merge_nested(self.model_dump(), unflatten(flat)))

    def flat(self) -> dict[str, Any]:
        return flatten(self.model_dump())


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}."""
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        parts = dotted.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{dotted}': '{part}' is a value, not a section")
        node[parts[-1]] = value
    return nested


def merge_nested(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_nested(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'")
        else:
            lines.append(f"config key '{key}': {item['msg']} (got {item.get('input')!r})")
    return f"invalid config{source}:\n  " + "\n  ".join(lines)


def from_dict(nested: Mapping[str, Any], source: str = "") -> Config:
    try:
        return Config.model_validate(nested)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
    return loaded


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """['a.b=1', 'c=[1, 2]'] -> {'a.b': 1, 'c': [1, 2]}; values parse as YAML."""
    flat: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{pair}' must look like key=value")
        try:
            flat[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override '{pair}': value is not valid YAML") from None
    return flat


def load_config(path: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] = ()) -> Config:
    """Defaults <- YAML file (sections other than the config's are ignored) <- overrides."""
    nested: dict[str, Any] = {}
    source = ""
    if path is not None:
        nested = {k: v for k, v in read_yaml(path).items() if k not in EXTRA_YAML_SECTIONS}
        source = f" in {path}"
    flat = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    nested = merge_nested(nested, unflatten(flat))
    return from_dict(nested, source)


# Top-level YAML sections that are not run config (sweep files carry a search space).
EXTRA_YAML_SECTIONS = frozenset({"space"})


def save_config(config: Config, path: str | Path) -> None:
    write_text_atomic(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
