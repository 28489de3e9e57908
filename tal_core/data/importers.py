"""Importers from other annotation layouts into the data-set format (docs/design.md).

- 360+x: one VIA-style JSON per recording (``metadata{key: {"z": [start, end],
  "av": {"1": label}}}``), a recording -> scene table (CSV ``recording,scene[,subset]``),
  and the recording's view videos found next to it.
- ActivityNet: ``{"database": {id: {"subset": "training|validation|testing",
  "duration", "annotations": [{"segment", "label"}]}}}`` with one video per id.

Bad entries are reported (returned as messages), never crash the import. Training data holds no zero-length
segment and none past its video: segments are clipped to [0, duration] and dropped when nothing is left (the
published ActivityNet v1.3 file holds ``[0, 0]`` annotations and ends past the duration), counted in the report.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import av

from tal_core.data.annotations import BACKGROUND, DatasetError, write_annotations

VIEWS_360X = {"360_panoramic": "panoramic", "front_view": "front", "binocular": "binocular", "monocular": "ego"}
ANET_SUBSETS = {"training": "train", "validation": "val", "testing": "test", "train": "train", "val": "val",
                "test": "test"}


@dataclass
class ImportReport:
    videos: int = 0
    segments: int = 0
    problems: list[str] = field(default_factory=list)
    clipped: int = 0  # segments cut to their video's [0, duration]
    dropped: int = 0  # segments left out: zero-length, or nothing (360+x: under 0.5 s) left inside the video


def probe_duration(path: Path) -> float | None:
    try:
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / 1_000_000
            stream = container.streams.video[0]
            return float(stream.duration * stream.time_base) if stream.duration else None
    except Exception:
        return None


def read_scene_table(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "recording" not in rows[0] or "scene" not in rows[0]:
        raise DatasetError(f"{path}: scene table needs a header with 'recording' and 'scene' columns")
    return {row["recording"].strip(): row for row in rows}


def default_subset(recording: str) -> str:
    """Deterministic 70/15/15 split by a hash of the recording id."""
    bucket = int(hashlib.sha1(recording.encode()).hexdigest(), 16) % 20
    return "train" if bucket < 14 else "val" if bucket < 17 else "test"


def parse_via_segments(raw: dict, source: str, report: ImportReport) -> list[dict]:
    """Segments of one VIA-style file; malformed entries are reported and skipped."""
    segments = []
    for key, entry in (raw.get("metadata") or {}).items():
        z = entry.get("z") if isinstance(entry, dict) else None
        label = ((entry.get("av") or {}).get("1") if isinstance(entry, dict) else None)
        if not label or not isinstance(label, str):
            report.problems.append(f"{source}: metadata.{key} has no action label (av['1']); skipped")
            continue
        if not (isinstance(z, list) and len(z) == 2 and all(isinstance(x, int | float) for x in z) and z[1] >= z[0]):
            report.problems.append(f"{source}: metadata.{key} has a malformed z={z!r}; skipped")
            continue
        if z[1] == z[0]:
            report.problems.append(f"{source}: metadata.{key} is zero-length (z={z!r}); dropped")
            report.dropped += 1
            continue
        segments.append({"segment": [float(z[0]), float(z[1])], "label": label.strip()})
    return segments


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _find_views(src: Path, recording: str, annotation_file: Path) -> dict[str, Path]:
    found = {}
    for raw_view, view in VIEWS_360X.items():
        for candidate in (annotation_file.parent / recording / f"{raw_view}.mp4",
                          src / recording / f"{raw_view}.mp4", src / raw_view / f"{recording}.mp4"):
            if candidate.is_file():
                found[view] = candidate
                break
    return found


KIT_CUTS = 6  # the organisers' kit: the first 60 s of a recording in six cuts
KIT_SUBSETS = ("train", "train", "train", "train", "val", "test")  # by cut index
MIN_SEGMENT_SECONDS = 0.5


def cut_entries(recording: str, entry: dict, segments: list[dict], cut: float) -> dict[str, dict]:
    """The kit's clips of one recording: cut i covers [i * cut, (i + 1) * cut) of its first ``KIT_CUTS`` cuts
    (a shorter recording has fewer), video id ``{recording}_{start}_{end}``, subset by cut (0-3 train, 4 val,
    5 test); each points into the recording's files with ``offset``; segments are clipped to the cut, made
    relative to it, and dropped when shorter than 0.5 s."""
    clips = {}
    for index in range(KIT_CUTS):
        start = index * cut
        end = min(start + cut, entry["duration"])
        if end - start < MIN_SEGMENT_SECONDS:
            break
        pieces = []
        for s in segments:
            lo, hi = max(s["segment"][0], start), min(s["segment"][1], end)
            if hi - lo >= MIN_SEGMENT_SECONDS:
                pieces.append({"segment": [round(lo - start, 6), round(hi - start, 6)], "label": s["label"]})
        clip = {"subset": KIT_SUBSETS[index], "duration": round(end - start, 6), "scene": entry["scene"],
                "views": entry["views"], "offset": start, "recording": recording}
        if "audio" in entry:  # the recording's audio file: the clip hears its own stretch of it (offset)
            clip["audio"] = entry["audio"]
        if clip["subset"] != "test":
            clip["annotations"] = pieces
        clips[f"{recording}_{start:g}_{start + cut:g}"] = clip
    return clips


@dataclass
class Recording360x:
    """One 360+x recording as read: its annotation file, its scene-table entry, the view videos found for it,
    its duration (the shortest view's, else the latest segment end) and its well-formed segments."""
    name: str
    source: Path
    scene: str
    subset: str
    views: dict[str, Path]
    duration: float
    segments: list[dict]


def read_360x_recordings(src: Path, table: dict[str, dict[str, str]], report: ImportReport):
    """The recordings under ``src`` (one VIA-style JSON each), one at a time; a file that is not JSON, a
    recording missing from the scene table or without view videos is reported and skipped, a JSON file without
    ``metadata`` skipped silently."""
    for ann_file in sorted(src.rglob("*.json")):
        recording = ann_file.stem
        try:
            raw = json.loads(ann_file.read_text())
        except json.JSONDecodeError as error:
            report.problems.append(f"{ann_file}: not valid JSON ({error}); skipped")
            continue
        if not isinstance(raw, dict) or "metadata" not in raw:
            continue
        row = table.get(recording)
        if row is None:
            report.problems.append(f"{ann_file}: recording '{recording}' is not in the scene table; skipped")
            continue
        views = _find_views(src, recording, ann_file)
        if not views:
            report.problems.append(f"{ann_file}: no view videos found for '{recording}'; skipped")
            continue
        segments = parse_via_segments(raw, str(ann_file), report)
        durations = [d for d in (probe_duration(p) for p in views.values()) if d]
        duration = min(durations) if durations else max((s["segment"][1] for s in segments), default=0.0)
        subset = (row.get("subset") or "").strip() or default_subset(recording)
        yield Recording360x(recording, ann_file, row["scene"].strip(), subset, views, duration, segments)


def segments_inside(rec: Recording360x, report: ImportReport) -> list[dict]:
    """The recording's segments clipped to [0, duration]; those with under 0.5 s left are reported and dropped."""
    kept = []
    for s in rec.segments:
        start, end = max(0.0, s["segment"][0]), min(rec.duration, s["segment"][1])
        if end - start >= 0.5:
            kept.append({"segment": [start, end], "label": s["label"]})
            report.clipped += [start, end] != s["segment"]
        else:
            report.problems.append(f"{rec.source}: segment {s['segment']} outside the video or under 0.5 s; dropped")
            report.dropped += 1
    return kept


def link_views(rec: Recording360x, out: Path) -> dict[str, str]:
    """The recording's view videos hard-linked (else copied) to ``out/videos/<recording>/<view>``; view -> that
    path relative to ``out``."""
    rel_views = {}
    for view, path in rec.views.items():
        rel = f"videos/{rec.name}/{view}{path.suffix}"
        _link_or_copy(path, out / rel)
        rel_views[view] = rel
    return rel_views


AUDIO_SUFFIXES = (".wav", ".flac", ".m4a", ".aac", ".mp3", ".ogg")


def link_audio(rec: Recording360x, out: Path) -> str | None:
    """The recording's own audio file, when there is one beside its views (``<recording>/audio.wav``) or in an
    ``audio/`` folder beside the view folders (``audio/<recording>.wav``), linked like the views; its path
    relative to ``out``. Without one, the views' files keep their own audio streams (they are linked as they are)."""
    for view in rec.views.values():
        for folder, stem in ((view.parent, "audio"), (view.parent.parent / "audio", rec.name)):
            for suffix in AUDIO_SUFFIXES:
                if (folder / f"{stem}{suffix}").is_file():
                    rel = f"videos/{rec.name}/audio{suffix}"
                    _link_or_copy(folder / f"{stem}{suffix}", out / rel)
                    return rel
    return None


def recording_entries(rec: Recording360x, kept: list[dict], rel_views: dict[str, str],
                      cut: float | None, audio: str | None = None) -> dict[str, dict]:
    """The data-set entries of one recording: the recording itself, or with ``cut`` the kit's clips of it
    (``cut_entries``); a test entry carries no annotations; ``audio``: the recording's declared audio file."""
    entry = {"subset": rec.subset, "duration": rec.duration, "scene": rec.scene, "views": rel_views}
    if audio:
        entry["audio"] = audio
    if rec.subset != "test":
        entry["annotations"] = kept
    return cut_entries(rec.name, entry, kept, cut) if cut else {rec.name: entry}


def label_order(actions: set[str], label_map: dict[str, int], report: ImportReport) -> list[str]:
    """The taxonomy's action order from the organisers' name -> id map (by id); labels the map lacks are
    reported and appended after its classes, sorted."""
    unmapped = sorted(actions - set(label_map))
    if unmapped:
        report.problems.append(f"labels not in the label map (appended after its classes): {unmapped}")
    return [name for name, _ in sorted(label_map.items(), key=lambda item: item[1])] + unmapped


def import_360x(src: str | Path, out: str | Path, scenes_csv: str | Path | None = None, cut: float | None = None,
                label_map: dict[str, int] | None = None) -> ImportReport:
    """One video per recording, or with ``cut`` (the kit's 10) the kit's clips (``cut_entries``).
    ``label_map`` (the organisers' name -> id) orders the taxonomy by id, so that default submission class ids
    (1-based taxonomy order) are theirs. The steps: ``read_360x_recordings``, ``segments_inside`` (clip to the
    video), ``link_views`` and ``recording_entries`` (cut clips), ``label_order`` (map labels), ``_write``."""
    src, out = Path(src), Path(out)
    table = read_scene_table(Path(scenes_csv) if scenes_csv else src / "scenes.csv")
    report = ImportReport()
    database, actions, scenes = {}, set(), set()
    for rec in read_360x_recordings(src, table, report):
        kept = segments_inside(rec, report)
        entries = recording_entries(rec, kept, link_views(rec, out), cut, link_audio(rec, out))
        database.update(entries)
        actions.update(s["label"] for s in kept)
        scenes.add(rec.scene)
        report.videos += len(entries)
        report.segments += sum(len(e.get("annotations", [])) for e in entries.values())
    order = label_order(actions, label_map, report) if label_map is not None else None
    _write(out, database, actions, scenes, sorted({v for e in database.values() for v in e["views"]}), order)
    return report


def import_activitynet(src_json: str | Path, videos_dir: str | Path, out: str | Path,
                       view: str = "front") -> ImportReport:
    src_json, videos_dir, out = Path(src_json), Path(videos_dir), Path(out)
    raw = _read_json(src_json)
    database_raw = raw.get("database") if isinstance(raw, dict) else None
    if not isinstance(database_raw, dict):
        raise DatasetError(f"{src_json}: 'database' must be an object mapping video ids to entries")
    report = ImportReport()
    database, actions = {}, set()
    for vid, entry in database_raw.items():
        problem = _activitynet_problem(vid, entry)
        if problem:
            report.problems.append(f"{src_json}: database.{vid}: {problem}; skipped")
            continue
        video = next((p for p in (videos_dir / f"{vid}.mp4", videos_dir / f"v_{vid}.mp4") if p.is_file()), None)
        subset = ANET_SUBSETS.get(str(entry.get("subset", "")).lower())
        if video is None or subset is None:
            report.problems.append(f"{src_json}: database.{vid}: "
                                   f"{'no video file' if video is None else 'unknown subset'}; skipped")
            continue
        rel = f"videos/{vid}{video.suffix}"
        _link_or_copy(video, out / rel)
        item = {"subset": subset, "duration": float(entry["duration"]), "scene": None, "views": {view: rel}}
        anns = []
        if subset != "test":
            anns = _inside_video(entry.get("annotations") or [], item["duration"], report)
            item["annotations"] = anns
        database[vid] = item
        actions.update(a["label"] for a in entry.get("annotations") or [])
        report.videos += 1
        report.segments += len(anns)
    if report.clipped or report.dropped:
        report.problems.append(f"{src_json}: clipped {report.clipped} segment(s) to their video's [0, duration] and "
                               f"dropped {report.dropped} zero-length or empty one(s) (training takes neither; "
                               f"`talsearch evaluate` scores the file as published)")
    _write(out, database, actions, set(), [view])
    return report


def _inside_video(annotations: list, duration: float, report: ImportReport) -> list[dict]:
    """ActivityNet segments clipped to [0, duration] (counted in ``report.clipped``); those with nothing left,
    zero-length ones such as ActivityNet#56's ``[0, 0]`` included, left out (``report.dropped``)."""
    kept = []
    for a in annotations:
        start, end = float(a["segment"][0]), float(a["segment"][1])
        inside = [max(start, 0.0), min(end, duration)]
        if inside[1] <= inside[0]:
            report.dropped += 1
            continue
        report.clipped += inside != [start, end]
        kept.append({"segment": inside, "label": a["label"]})
    return kept


SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def _activitynet_problem(vid: str, entry) -> str | None:
    """Why an ActivityNet entry cannot be imported (None when it can): ids become file names, so only plain
    names pass (no '/', no '..'); duration and segments must be numbers."""
    if not SAFE_ID.match(vid) or vid in (".", ".."):
        return "video id is not a plain file name (letters, digits, '_', '-', '.')"
    if not isinstance(entry, dict):
        return "entry must be an object"
    duration = entry.get("duration")
    if not isinstance(duration, int | float) or isinstance(duration, bool) or not duration > 0:
        return f"duration must be a positive number, got {duration!r}"
    for i, ann in enumerate(entry.get("annotations") or []):
        seg = ann.get("segment") if isinstance(ann, dict) else None
        if not (isinstance(seg, list) and len(seg) == 2 and all(isinstance(x, int | float) for x in seg)):
            return f"annotations[{i}].segment must be [start, end] numbers, got {seg!r}"
        if not isinstance(ann.get("label"), str):
            return f"annotations[{i}].label must be a string"
    return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None


def _write(out: Path, database: dict, actions: set, scenes: set, views: list, order: list | None = None) -> None:
    actions.discard(BACKGROUND)
    ordered = [a for a in order if a != BACKGROUND] if order is not None else sorted(actions)
    taxonomy = {"actions": ordered, "scenes": sorted(scenes), "views": views}
    write_annotations({"taxonomy": taxonomy, "database": database}, out)
