"""Boundary precision: the interval-only model (configs/demo.yaml) vs the precise config
(configs/demo.yaml + configs/precise.yaml: per-frame outputs on 0.125 s cells), same synthetic data,
same backbone (tiny at precise.yaml's width, 64 px), same epochs (48 videos by default: with the synthetic
default of 24 the tiny TSM does not learn its classes in 12 epochs, whatever its outputs). Reports
mAP@0.5/0.75/0.95/avg and training seconds of each (the time ratio compares equal widths: what the per-frame
outputs cost; ``interval_only_demo_width`` is demo.yaml as it is), the decoding the precise run chose among
its ``eval.alternatives``, and its val mAP re-decoded with other fixed ``eval.*`` choices (smoothing, boundary
contrast, decoder) from its stored predictions. Prints one JSON line.

Val figures use the best epoch picked on val (as every run does): they are optimistic for both alike.
``--epochs`` / ``--videos`` shrink it for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tal_core.config import from_dict, load_config, merge_nested, read_yaml, unflatten  # noqa: E402
from tal_core.data.annotations import load_dataset  # noqa: E402
from tal_core.data.synth import SynthSpec, synthesize  # noqa: E402
from tal_core.data.video import FrameCache  # noqa: E402
from tal_core.training.trainer import fit  # noqa: E402

KEYS = ("val_mAP@0.5", "val_mAP@0.75", "val_mAP@0.95", "val_mAP")
DECODE_VARIANTS = {  # changes to the precise config's eval keys, scored on the same stored predictions
    "as_configured": {},
    "no_filter": {"eval.smooth_seconds": 0.0},
    "no_bridge": {"eval.bridge_seconds": 0.0},
    "no_foreground": {"eval.foreground_classes": 0},
    "median_0.5s": {"eval.smooth_seconds": 0.5},
    "median_1.0s": {"eval.smooth_seconds": 1.0},
    "median_1.5s": {"eval.smooth_seconds": 1.5},
    "mean_0.375s": {"eval.smooth": "mean", "eval.smooth_seconds": 0.375},
    "multithreshold": {"eval.decode": "multithreshold"},
    "multithreshold_contrast": {"eval.decode": "multithreshold", "eval.boundary_contrast": True},
    "flicker": {"eval.decode": "multithreshold", "eval.smooth": "mean", "eval.smooth_seconds": 0.5,
                           "eval.boundary_contrast": True, "eval.refine_seconds": 0.125, "eval.foreground_classes": 0},
    "flicker_unrefined": {"eval.decode": "multithreshold", "eval.smooth": "mean",
                                     "eval.smooth_seconds": 0.5, "eval.boundary_contrast": True},
}


def precise_config(overrides: dict):
    """configs/demo.yaml, then configs/precise.yaml on top (on demo.yaml's view, so both runs see the same
    frames), then ``overrides``."""
    demo = read_yaml(ROOT / "configs" / "demo.yaml")
    nested = merge_nested(demo, read_yaml(ROOT / "configs" / "precise.yaml"))
    nested["data"]["view"] = demo["data"]["view"]
    return from_dict(merge_nested(nested, unflatten(overrides)))


def train(cfg, spec, cache, out: Path) -> dict:
    started = time.perf_counter()
    fit(cfg, spec, out, cache=cache)
    seconds = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    result = {**{k: round(metrics[k], 4) for k in KEYS}, "train_seconds": round(seconds, 1),
              "best_epoch": metrics["best_epoch"]}
    if "decoding" in metrics:
        result["decoding"] = metrics["decoding"]["chosen"]
    return result


def redecoded(cfg, spec, run_dir: Path) -> dict:
    """The run's stored val predictions decoded each fixed way of DECODE_VARIANTS (its own decoding section
    with the change, no alternatives)."""
    from tal_core.decoding import evaluation
    from tal_core.scoring.predictions import load_predictions

    pred = load_predictions(run_dir / "predictions" / "val.npz")
    out = {}
    for name, change in DECODE_VARIANTS.items():
        metrics, _, _ = evaluation.evaluate(spec, pred, cfg.with_overrides({**change, "eval.alternatives": None}),
                                            "val")
        out[name] = {k: round(metrics[k], 4) for k in KEYS}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    common = {"train.epochs": args.epochs}
    precise_cfg = precise_config(common)
    demo_cfg = load_config(ROOT / "configs" / "demo.yaml", common)
    interval_cfg = demo_cfg.with_overrides({"model.tiny_width": precise_cfg.model.tiny_width})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", SynthSpec(videos=args.videos, seed=args.seed))
        spec = load_dataset(tmp / "data")
        cache = FrameCache(tmp / "cache")
        cache.ensure_many([(spec.video_path(v, "front"), 8.0, 64) for v in spec.videos.values()])
        interval = train(interval_cfg, spec, cache, tmp / "interval")
        demo_width = (train(demo_cfg, spec, cache, tmp / "interval_demo")
                      if demo_cfg.model.tiny_width != interval_cfg.model.tiny_width else interval)
        precise = train(precise_cfg, spec, cache, tmp / "precise")
        variants = redecoded(precise_cfg, spec, tmp / "precise")
    ratio = precise["val_mAP@0.95"] / max(interval["val_mAP@0.95"], 1e-9)
    print(json.dumps({"bench": "boundary", "data": f"synth videos={args.videos} seed={args.seed}",
                      "epochs": args.epochs, "interval_only": interval, "interval_only_demo_width": demo_width,
                      "precise": precise,
                      "mAP@0.95_ratio": round(ratio, 2),
                      "mAP@0.5_change": round(precise["val_mAP@0.5"] - interval["val_mAP@0.5"], 4),
                      "train_time_ratio": round(precise["train_seconds"] / interval["train_seconds"], 2),
                      "precise_decoding_variants": variants, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
