"""Plots derived from a run's stored detections: mAP vs tIoU, per-class AP, a timeline of one val video."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tal_core.data.annotations import DatasetSpec
from tal_core.reporting.plots import line_plot, per_class_ap_plot, timeline_plot
from tal_core.run_folder import RunFolder
from tal_core.scoring.formats import ground_truth_segments, read_detections, read_detections_dict
from tal_core.scoring.metrics import average_precision

TIOU_SWEEP = tuple(np.round(np.arange(0.1, 0.96, 0.05), 2))


def detection_plots(folder: Path, spec: DatasetSpec, subset: str = "val") -> list[Path]:
    """Write the plots next to ``folder/detections/<subset>.json``; returns their paths."""
    det_path = folder / "detections" / f"{subset}.json"
    if not det_path.exists():
        return []
    gt = ground_truth_segments(spec, subset)
    result = average_precision(gt, read_detections(det_path), TIOU_SWEEP)
    written = [line_plot(result.thresholds, result.map_per_threshold, folder / "map_vs_tiou.png",
                         "mAP vs tIoU threshold", "tIoU", "mAP")]
    metrics = RunFolder(folder).read_metrics() or {}
    if "per_class_AP" in metrics:
        written.append(per_class_ap_plot(metrics, folder / "per_class_ap.png"))
    detections = read_detections_dict(det_path)
    videos = sorted(v.video_id for v in spec.subset(subset) if v.segments)
    if videos:
        video = spec.videos[videos[0]]
        truth = [(s.label, s.start, s.end) for s in video.segments]
        written.append(timeline_plot(video.video_id, truth, detections.get(video.video_id, []),
                                     spec.taxonomy.actions, folder / "timeline.png"))
    return written
