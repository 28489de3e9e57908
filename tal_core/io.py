"""Atomic file writes: a temporary file in the same folder, fsync, then rename over the target.

A killed process leaves either the old file or the new one, never half of one; a leftover temporary
(``.<name>.<host>.<pid>.<random>.tmp``) is never read by anything and is removed by ``clean_temporaries``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from tal_core.errors import UserError


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w"):
    """A handle on a temporary file next to ``path``; on a clean exit it is fsynced and renamed over ``path``,
    on an error removed. The one place files are published (streaming writers use it directly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temporary_name(path.name))
    try:
        with open(tmp, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def temporary_name(name: str) -> str:
    """``.<name>.<host>.<pid>.<random>.tmp``: unique across the hosts of a cluster that share a folder (a pid
    alone repeats on other machines) and across threads."""
    return f".{name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def write_atomic(path: str | Path, write: Callable[[IO], None], mode: str = "w") -> Path:
    """Call ``write(handle)`` on a temporary file next to ``path`` and publish it under ``path``."""
    with atomic_file(path, mode) as handle:
        write(handle)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda handle: handle.write(text))


def write_json_atomic(path: str | Path, value: Any, indent: int | None = 1) -> Path:
    return write_text_atomic(path, json.dumps(value, indent=indent, default=str))


def clean_temporaries(folder: str | Path) -> int:
    """Remove temporaries that killed writers left in ``folder`` (recursively); returns how many."""
    removed = 0
    for tmp in Path(folder).rglob(".*.tmp*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def append_jsonl(path: str | Path, record: dict) -> None:
    """One line appended and flushed to disk (a log: readers skip a torn last line, see ``read_jsonl``)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file; a torn last line (a writer killed mid-line) is skipped with a warning,
    a bad line elsewhere is an error naming the file and line."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                warnings.warn(f"{path}: skipping a torn last line ({error.msg})", stacklevel=2)
                break
            raise UserError(f"{path}: line {number} is not JSON ({error.msg})") from None
    return records


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for a block that builds many containers and frees none (parsing a
    large JSON file: with the collector on, orjson spends most of its time in repeated collections)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_json(data: bytes) -> Any:
    """JSON from bytes, fast (orjson, collector paused) where the text is strict JSON; the standard parser
    otherwise, so that NaN/Infinity literals still parse (and are then named by the checks) and errors carry
    line and column."""
    with collector_paused():
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return json.loads(data)
