"""Single-model training on synthetic data (configs/demo.yaml, tiny backbone, CPU): time, val mAP, and the
per-class AP with temporal shift 1/8 vs without (direction-only classes slide_left / slide_right need it).
Prints one JSON line."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tal_core.config import load_config  # noqa: E402
from tal_core.data.annotations import load_dataset  # noqa: E402
from tal_core.data.synth import SynthSpec, synthesize  # noqa: E402
from tal_core.data.video import FrameCache  # noqa: E402
from tal_core.training.trainer import fit  # noqa: E402

DIRECTION = ("slide_left", "slide_right")


def train(spec, cache, out: Path, shift: float) -> dict:
    cfg = load_config(ROOT / "configs" / "demo.yaml", {"model.shift_fraction": shift})
    started = time.perf_counter()
    fit(cfg, spec, out, cache=cache)
    metrics = json.loads((out / "metrics.json").read_text())
    per_class = metrics["per_class_AP"]
    return {"seconds": round(time.perf_counter() - started, 1), "val_mAP": round(metrics["val_mAP"], 4),
            "val_mAP@0.5": round(metrics["val_mAP@0.5"], 4), "best_epoch": metrics["best_epoch"],
            "direction_AP": round(sum(per_class[c] for c in DIRECTION) / len(DIRECTION), 4),
            "per_class_AP": {k: round(v, 4) for k, v in per_class.items()}}


def scene_prior_effect(spec, cache, run_dir: Path) -> dict:
    """val mAP of the same predictions decoded with and without the scene prior."""
    from tal_core.data.dataset import IntervalDataset
    from tal_core.decoding import evaluation
    from tal_core.scoring.predictions import load_predictions

    cfg = load_config(ROOT / "configs" / "demo.yaml")
    prior = evaluation.scene_action_prior(IntervalDataset(spec, "train", cfg.data, True, cache), len(spec.taxonomy.scenes))
    pred = load_predictions(run_dir / "predictions" / "val.npz")
    out = {}
    for flag in (False, True):
        metrics, _, _ = evaluation.evaluate(spec, pred, cfg.with_overrides({"eval.scene_prior": flag}), "val", prior)
        out[f"scene_prior_{str(flag).lower()}"] = round(metrics["val_mAP"], 4)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", SynthSpec(videos=24, seed=0))
        spec = load_dataset(tmp / "data")
        cache = FrameCache(tmp / "cache")
        with_shift = train(spec, cache, tmp / "shift", 0.125)
        without = train(spec, cache, tmp / "noshift", 0.0)
        prior = scene_prior_effect(spec, cache, tmp / "shift")
    print(json.dumps({"bench": "train", "backbone": "tiny", "config": "configs/demo.yaml", "shift_0.125": with_shift,
                      "shift_0": without, "scene_prior_val_mAP": prior, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
