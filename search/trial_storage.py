"""Trial outputs through Ray's storage, for clusters whose nodes share no disk (docs/sweeps.md, "Clusters").

With ``talsearch sweep --storage URI`` the sweep folder may be node-local: each trial's rank 0 trains in a
staging folder on its own node and uploads its run folder to ``<root>/trials/<trial_id>/`` after every epoch
(ASHA may stop a trial inside ``fit``, after any report); the driver pulls each trial's folder into
``SWEEP/trials/<trial_id>`` as the trial ends and again before it reads the results. ``<root>`` is
``URI/<study name>``, so sweeps sharing one storage URI never collide. A URI is anything pyarrow's filesystems
read: a path every node sees, ``file://``, ``s3://``, ``gs://``.

Uploads are incremental (a file is sent again only when its size or modification time changed), each file
lands under a temporary name and is moved into place, and files the run dropped (snapshots out of the top)
are removed from storage too. ``last.pt`` is not uploaded: Ray's own checkpoint carries the resume state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from tal_core.errors import UserError

logger = logging.getLogger("talsearch.storage")

NOT_UPLOADED = ("last.pt",)  # Ray's checkpoint holds the resume state; the trial folder's copy stays local
STAGING_ENV = "TALSEARCH_STAGING"  # where a node stages trials' run folders before upload (default: its temp dir)


class StorageError(UserError):
    """A storage URI is malformed, carries credentials, or cannot be read or written; the message names it."""


def has_scheme(uri: str) -> bool:
    return bool(urlsplit(uri).scheme) and len(urlsplit(uri).scheme) > 1  # "C:" is a drive, not a scheme


def check_uri(uri: str) -> str:
    """The URI as Ray and pyarrow take it; refuses credentials inside it (they would land in sweep.json)."""
    parts = urlsplit(uri)
    if parts.password or (parts.username and parts.scheme not in ("file", "")):
        raise StorageError(f"--storage {parts.scheme}://...: put credentials in the environment (e.g. "
                           f"AWS_ACCESS_KEY_ID), not in the URI; it is recorded in sweep.json")
    if has_scheme(uri) or uri.startswith("/"):
        return uri
    return str(Path(uri).resolve())


def join(root: str, *parts: str) -> str:
    """``root/part/...``; a query (``s3://b/p?endpoint_override=...``) stays at the end."""
    base, mark, query = root.partition("?") if has_scheme(root) else (root, "", "")
    return "/".join([base.rstrip("/"), *parts]) + mark + query


def filesystem(uri: str):
    """(pyarrow filesystem, path inside it) for ``uri``."""
    import pyarrow.fs as pafs

    if not has_scheme(uri):
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as error:
        raise StorageError(f"--storage {uri}: {error}") from None


def trial_uri(root: str, trial_id: str) -> str:
    return join(root, "trials", trial_id)


def staging_dir(study_name: str, trial_id: str) -> Path:
    """The node-local folder a trial trains in when its outputs go through storage."""
    base = Path(os.environ.get(STAGING_ENV) or Path(tempfile.gettempdir()) / "talsearch-staging")
    return base / study_name / "trials" / trial_id


def _temporary_name(path: str) -> str:
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def _local_files(run_dir: Path) -> dict[str, tuple[int, int]]:
    files = {}
    for path in run_dir.rglob("*"):
        if path.is_file() and path.name not in NOT_UPLOADED and not path.name.endswith(".tmp"):
            stat = path.stat()
            files[path.relative_to(run_dir).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return files


class Uploader:
    """Uploads one run folder to ``uri``, sending only what changed since its last upload."""

    def __init__(self, run_dir: Path, uri: str):
        self.run_dir, self.uri = Path(run_dir), uri
        self.fs, self.root = filesystem(uri)
        self.sent: dict[str, tuple[int, int]] = {}
        self.bytes_sent = 0

    def upload(self) -> int:
        """Sends new and changed files, removes dropped ones; returns the number of files sent."""
        import pyarrow.fs as pafs

        now = _local_files(self.run_dir)
        changed = [rel for rel, mark in now.items() if self.sent.get(rel) != mark]
        folders = {str(Path(rel).parent) for rel in changed}
        for folder in sorted(folders):
            self.fs.create_dir(join(self.root, folder) if folder != "." else self.root, recursive=True)
        for rel in changed:
            target = join(self.root, rel)
            temporary = _temporary_name(target)
            with open(self.run_dir / rel, "rb") as source, self.fs.open_output_stream(temporary) as sink:
                shutil.copyfileobj(source, sink, length=4 * 1024 * 1024)
            self.fs.move(temporary, target)
            self.bytes_sent += now[rel][0]
        for rel in set(self.sent) - set(now):
            with contextlib.suppress(FileNotFoundError, OSError):
                self.fs.delete_file(join(self.root, rel))
        for folder in self._emptied_folders(now):
            with contextlib.suppress(FileNotFoundError, OSError):
                info = self.fs.get_file_info(pafs.FileSelector(join(self.root, folder), recursive=True))
                if not any(i.type == pafs.FileType.File for i in info):
                    self.fs.delete_dir(join(self.root, folder))
        self.sent = now
        return len(changed)

    def _emptied_folders(self, now: dict) -> set[str]:
        before = {str(Path(rel).parent) for rel in self.sent} - {"."}
        after = {str(Path(rel).parent) for rel in now}
        return before - after


def write_file(uri: str, data: bytes) -> None:
    """One small file into storage, atomically (a temporary name, then a move)."""
    fs, path = filesystem(uri)
    fs.create_dir(path.rpartition("/")[0], recursive=True)
    temporary = _temporary_name(path)
    with fs.open_output_stream(temporary) as sink:
        sink.write(data)
    fs.move(temporary, path)


def read_file(uri: str) -> bytes | None:
    """A small file's bytes, or None where it does not exist."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as source:
        return source.read()


def download(uri: str, into: Path) -> bool:
    """Copies the folder at ``uri`` into ``into`` (replacing it whole: a temporary sibling, then renames);
    False where storage holds no such folder."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return False
    into = Path(into)
    into.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{into.name}.pull-", dir=into.parent))
    try:
        for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
            if info.type != pafs.FileType.File or Path(info.path).name.endswith(".tmp"):
                continue
            local = fresh / Path(info.path).relative_to(Path(path))
            local.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path) as source, open(local, "wb") as sink:
                shutil.copyfileobj(source, sink, length=4 * 1024 * 1024)
        _keep_local_only(into, fresh)
        _replace_folder(fresh, into)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return True


def _keep_local_only(old: Path, fresh: Path) -> None:
    """Files storage never holds (``last.pt``) stay where the driver's node has them."""
    for name in NOT_UPLOADED:
        if (old / name).is_file() and not (fresh / name).exists():
            shutil.copy2(old / name, fresh / name)


def _replace_folder(fresh: Path, into: Path) -> None:
    if into.exists():
        aside = into.with_name(f".{into.name}.old-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        into.rename(aside)
        fresh.rename(into)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        fresh.rename(into)


def pull_trials(root: str, trial_ids, sweep_dir: Path) -> list[str]:
    """Pulls every named trial's folder into ``sweep_dir/trials``; returns the ids storage held no folder for."""
    missing = []
    for trial_id in trial_ids:
        if not download(trial_uri(root, trial_id), Path(sweep_dir) / "trials" / trial_id):
            missing.append(trial_id)
    return missing


def pull_callbacks(root: str | None, sweep_dir: Path) -> list:
    """A Tune callback that pulls each trial's folder into ``sweep_dir/trials`` as the trial ends ([] without
    storage: trials then write there themselves)."""
    if root is None:
        return []
    from ray.tune import Callback

    class PullTrialOutputs(Callback):
        def _pull(self, trial) -> None:
            try:
                if not download(trial_uri(root, trial.trial_id), Path(sweep_dir) / "trials" / trial.trial_id):
                    logger.warning(f"[storage] trial {trial.trial_id} left nothing in {trial_uri(root, trial.trial_id)}")
            except OSError as error:  # the final pull after the sweep tries again
                logger.warning(f"[storage] pulling trial {trial.trial_id} failed: {error}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._pull(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._pull(trial)

    return [PullTrialOutputs()]


CHECKPOINT_STATE = "checkpoint_manager_snapshot.json"  # Ray Train's record of the checkpoints it registered


def prune_checkpoints(storage_path: str, run_names) -> int:
    """Removes the checkpoint folders of each named Ray Train run that Ray never registered (a trial stopped
    by ASHA can persist its next epoch's checkpoint before the stop reaches it); the ones Ray registered stay
    (it keeps the last one only). Returns how many were removed."""
    import pyarrow.fs as pafs

    fs, root = filesystem(storage_path)
    removed = 0
    for name in run_names:
        folder = join(root, name)
        state = read_file(join(storage_path, name, CHECKPOINT_STATE))
        if state is None:
            continue
        registered = _registered(json.loads(state))
        for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            name_here = info.path.rstrip("/").rpartition("/")[2]
            if info.type == pafs.FileType.Directory and name_here.startswith("checkpoint_") and \
                    name_here not in registered:
                fs.delete_dir(info.path)
                removed += 1
    return removed


def _registered(state: dict) -> set[str]:
    names = {r.get("checkpoint_dir_name") for r in state.get("checkpoint_results", [])}
    latest = state.get("latest_checkpoint_result") or {}
    names.add(latest.get("checkpoint_dir_name"))
    names.update(r.get("checkpoint_dir_name") for r in state.get("pending_training_results", []) if isinstance(r, dict))
    return {n for n in names if n}
