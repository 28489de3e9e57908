"""Backbones with the temporal shift inserted: torchvision ResNet-18/34/50,
MobileNetV2, and a ``tiny`` residual net that trains in seconds on a CPU.

``blockres`` wraps the first conv of each residual branch (the shortcut sees the
unshifted input); ``block`` shifts the input of the whole block.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tal_core.config import ConfigError
from tal_core.model.temporal_shift import TemporalShift

BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50", "mobilenet_v2")


class TinyBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(branch + self.shortcut(x))


def tiny_net(width: int) -> tuple[nn.Module, int]:
    stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
    blocks = [TinyBlock(width, width, 1), TinyBlock(width, 2 * width, 2), TinyBlock(2 * width, 4 * width, 2)]
    return nn.Sequential(stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 4 * width


RESIDUAL_BLOCKS = ("BasicBlock", "Bottleneck", "TinyBlock")  # torchvision's ResNet blocks and ours


def _torchvision_net(name: str, pretrained: str) -> nn.Module:
    import torchvision  # imported only when asked: it costs seconds at every worker start

    net = getattr(torchvision.models, name)(weights=None)
    if pretrained == "imagenet":
        from tal_core.model.weights import imagenet_state_dict

        net.load_state_dict(imagenet_state_dict(name))
    return net


def insert_shift(net: nn.Module, n_segment: int, fraction: float, place: str) -> int:
    """Wrap every residual block of ``net`` in place; returns how many were wrapped."""
    wrapped = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            kind = type(child).__name__
            if kind in RESIDUAL_BLOCKS:
                if place == "blockres":
                    child.conv1 = TemporalShift(child.conv1, n_segment, fraction)
                else:
                    setattr(parent, name, TemporalShift(child, n_segment, fraction))
                wrapped += 1
            elif kind == "InvertedResidual" and child.use_res_connect:
                if place == "blockres":
                    child.conv[0] = TemporalShift(child.conv[0], n_segment, fraction)
                else:
                    setattr(parent, name, TemporalShift(child, n_segment, fraction))
                wrapped += 1
    return wrapped


def _features(net: nn.Module, name: str) -> tuple[nn.Module, int]:
    """Strip the classifier: the network then maps images to a feature vector."""
    if name.startswith("resnet"):
        dim = net.fc.in_features
        net.fc = nn.Identity()
    else:
        dim = net.classifier[-1].in_features
        net.classifier = nn.Identity()
    return net, dim


def load_local_weights(net: nn.Module, path: str, backbone: str) -> None:
    """Load a local checkpoint in torchvision's, the TSM repository's or mmaction2's layout (see
    ``checkpoints``); every backbone tensor must be there, heads are ignored."""
    from tal_core.model.checkpoints import load_backbone_weights

    if not Path(path).is_file():
        raise ConfigError(f"model.pretrained: weights file not found: {path}")
    load_backbone_weights(net, path, backbone)


def plain_backbone(name: str, tiny_width: int = 32) -> nn.Module:
    """The backbone without shift or weights: the names and shapes a checkpoint must supply."""
    return tiny_net(tiny_width)[0] if name == "tiny" else _features(_torchvision_net(name, "none"), name)[0]


def build_backbone(name: str, n_segment: int, fraction: float, place: str,
                   pretrained: str = "none", tiny_width: int = 32) -> tuple[nn.Module, int]:
    """(feature network with temporal shift, feature dimension)."""
    if name not in BACKBONES:
        raise ValueError(f"model.backbone: unknown backbone {name!r} (choose from {BACKBONES})")
    if name == "tiny":
        net, dim = tiny_net(tiny_width)
    else:
        net, dim = _features(_torchvision_net(name, pretrained), name)
    if pretrained not in ("none", "imagenet"):
        load_local_weights(net, pretrained, name)
    if fraction > 0:
        insert_shift(net, n_segment, fraction, place)
    return net, dim
