"""A local sweep's Ray cluster in a private network namespace: Ray's gcs_server, raylet and workers listen on
all interfaces on Ray 2.60 whatever address it is given, so the command that starts a local cluster re-runs
itself under ``unshare --net`` where the only interface is loopback. Nothing outside the machine, and no
other network namespace on it, can reach the cluster; files, GPUs and the tracking store on disk are shared as
before. Linux only; where network namespaces are unavailable the command runs as before, with a warning.

The namespace has no route out, so it is used only when the run needs none: a local tracking store (SQLite or
a folder) and no Ray address. ``search.private_network: false`` turns it off (e.g. to open Ray's dashboard).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys

MARKER = "TALSEARCH_PRIVATE_NETWORK"
# Set for the command run in the namespace (and everything it starts). Ray's single-node mode makes Ray take
# 127.0.0.1 as the node address: by default it takes what the host name resolves to, which in a container is
# the host's outside address, absent from the namespace (Ray then waits forever for its own GCS).
NAMESPACE_ENV = {MARKER: "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def inside() -> bool:
    """True in a process this module started in its private namespace (and in everything it starts)."""
    return os.environ.get(MARKER) == "1"


def needs_network(tracking_uri: str) -> bool:
    """True when the tracking store is reached over the network (a server, even one on this machine's
    loopback, is outside the private namespace)."""
    return "://" in tracking_uri and not tracking_uri.startswith(("sqlite:", "file:"))


def unshare_prefix() -> list[str] | None:
    """The ``unshare`` command line that gives the next command a network namespace of its own, or None where
    this machine cannot (not Linux, no util-linux ``unshare``, user namespaces disabled)."""
    if not sys.platform.startswith("linux") or (tool := shutil.which("unshare")) is None:
        return None
    prefix = [tool, "--net"] if os.geteuid() == 0 else [tool, "--user", "--map-root-user", "--net"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix if probe.returncode == 0 else None


def reexec(argv: list[str]) -> None:
    """Replaces this process (same pid: signals still reach it) by ``talsearch ARGV`` in a private network
    namespace. Returns only when that is not possible, after saying so."""
    prefix = unshare_prefix()
    if prefix is None:
        logging.getLogger("talsearch.sweep").warning(
            "[talsearch] warning: network namespaces are unavailable here, so the local Ray cluster listens on "
            "all interfaces (token authentication on); firewall Ray's ports")
        return
    os.environ.update(NAMESPACE_ENV)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(prefix[0], [*prefix, "--", sys.executable, "-m", "talsearch.cli", *argv])


def bring_loopback_up() -> None:
    """A new network namespace starts with its loopback interface down; Ray needs it up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        if not flags & _IFF_UP:
            fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))
