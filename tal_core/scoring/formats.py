"""Detections (ActivityNet result JSON) and the BinEgo-360 submission (CSV)."""

from __future__ import annotations

import csv
import functools
import json
import math
from itertools import chain
from operator import attrgetter, itemgetter
from pathlib import Path

import msgspec
import numpy as np

from tal_core.data.annotations import DatasetSpec
from tal_core.errors import UserError
from tal_core.io import collector_paused, parse_json, write_atomic, write_json_atomic
from tal_core.scoring.metrics import Segments


class FormatError(UserError, ValueError):
    """A detections or submission file is malformed; the message names the file and field."""


def write_detections(detections: dict[str, list[dict]], path: str | Path) -> Path:
    """``detections``: video id -> [{"label", "score", "segment": [start, end]}]."""
    return write_json_atomic(path, {"version": "tal-search", "results": detections}, indent=None)


def read_detections(path: str | Path) -> Segments:
    """Detections of an ActivityNet result file, every item checked: a segment of two finite numbers with
    start <= end, a finite numeric score (booleans are not numbers here), a string or integer label. A typed
    decoder checks the types while it parses (msgspec), the values are checked on whole columns; only a file
    that fails is parsed again and walked item by item to name the first bad one."""
    path = Path(path)
    fast = _typed_columns(path)
    if fast is not None:
        return fast
    results = _results_of(path)
    videos, items = [], []
    for video, listed in results.items():
        if not isinstance(listed, list):
            raise FormatError(f"{path}: results.{video} must be a list")
        videos.extend([video] * len(listed))
        items.extend(listed)
    columns = _columns(items)
    if columns is None:
        for video, listed in results.items():
            for i, item in enumerate(listed):
                _detection_row(path, video, i, item)
        raise FormatError(f"{path}: malformed detections")  # not reached: the walk names the item
    labels, segments, scores = columns
    return Segments(np.array(videos, dtype=object), labels, segments[:, 0].copy(), segments[:, 1].copy(), scores)


@functools.cache
def _typed_decoder():
    """A msgspec decoder of the detections format: it checks every item's types in C while parsing, about twice
    as fast as parsing to dicts and checking them in Python."""
    detection = msgspec.defstruct("Detection", [("label", str | int), ("score", float),
                                                ("segment", tuple[float, float])], gc=False)
    detections = msgspec.defstruct("Detections", [("results", dict[str, list[detection]])], gc=False)
    return msgspec.json.Decoder(detections), (msgspec.DecodeError, msgspec.ValidationError)


def _typed_columns(path: Path) -> Segments | None:
    """The detections when the file is well-formed and every value passes the checks; None otherwise (the
    caller then names the problem)."""
    decode, errors = _typed_decoder()
    try:
        with collector_paused():
            results = decode.decode(path.read_bytes()).results
    except errors:
        return None
    except OSError:
        return None  # the caller's read names the file and the cause
    counts = [len(listed) for listed in results.values()]
    items = list(chain.from_iterable(results.values()))
    if not items:
        return None
    columns = _checked_arrays(list(map(attrgetter("label"), items)), map(attrgetter("score"), items),
                              map(attrgetter("segment"), items), len(items))
    if columns is None:
        return None
    labels, segments, scores = columns
    videos = np.repeat(np.array(list(results), dtype=object), counts)
    return Segments(videos, labels, segments[:, 0].copy(), segments[:, 1].copy(), scores)


def _checked_arrays(labels_raw: list, scores_raw, segments_raw, count: int):
    """(labels as strings, (n, 2) segments, scores) from values of the right types, or None when a value fails
    the checks (a non-finite number, a reversed segment)."""
    segments = np.fromiter(chain.from_iterable(segments_raw), dtype=np.float64, count=2 * count).reshape(count, 2)
    scores = np.fromiter(scores_raw, dtype=np.float64, count=count)
    if not (np.isfinite(segments).all() and np.isfinite(scores).all() and (segments[:, 0] <= segments[:, 1]).all()):
        return None
    if all(map(str.__instancecheck__, labels_raw)):
        return np.array(labels_raw, dtype=object), segments, scores
    return np.array([str(label) for label in labels_raw], dtype=object), segments, scores


