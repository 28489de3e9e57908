"""The data-set contract: ``annotations.json`` in a folder, loaded and validated.

Validation collects every problem and raises one ``DatasetError`` listing them all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tal_core.errors import UserError
from tal_core.io import parse_json, write_json_atomic

BACKGROUND = "background"
SUBSETS = ("train", "val", "test")
PAST_DURATION_TOLERANCE = 1e-6  # seconds a segment may end past its video's duration in a training data set


class DatasetError(UserError, ValueError):
    """annotations.json (or a file it names) is wrong; the message lists every problem."""


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    label: str


CLIP_DECODE_MARGIN_S = 1.0  # decoded past the last clip's end: its last cells' frames


@dataclass(frozen=True)
class Video:
    video_id: str
    subset: str
    duration: float
    scene: str | None
    views: dict[str, str]
    segments: tuple[Segment, ...] = ()
    offset: float = 0.0  # where this video starts in its view files (a clip of a longer recording), seconds
    recording: str | None = None  # the recording a clip belongs to: bins and submissions use its time
    audio: str | None = None  # a declared audio file (relative to the folder); else the audio of the view's file

    @property
    def recording_id(self) -> str:
        return self.recording or self.video_id


@dataclass(frozen=True)
class Taxonomy:
    actions: tuple[str, ...]
    scenes: tuple[str, ...]
    views: tuple[str, ...]

    def action_index(self, label: str) -> int:
        """Class index in the action head: 0 is background, actions start at 1."""
        return self.actions.index(label) + 1

    def to_json(self) -> dict[str, list[str]]:
        return {"actions": list(self.actions), "scenes": list(self.scenes), "views": list(self.views)}


@dataclass(frozen=True)
class DatasetSpec:
    root: Path
    taxonomy: Taxonomy
    videos: dict[str, Video] = field(default_factory=dict)

    def subset(self, name: str) -> list[Video]:
        return [v for v in self.videos.values() if v.subset == name]

    def video_path(self, video: Video, view: str) -> Path:
        if view not in video.views:
            raise DatasetError(f"video '{video.video_id}' has no view '{view}' (has {sorted(video.views)})")
        return self.root / video.views[view]

    def decode_end(self, video: Video, view: str) -> float | None:
        """How far into ``video``'s ``view`` file frames need decoding: where the last clip using that file ends
        (plus a second), or None (the whole file) where a video that is not a clip uses it."""
        return self._decode_ends.get((view, video.views.get(view)))

    @cached_property
    def _decode_ends(self) -> dict[tuple[str, str], float | None]:
        ends: dict[tuple[str, str], float | None] = {}
        for v in self.videos.values():
            for view, path in v.views.items():
                end = None if v.recording is None else round(v.offset + v.duration + CLIP_DECODE_MARGIN_S, 3)
                before = ends.get((view, path), end)
                ends[(view, path)] = None if end is None or before is None else max(before, end)
        return ends

    def audio_path(self, video: Video, view: str) -> Path:
        """The file a video's sound is read from: its declared ``audio`` file, else its ``view`` file."""
        return self.root / video.audio if video.audio else self.video_path(video, view)


def safe_relative_path(root: Path, relative: str) -> Path | None:
    """The path inside root, or None when it escapes root (absolute, '..', symlink out)."""
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
        return None
    resolved_root = root.resolve()
    candidate = (root / relative).resolve()
    if candidate != resolved_root and resolved_root not in candidate.parents:
        return None
    return candidate


def _read_json(path: Path) -> Any:
    try:
        return parse_json(path.read_bytes())
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a folder, not an annotations file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None


def _parse_taxonomy(raw: Any, problems: list[str]) -> Taxonomy:
    if not isinstance(raw, dict):
        problems.append("'taxonomy' must be an object with 'actions', 'scenes', 'views'")
        return Taxonomy((), (), ())
    lists = {}
    for key in ("actions", "scenes", "views"):
        values = raw.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            problems.append(f"taxonomy.{key} must be a list of non-empty strings")
            values = []
        if len(set(values)) != len(values):
            problems.append(f"taxonomy.{key} has duplicate names")
        lists[key] = tuple(values)
    if BACKGROUND in lists["actions"]:
        problems.append(f"taxonomy.actions must not contain the reserved label '{BACKGROUND}'")
    if not lists["actions"]:
        problems.append("taxonomy.actions is empty")
    return Taxonomy(**lists)


