"""Backbone weights from local checkpoint files, in the layouts the field publishes them.

- ``torchvision``: plain ResNet / MobileNetV2 names (``layer1.0.conv1.weight``, ``bn1.*``, ``fc.*``); our own
  run checkpoints (``backbone.*`` beside our heads) read the same way.
- ``tsm`` (the TSM repository's): ``{"state_dict": ...}``, ``module.base_model.*``, the blockres shift wrapping
  ``layerN.i.conv1`` as ``...conv1.net.weight``, classifier ``module.new_fc.*``.
- ``mmaction2``: ``{"state_dict": ...}``, ``backbone.*`` with ConvModule names (``conv1.conv`` / ``conv1.bn``,
  ``layerN.i.conv1.conv.net.weight``, ``downsample.conv`` / ``downsample.bn``), head ``cls_head.fc_cls.*``.

Names are mapped to torchvision's, then matched against the backbone; heads are reported as unexpected and
never loaded. ResNets map by name; MobileNetV2 (whose published layouts name their layers differently) maps
by position, tensor for tensor, with every shape checked. Files load with ``weights_only=True``; objects of
unknown classes in a checkpoint's metadata (mmengine's message hub, numpy scalars ...) are read as inert
placeholders, never constructed.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tal_core.config import ConfigError

HEAD_PREFIXES = ("new_fc.", "cls_head.", "fc.", "classifier.", "action_head.", "scene_head.", "frame_head.")
MMACTION_RENAMES = (  # ConvModule names -> torchvision names, applied in order
    (re.compile(r"^conv1\.conv\."), "conv1."),
    (re.compile(r"^conv1\.bn\."), "bn1."),
    (re.compile(r"(layer\d+\.\d+)\.conv(\d)\.conv\."), r"\1.conv\2."),
    (re.compile(r"(layer\d+\.\d+)\.conv(\d)\.bn\."), r"\1.bn\2."),
    (re.compile(r"\.downsample\.conv\."), ".downsample.0."),
    (re.compile(r"\.downsample\.bn\."), ".downsample.1."),
)


class _Inert:
    """Stands in for any class a checkpoint's metadata names: accepts whatever it is given, runs nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat name -> tensor mapping of a checkpoint (``state_dict`` / ``model`` wrappers unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        loaded = _load_with_placeholders(path)
    except Exception as error:
        raise ConfigError(f"{path}: not a readable checkpoint ({_first_line(error)})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if not isinstance(loaded, dict) or not any(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ConfigError(f"{path}: holds no state dict of tensors")
    return {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}


def _load_with_placeholders(path: Path):
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        with torch.serialization.safe_globals([(_Inert, name) for name in names]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(f"{path}: not a readable checkpoint ({_first_line(error)})") from None


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def detect_layout(names) -> str:
    names = list(names)
    if any(n.startswith(("module.base_model.", "base_model.")) for n in names):
        return "tsm"
    if any(n.startswith("cls_head.") for n in names) or any(re.search(r"(^|\.)conv1\.conv\.", n) for n in names):
        return "mmaction2"
    return "torchvision"


def canonical_name(name: str) -> str:
    """A checkpoint's tensor name in torchvision's terms (prefixes, shift wrappers and ConvModules undone)."""
    for prefix in ("module.", "base_model.", "backbone."):
        name = name.removeprefix(prefix)
    name = name.replace(".net.", ".")
    for pattern, replacement in MMACTION_RENAMES:
        name = pattern.sub(replacement, name)
    return name


def _is_head(name: str) -> bool:
    return name.startswith(HEAD_PREFIXES)


def _counted(name: str) -> bool:
    return not name.endswith("num_batches_tracked")


@dataclass
class Matching:
    """How a checkpoint lines up with a backbone: what loads, what is missing, what is left over."""

    layout: str
    loaded: dict[str, torch.Tensor] = field(default_factory=dict)  # backbone name -> tensor
    missing: list[str] = field(default_factory=list)
    wrong_shape: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (name, wanted, found)
    unexpected: list[str] = field(default_factory=list)

    def report(self) -> dict:
        return {"layout": self.layout, "matched": len(self.loaded), "missing": self.missing,
                "unexpected": self.unexpected}

    def first_problem(self) -> str | None:
        if self.wrong_shape:
            name, wanted, found = self.wrong_shape[0]
            return f"backbone tensor '{name}' has shape {list(found)} in the file, the backbone needs {list(wanted)}"
        if self.missing:
            return f"backbone tensor '{self.missing[0]}' is missing ({len(self.missing)} missing in all)"
        return None


def match(tensors: dict[str, torch.Tensor], backbone_state: dict[str, torch.Tensor], by_position: bool) -> Matching:
    result = Matching(detect_layout(tensors))
    wanted = {k: v for k, v in backbone_state.items() if _counted(k)}
    body = [(name, canonical_name(name)) for name in tensors if not _is_head(canonical_name(name))]
    result.unexpected = [name for name in tensors if _is_head(canonical_name(name))]
    if by_position:
        pairs = list(zip(wanted, [n for n, c in body if _counted(c)], strict=False))
        result.unexpected += [n for n, c in body if _counted(c)][len(pairs):]
    else:
        by_canonical = {c: n for n, c in body}
        pairs = [(k, by_canonical[k]) for k in wanted if k in by_canonical]
        result.unexpected += [n for n, c in body if c not in wanted and _counted(c)]
    for target, source in pairs:
        if tuple(tensors[source].shape) != tuple(wanted[target].shape):
            result.wrong_shape.append((target, tuple(wanted[target].shape), tuple(tensors[source].shape)))
        else:
            result.loaded[target] = tensors[source]
    paired = {target for target, _ in pairs}
    result.missing = [k for k in wanted if k not in paired]
    return result


def match_backbone(path: str | Path, net: nn.Module, backbone: str) -> Matching:
    return match(load_tensors(path), net.state_dict(), by_position=backbone == "mobilenet_v2")


def load_backbone_weights(net: nn.Module, path: str | Path, backbone: str) -> Matching:
    """Load a checkpoint's backbone tensors into ``net`` (before the shift is inserted); every backbone tensor
    must be there with its shape (``ConfigError`` naming the first one that is not)."""
    matching = match_backbone(path, net, backbone)
    problem = matching.first_problem()
    if problem:
        raise ConfigError(f"model.pretrained: {path} ({matching.layout} layout): {problem}")
    net.load_state_dict(matching.loaded, strict=False)
    return matching
