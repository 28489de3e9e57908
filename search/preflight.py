"""Pre-flight: before any trial trains, every live Ray node proves it sees what trials will use.

The driver writes a nonce file into the folder trials write to (the sweep folder, or the storage that replaces
it with ``--storage``) and notes the data set's ``annotations.json`` hash and the size of every video the sweep
can read. A task pinned to each live node (``num_cpus=0``, hard node affinity) reads them back. A node that
cannot see the folder trials write to, or sees other data, fails the sweep before anything trains, with one line
naming the node and the path (exit 2). The frame cache is each node's own (``search.node_cache`` builds it and
checks its room), so it needs no sharing. The cluster's state API must answer too (``check_state_api``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tal_core.errors import UserError

from . import trial_storage

logger = logging.getLogger("talsearch.preflight")

NONCE_NAME = ".talsearch-preflight"
ANSWER_TIMEOUT_S = 120.0


class PreflightError(UserError):
    """A node cannot see a path trials use; the message names the node and the path."""


@dataclass(frozen=True)
class Checks:
    """What every node must see: nonce files by URI or path, and the data set's fingerprint."""

    nonces: dict[str, str]  # role ("sweep folder", "storage") -> nonce file (path or storage URI)
    nonce: str
    annotations: str  # annotations.json's absolute path
    annotations_sha256: str
    videos: dict[str, int] = field(default_factory=dict)  # absolute path -> size in bytes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(sweep_dir: Path | None, storage_root: str | None, data_dir: Path, video_paths) -> Checks:
    """Writes the nonce files and gathers the data fingerprint (on the driver)."""
    nonce = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    nonces = {}
    if storage_root is not None:
        uri = trial_storage.join(storage_root, NONCE_NAME)
        trial_storage.write_file(uri, nonce.encode())
        nonces["storage"] = uri
    else:
        path = Path(sweep_dir) / NONCE_NAME
        path.write_text(nonce)
        nonces["sweep folder"] = str(path)
    annotations = Path(data_dir).resolve() / "annotations.json"
    videos = {str(Path(p).resolve()): Path(p).stat().st_size for p in sorted(set(map(str, video_paths)))
              if Path(p).is_file()}
    return Checks(nonces=nonces, nonce=nonce, annotations=str(annotations),
                  annotations_sha256=_sha256(annotations), videos=videos)


def cleanup(checks: Checks) -> None:
    """Removes the nonce files (best effort: a folder a node could not see holds none anyway)."""
    for role, where in checks.nonces.items():
        try:
            if role == "storage":
                fs, path = trial_storage.filesystem(where)
                fs.delete_file(path)
            else:
                Path(where).unlink(missing_ok=True)
        except OSError:
            pass


def problems_on_this_node(checks: Checks) -> tuple[list[str], list[str]]:
    """(problems, notes) as this node sees them: each problem names the path it concerns."""
    problems, notes = [], []
    for role, where in checks.nonces.items():
        try:
            seen = (trial_storage.read_file(where) or b"").decode() if role == "storage" else \
                Path(where).read_text() if Path(where).is_file() else ""
        except (OSError, UserError) as error:
            seen = f"unreadable ({error})"
        if seen != checks.nonce:
            folder = where.rpartition("/")[0]
            problems.append(f"cannot see the {role} {folder} (the driver's {NONCE_NAME} is "
                            f"{'missing' if not seen else 'another'} there)")
    annotations = Path(checks.annotations)
    if not annotations.is_file():
        problems.append(f"cannot see the data set's {annotations}")
    elif _sha256(annotations) != checks.annotations_sha256:
        problems.append(f"sees another {annotations} than the driver (its sha256 differs)")
    else:
        for path, size in checks.videos.items():
            here = Path(path)
            if not here.is_file():
                problems.append(f"cannot see the video {path}")
                break
            if here.stat().st_size != size:
                problems.append(f"sees another video {path} than the driver ({here.stat().st_size} bytes, "
                                f"the driver's {size})")
                break
    return problems, notes


def _probe(checks: Checks) -> tuple[list[str], list[str]]:
    return problems_on_this_node(checks)


STATE_API_TIMEOUT_S = 30


def check_state_api() -> None:
    """The cluster's state API (its head's dashboard) answers. Ray Train frees the workers of a trial whose
    controller died (the scheduler stopped the trial) through it; without it the next trial waits for those
    resources forever, so a sweep with early stopping would hang silently."""
    from ray.util.state import list_nodes

    from .ray_compat import dashboard_address

    why = ("Ray Train frees the workers of a trial the scheduler stops through it, so the sweep would wait "
           "forever; start the head with its dashboard (ray start --head --include-dashboard=true)")
    address = dashboard_address()
    if address is None:
        raise PreflightError(f"pre-flight: the cluster's head runs no dashboard (its state API): {why}")
    try:
        list_nodes(address=f"http://{address}", limit=1, timeout=STATE_API_TIMEOUT_S, raise_on_missing_output=False)
    except Exception as error:  # noqa: BLE001 - whatever the client raises, the API does not answer
        raise PreflightError(f"pre-flight: the cluster's state API at {address} does not answer "
                             f"({type(error).__name__}): {why}") from None


def live_nodes() -> list[dict]:
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def check_nodes(checks: Checks) -> dict:
    """Runs the probe on every live node; raises PreflightError naming the first node that fails (and how
    many others do); returns {"nodes": N, "notes": [...]}."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    nodes = live_nodes()
    pending = {probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
               .remote(checks): node for node in nodes}
    failures, notes = [], []
    ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=ANSWER_TIMEOUT_S)
    for ref in late:
        failures.append(f"{_node_name(pending[ref])} did not answer the pre-flight check within "
                        f"{ANSWER_TIMEOUT_S:.0f} s")
    for ref in ready:
        node = pending[ref]
        try:
            problems, node_notes = ray.get(ref)
        except Exception as error:  # noqa: BLE001 - a node whose task dies is a node that cannot run trials
            problems, node_notes = [f"could not run the pre-flight check ({type(error).__name__})"], []
        failures += [f"{_node_name(node)} {p}" for p in problems]
        notes += [f"{_node_name(node)} {n}" for n in node_notes]
    for note in notes:
        logger.info(f"[pre-flight] {note}")
    if failures:
        more = f" (and {len(failures) - 1} more problem(s))" if len(failures) > 1 else ""
        hint = "" if "storage" in checks.nonces else \
            "; give the sweep a --storage URI every node reaches, or a --out every node shares"
        raise PreflightError(f"pre-flight: {failures[0]}{more}{hint}")
    logger.info(f"[pre-flight] {len(nodes)} node(s) see the {', '.join(checks.nonces)} and the data set")
    return {"nodes": len(nodes), "notes": notes}


def _node_name(node: dict) -> str:
    return f"node {node.get('NodeManagerAddress', '?')} ({node['NodeID'][:12]})"