def _parse_segments(vid: str, entry: dict, duration: float, taxonomy: Taxonomy, problems: list[str],
                    ground_truth: bool = False):
    """``ground_truth`` (scoring only): keep what the published ActivityNet v1.3 file holds and its challenge
    scorer scores as it is, zero-length segments (``[0, 0]``) and ends past the duration (``kept_as_published``
    counts them); training data stays strict."""
    segments = []
    for i, ann in enumerate(entry.get("annotations") or []):
        where = f"database.{vid}.annotations[{i}]"
        seg = ann.get("segment") if isinstance(ann, dict) else None
        label = ann.get("label") if isinstance(ann, dict) else None
        if not (isinstance(seg, list | tuple) and len(seg) == 2 and all(isinstance(x, int | float) for x in seg)):
            problems.append(f"{where}: 'segment' must be [start, end] numbers, got {seg!r}")
            continue
        start, end = float(seg[0]), float(seg[1])
        if label not in taxonomy.actions:
            problems.append(f"{where}: unknown label {label!r} (not in taxonomy.actions)")
        if ground_truth:
            if end < start:
                problems.append(f"{where}: segment end {end} < start {start}")
            if start < 0:
                problems.append(f"{where}: segment [{start}, {end}] starts before 0")
        else:
            if end <= start:
                problems.append(f"{where}: segment end {end} <= start {start}")
            if start < 0 or end > duration + PAST_DURATION_TOLERANCE:
                problems.append(f"{where}: segment [{start}, {end}] outside [0, duration={duration}]")
        segments.append(Segment(start, end, str(label)))
    return tuple(segments)


def _parse_video(root: Path, vid: str, entry: Any, taxonomy: Taxonomy, problems: list[str], check_files: bool,
                 ground_truth: bool = False):
    """``ground_truth``: the annotations alone are wanted (scoring): views may be absent and subsets may
    carry other names (ActivityNet's training/validation/testing)."""
    where = f"database.{vid}"
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be an object")
        return None
    subset = entry.get("subset")
    if ground_truth and not (isinstance(subset, str) and subset):
        problems.append(f"{where}.subset: must be a non-empty string, got {subset!r}")
    elif not ground_truth and subset not in SUBSETS:
        problems.append(f"{where}.subset: {subset!r} is not one of {list(SUBSETS)}")
    duration = entry.get("duration")
    if not isinstance(duration, int | float) or duration <= 0:
        problems.append(f"{where}.duration: must be a positive number, got {duration!r}")
        duration = 0.0
    scene = entry.get("scene")
    if scene is not None and scene not in taxonomy.scenes:
        problems.append(f"{where}.scene: unknown scene {scene!r} (not in taxonomy.scenes)")
    views = entry.get("views") or {}
    if not isinstance(views, dict) or (not views and not ground_truth):
        problems.append(f"{where}.views: must name at least one video file")
        views = {}
    for view, rel in views.items():
        if taxonomy.views and view not in taxonomy.views:
            problems.append(f"{where}.views: unknown view {view!r} (not in taxonomy.views)")
        path = safe_relative_path(root, rel)
        if path is None:
            problems.append(f"{where}.views.{view}: path {rel!r} escapes the data-set folder")
        elif check_files and not path.is_file():
            problems.append(f"{where}.views.{view}: video file missing: {rel}")
    segments = _parse_segments(vid, entry, float(duration), taxonomy, problems, ground_truth)
    offset = entry.get("offset", 0.0)
    if not isinstance(offset, int | float) or isinstance(offset, bool) or not offset >= 0:
        problems.append(f"{where}.offset: must be a number of seconds >= 0, got {offset!r}")
        offset = 0.0
    recording = entry.get("recording")
    if recording is not None and not (isinstance(recording, str) and recording):
        problems.append(f"{where}.recording: must be a non-empty string, got {recording!r}")
        recording = None
    audio = entry.get("audio")
    if audio is not None and safe_relative_path(root, audio) is None:  # read (and missed) only when heard
        problems.append(f"{where}.audio: path {audio!r} escapes the data-set folder")
        audio = None
    return Video(vid, str(subset), float(duration), scene, dict(views), segments, float(offset), recording,
                 audio)


def _duplicate_ids(path: Path, kept: int) -> list[str]:
    """json.loads silently keeps the last duplicate key; find them in the raw text. Every video entry holds one
    "subset" key: when the text holds as many as the ``kept`` entries, no video id was repeated (no second
    parse; anything else, e.g. "subset" inside a label, takes the full scan)."""
    data = path.read_bytes()
    if data.count(b'"subset"') == kept:
        return []
    duplicates: list[str] = []

    def hook(pairs):
        keys = [k for k, _ in pairs]
        if "subset" not in keys:
            seen = set()
            for key in keys:
                if key in seen:
                    duplicates.append(key)
                seen.add(key)
        return dict(pairs)

    json.loads(data, object_pairs_hook=hook)
    return duplicates


