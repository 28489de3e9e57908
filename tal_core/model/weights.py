"""ImageNet weights of the torchvision backbones, offline-first.

``model.pretrained=imagenet`` loads the file torchvision would download, from ``$TORCH_HOME/hub/checkpoints/``
(``~/.cache/torch`` by default). When it is not there, one download is tried (none with ``TALSEARCH_OFFLINE=1``) (torchvision's own, with its hash
check); where that fails (no network on a cluster node) the error names the exact file to place. A shared
``TORCH_HOME`` pre-seeds a cluster: ``talsearch weights`` lists what each backbone needs and checks the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from tal_core.config import ConfigError

TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v2")


@dataclass(frozen=True)
class WeightsFile:
    backbone: str
    url: str
    path: Path

    @property
    def present(self) -> bool:
        return self.path.is_file()

    def hash_ok(self) -> bool:
        """torchvision's check: the file's SHA-256 starts with the hash part of its name (``name-<hash>.pth``)."""
        expected = self.path.stem.rsplit("-", 1)[-1]
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest().startswith(expected)


def weights_file(backbone: str) -> WeightsFile:
    import torchvision

    url = torchvision.models.get_model_weights(backbone).DEFAULT.url
    return WeightsFile(backbone, url, Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1])


def imagenet_state_dict(backbone: str) -> dict:
    """The ImageNet state dict of ``backbone`` (weights_only), from the local cache or one download attempt."""
    needed = weights_file(backbone)
    if not needed.present:
        try:
            if os.environ.get("TALSEARCH_OFFLINE", "0") not in ("", "0"):
                raise ConnectionError("TALSEARCH_OFFLINE is set")
            with _socket_timeout(20.0):
                torch.hub.load_state_dict_from_url(needed.url, progress=False, check_hash=True)
        except Exception as error:  # no network, proxy, refused: the user places the file
            reason = (str(error).splitlines() or [type(error).__name__])[0][:160]
            raise ConfigError(f"model.pretrained=imagenet: {backbone} weights are not cached and could not be "
                              f"downloaded ({reason}); place {needed.path.name} (from {needed.url}) at "
                              f"{needed.path} (TORCH_HOME={Path(torch.hub.get_dir()).parent})") from None
    try:
        return torch.load(needed.path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(f"model.pretrained=imagenet: {needed.path} is not a readable state dict "
                          f"({(str(error).splitlines() or [type(error).__name__])[0][:160]})") from None


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def weights_report() -> list[dict]:
    """Per torchvision backbone: the file it needs, where, whether it is there and passes the hash check."""
    rows = []
    for backbone in TORCHVISION_BACKBONES:
        needed = weights_file(backbone)
        rows.append({"backbone": backbone, "file": needed.path.name, "path": str(needed.path), "url": needed.url,
                     "present": needed.present, "hash_ok": needed.hash_ok() if needed.present else None})
    return rows