def _results_of(path: Path) -> dict:
    try:
        raw = parse_json(path.read_bytes())
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise FormatError(f"{path}: is a folder, not a detections file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FormatError(f"{path}: not valid JSON ({error})") from None
    results = raw.get("results") if isinstance(raw, dict) else None
    if not isinstance(results, dict):
        raise FormatError(f"{path}: field 'results' must be an object mapping video ids to lists")
    return results


def _columns(items: list) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(labels, (n, 2) segments, scores) when every item is valid, else None."""
    if not items:
        return np.empty(0, dtype=object), np.empty((0, 2)), np.empty(0)
    try:
        labels_raw, scores_raw, segments_raw = zip(*map(itemgetter("label", "score", "segment"), items), strict=True)
    except (TypeError, KeyError):
        return None
    if not set(map(type, segments_raw)) <= {list} or not set(map(len, segments_raw)) <= {2}:
        return None
    value_types = set(map(type, scores_raw)) | set(map(type, chain.from_iterable(segments_raw)))
    if not value_types <= {int, float} or not set(map(type, labels_raw)) <= {str, int}:
        return None
    return _checked_arrays(list(labels_raw), scores_raw, segments_raw, len(items))


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _detection_row(path: Path, video: str, i: int, item) -> tuple:
    where = f"{path}: results.{video}[{i}]"
    if not isinstance(item, dict):
        raise FormatError(f"{where} must be an object")
    seg, label, score = item.get("segment"), item.get("label"), item.get("score")
    if not (isinstance(seg, list) and len(seg) == 2 and all(_is_number(x) for x in seg)):
        raise FormatError(f"{where}.segment must be [start, end] numbers, got {seg!r}")
    if not all(math.isfinite(x) for x in seg):
        raise FormatError(f"{where}.segment must be finite, got {seg!r}")
    if seg[0] > seg[1]:
        raise FormatError(f"{where}.segment is reversed (start {seg[0]} > end {seg[1]})")
    if not isinstance(label, str | int) or isinstance(label, bool):
        raise FormatError(f"{where}.label must be a string, got {label!r}")
    if not _is_number(score) or not math.isfinite(score):
        raise FormatError(f"{where}.score must be a finite number, got {score!r}")
    return (video, str(label), float(seg[0]), float(seg[1]), float(score))


def ground_truth_segments(spec: DatasetSpec, subset: str | None) -> Segments:
    rows = [
        (v.video_id, s.label, s.start, s.end, 1.0)
        for v in spec.videos.values()
        if subset is None or v.subset == subset
        for s in v.segments
    ]
    return Segments.from_rows(rows)


def detections_to_segments(detections: dict[str, list[dict]]) -> Segments:
    return Segments.from_rows([
        (video, d["label"], d["segment"][0], d["segment"][1], d["score"])
        for video, items in detections.items() for d in items
    ])


def class_ids(actions, label_map: dict[str, int] | None = None) -> dict[str, int]:
    """Submission class id of each action: the organisers' map (name -> id) when given, else 1-based taxonomy
    order (0 is background in the organisers' kit)."""
    if label_map is None:
        return {name: k + 1 for k, name in enumerate(actions)}
    missing = [name for name in actions if name not in label_map]
    if missing:
        raise FormatError(f"label map lacks actions of the taxonomy: {missing[:5]}")
    return {name: int(label_map[name]) for name in actions}


def read_label_map(path: str | Path) -> dict[str, int]:
    """The organisers' JSON object, action name -> class id."""
    path = Path(path)
    try:
        raw = parse_json(path.read_bytes())
    except FileNotFoundError:
        raise FormatError(f"{path}: label map not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FormatError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw.values()):
        raise FormatError(f"{path}: a label map is a JSON object of action name -> integer id")
    return raw


def submission_rows(detections: dict[str, list[dict]], durations: dict[str, float], actions, bin_seconds=10.0,
                    label_map: dict[str, int] | None = None,
                    placements: dict[str, tuple[str, float]] | None = None):
    """BinEgo-360 rows: one per bin ``k = 0 .. ceil(duration / bin) - 1`` of each video, detections clipped to
    the bin, best first.

    Row id ``{recording}_{bin_start}_{bin_end}`` (integer seconds), predictions as
    ``[class_id, start, end, score]`` (``class_ids``), start/end in absolute recording seconds. ``placements``:
    video -> (recording, offset) for clips that point into a recording; their times and bins are the
    recording's (bins shared by several clips hold all their detections).
    """
    class_id = class_ids(actions, label_map)
    placements = placements or {}
    rows: dict[str, list] = {}
    for video in sorted(durations):
        recording, offset = placements.get(video, (video, 0.0))
        first = math.floor(round(offset / bin_seconds, 9))
        last = max(first + 1, math.ceil(round((offset + durations[video]) / bin_seconds, 9)))
        items = detections.get(video, [])
        for b in range(first, last):
            lo, hi = b * bin_seconds, (b + 1) * bin_seconds
            preds = rows.setdefault(f"{recording}_{lo:g}_{hi:g}", [])
            for d in items:
                start, end = max(d["segment"][0] + offset, lo), min(d["segment"][1] + offset, hi)
                if end > start and d["label"] in class_id:
                    preds.append([class_id[d["label"]], round(start, 3), round(end, 3), round(float(d["score"]), 6)])
    for preds in rows.values():
        preds.sort(key=lambda p: -p[3])
    return list(rows.items())


def placements_of(spec: DatasetSpec) -> dict[str, tuple[str, float]]:
    """video -> (recording, offset) of the clips in a data set (videos that point into a longer recording)."""
    return {v.video_id: (v.recording_id, v.offset) for v in spec.videos.values() if v.offset or v.recording}



def read_submission(path: str | Path, actions, label_map: dict[str, int] | None = None) -> dict[str, list[dict]]:
    """A submission CSV back into detections (per recording: the bin suffix of each row id is dropped)."""
    name_of = {cid: name for name, cid in class_ids(actions, label_map).items()}
    detections: dict[str, list[dict]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            video = row["id"].rsplit("_", 2)[0]
            items = detections.setdefault(video, [])
            for cid, start, end, score in json.loads(row["prediction"]):
                items.append({"label": name_of[cid], "score": score, "segment": [start, end]})
    return detections


def write_submission(rows, path: str | Path) -> Path:
    """The organisers' CSV: header ``id,prediction``, one row per bin, ``prediction`` a JSON list."""

    def write(handle) -> None:
        writer = csv.writer(handle)
        writer.writerow(["id", "prediction"])
        for row_id, preds in rows:
            writer.writerow([row_id, json.dumps(preds)])

    return write_atomic(path, write)


def segments_to_detections(decoded, actions) -> list[dict]:
    return [
        {"label": actions[int(k) - 1], "score": float(s), "segment": [float(a), float(b)]}
        for k, a, b, s in zip(decoded.label, decoded.start, decoded.end, decoded.score, strict=True)
    ]


def segments_to_detection_dict(table: Segments, videos=()) -> dict[str, list[dict]]:
    """A segment table as video id -> [{"label", "score", "segment"}] (``videos`` listed even when empty)."""
    out: dict[str, list[dict]] = {video: [] for video in videos}
    for video, label, start, end, score in zip(table.video, table.label, table.start, table.end, table.score,
                                               strict=True):
        out.setdefault(video, []).append({"label": label, "score": float(score),
                                          "segment": [float(start), float(end)]})
    return out


def read_detections_dict(path: str | Path) -> dict[str, list[dict]]:
    """Validated detections as video id -> [{"label", "score", "segment"}]."""
    return segments_to_detection_dict(read_detections(path))