def load_dataset(folder: str | Path, check_files: bool = True) -> DatasetSpec:
    """Load ``folder/annotations.json`` (or that file given directly); raise DatasetError listing every problem."""
    root = Path(folder)
    path = root if root.is_file() else root / "annotations.json"
    return _build(path, _read_json(path), check_files)


def _build(path: Path, raw: Any, check_files: bool, ground_truth: bool = False) -> DatasetSpec:
    root = path.parent
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: top level must be an object with 'taxonomy' and 'database'")
    taxonomy = _parse_taxonomy(raw.get("taxonomy"), problems)
    database = raw.get("database")
    if not isinstance(database, dict):
        problems.append("'database' must be an object mapping video ids to entries")
        database = {}
    problems += [f"database: duplicate video id {vid!r}" for vid in _duplicate_ids(path, len(database))]
    videos = {}
    for vid, entry in database.items():
        video = _parse_video(root, vid, entry, taxonomy, problems, check_files, ground_truth)
        if video is not None:
            videos[vid] = video
    if problems:
        listing = "\n  - ".join(problems)
        raise DatasetError(f"{path}: {len(problems)} problem(s):\n  - {listing}")
    return DatasetSpec(root=root, taxonomy=taxonomy, videos=videos)


def load_ground_truth(path: str | Path) -> DatasetSpec:
    """The annotations alone (no video files needed, ``views`` optional), e.g. for `talsearch evaluate`: our
    format, or an ActivityNet v1.3 file as published (taxonomy as a node list, subsets training/validation/
    testing, ``url`` and ``resolution`` keys). Zero-length segments and segments ending past the duration are
    kept, as the ActivityNet scorer keeps them (``kept_as_published`` counts them); ``load_dataset`` refuses
    them."""
    path = Path(path)
    path = path if path.is_file() or path.suffix == ".json" else path / "annotations.json"
    raw = _read_json(path)
    if is_activitynet(raw):
        raw = activitynet_to_ours(raw)
    return _build(path, raw, check_files=False, ground_truth=True)


def kept_as_published(spec: DatasetSpec, subset: str | None = None) -> tuple[int, int]:
    """(zero-length, past-duration) segments of ground truth (of ``subset``; None = all) that a training data set
    refuses and scoring keeps as the ActivityNet scorer does (a segment of both kinds counts as zero-length)."""
    zero = past = 0
    for video in spec.videos.values():
        if subset is not None and video.subset != subset:
            continue
        for s in video.segments:
            if s.end == s.start:
                zero += 1
            elif s.end > video.duration + PAST_DURATION_TOLERANCE:
                past += 1
    return zero, past


def is_activitynet(raw: Any) -> bool:
    """ActivityNet's layout: a taxonomy node list, or entries with ``url``/``resolution`` and no ``views``."""
    if not isinstance(raw, dict) or not isinstance(raw.get("database"), dict):
        return False
    if isinstance(raw.get("taxonomy"), list) or "taxonomy" not in raw:
        return True
    entries = [e for e in raw["database"].values() if isinstance(e, dict)]
    return bool(entries) and all("views" not in e and ("url" in e or "resolution" in e) for e in entries)


def activitynet_to_ours(raw: dict) -> dict:
    """Actions = the taxonomy's leaf nodes (in file order), then any other annotated label; no scenes or views."""
    nodes = [n for n in raw.get("taxonomy") or [] if isinstance(n, dict)]
    parents = {n.get("parentName") for n in nodes}
    leaves = [n["nodeName"] for n in nodes if isinstance(n.get("nodeName"), str) and n["nodeName"] not in parents]
    labels = [a.get("label") for e in raw["database"].values() if isinstance(e, dict)
              for a in e.get("annotations") or [] if isinstance(a, dict) and isinstance(a.get("label"), str)]
    actions = list(dict.fromkeys([*leaves, *labels]))
    database = {vid: {"subset": e.get("subset"), "duration": e.get("duration"), "scene": None,
                      "annotations": e.get("annotations") or []} if isinstance(e, dict) else e
                for vid, e in raw["database"].items()}
    return {"taxonomy": {"actions": actions, "scenes": [], "views": []}, "database": database}


def write_annotations(data: dict, folder: str | Path) -> Path:
    return write_json_atomic(Path(folder) / "annotations.json", data)
