"""Helpers shared by the tests (plain functions and constants; the fixtures live in conftest.py)."""

import contextlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_OVERRIDES = {"data.image_size": 32, "data.frames_per_interval": 2, "model.tiny_width": 8,
                  "train.epochs": 1, "train.batch_size": 8}

TALSEARCH = [sys.executable, "-m", "talsearch.cli"]


def load_benchmark(name: str):
    """A module of benchmarks/ (they are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEFAULT_SPACE = """  model.shift_fraction: {type: categorical, values: [0.0, 0.25]}
  train.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""


def write_sweep_file(folder: Path, extra: str = "", space: str = DEFAULT_SPACE) -> Path:
    """A tiny sweep config: 3 trials x 2 epochs of the 8-wide tiny TSM, 2 Ray Train workers, ASHA on; ``space``
    replaces the searched keys, ``extra`` adds to them."""
    path = folder / "sweep.yaml"
    path.write_text(f"""
data: {{image_size: 32, frames_per_interval: 2}}
model: {{tiny_width: 8}}
train: {{epochs: 2, batch_size: 8}}
search: {{num_samples: 3, trial_workers: 2, scheduler: asha, grace_period: 1, max_failures: 0}}
tracking: {{uri: "sqlite:///{folder}/mlflow.db", experiment: test}}
space:
{space}{extra}""")
    return path


def epochs_done(trial_dir: Path) -> list[int]:
    """The epochs a trial's history.jsonl records so far."""
    import json

    path = trial_dir / "history.jsonl"
    return [json.loads(x)["epoch"] for x in path.read_text().splitlines()] if path.exists() else []


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, what: str, proc=None, timeout: float = 900, interval: float = 0.25) -> None:
    """Returns once ``predicate()`` holds; fails naming ``what`` when ``proc`` (a command the test started)
    exited first or ``timeout`` passed (a bound on a hang, not on speed: two Ray tests may share the cores)."""
    import time

    deadline = time.time() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, f"the command exited before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def wait_for_port(port: int, timeout: float = 180) -> None:
    import socket
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def stop_process_group(proc) -> None:
    """Stop a server started with ``start_new_session=True`` and the workers it forked (uvicorn, huey)."""
    import signal
    import subprocess

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # what has not stopped in 10 s (a loaded machine) is killed below
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


ASHA_STOPS_SECOND = ("  loss.action_weight: {type: categorical, values: [0.05, 4.0]}\n"
                     "  model.output: {type: categorical, values: [interval, frame]}")


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _address(hex_address: str) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))  # /proc writes each 32-bit word host-endian
    address = ipaddress.IPv6Address(words)
    return f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped else str(address)


def listening_addresses(pid: int) -> set[str]:
    """The addresses of the TCP sockets listening in process PID's network namespace (what ``ss -ltn`` run
    there shows), read from /proc."""
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":
                found.add(_address(local.split(":")[0]))
    return found


def network_interfaces(pid: int) -> set[str]:
    """The network interfaces of process PID's network namespace."""
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return {line.split(":")[0].strip() for line in lines}


def ray_server_processes(pid: int) -> dict[int, str]:
    """Ray's gcs_server and raylet started under process PID: {pid: name}, found in /proc."""
    parents, names = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        child, ppid = int(stat.parent.name), int(text[text.rindex(")") + 2:].split()[1])
        parents[child], names[child] = ppid, name

    def descends(child: int) -> bool:
        while child in parents and child != pid:
            child = parents[child]
        return child == pid

    return {p: n for p, n in names.items() if n in ("gcs_server", "raylet") and descends(p)}


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time in clock ticks) of process PID from /proc, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], int(fields[19])


def process_tree(root: int) -> dict[int, int]:
    """Process ROOT and every live process descending from it: {pid: start time}, read from /proc."""
    stats = {int(p.name): s for p in Path("/proc").glob("[0-9]*") if (s := _stat(int(p.name))) is not None}
    tree, frontier = {}, [root] if root in stats else []
    while frontier:
        pid = frontier.pop()
        tree[pid] = stats[pid][2]
        frontier += [child for child, (ppid, _, _) in stats.items() if ppid == pid and child not in tree]
    return tree


def kill_process_tree(proc, timeout: float = 60) -> None:
    """SIGKILL the process ``proc`` and everything it started, and wait until they are gone: its local Ray
    cluster's gcs_server, raylet, agents and workers included (Ray's workers take process groups of their own,
    so killing the driver's group alone leaves them). Only what the test started: Ray's stop command ends every
    Ray cluster on the machine. The tree is frozen (SIGSTOP) first so that nothing in it forks out of reach."""
    import signal
    import time

    if proc.returncode is not None:  # already waited for: its pid may belong to another process by now
        return
    frozen: dict[int, int] = {}
    while new := {p: t for p, t in process_tree(proc.pid).items() if p not in frozen}:
        for pid, started in new.items():
            if (stat := _stat(pid)) is not None and stat[2] == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
        frozen.update(new)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:  # started with start_new_session=True: its group is the test's own
            os.killpg(proc.pid, signal.SIGKILL)
    for pid, started in frozen.items():
        if (stat := _stat(pid)) is not None and stat[2] == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=timeout)

    def alive(pid: int, started: int) -> bool:
        stat = _stat(pid)
        return stat is not None and stat[2] == started and stat[1] not in "ZX"

    deadline = time.time() + timeout
    while (left := [p for p, t in frozen.items() if alive(p, t)]) and time.time() < deadline:
        time.sleep(0.2)
    assert not left, f"processes of the test's own tree outlived SIGKILL: {left}"
