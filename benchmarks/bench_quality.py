"""Quality on hard data: the recommended single run and the recommended sweep + ensemble on the hard preset.

1. ``talsearch synth --preset hard`` (50 videos: 32 train / 16 val / 2 test; seed 0 unless ``--seed``).
2. The recommended single run: ``talsearch train --config configs/precise.yaml`` with the tiny backbone at 64 px,
   12 epochs, the panoramic view (the one that sees every action), seeds ``--seeds`` (run-to-run spread); each
   run's decoding (chosen on val among the config's ``eval.alternatives``) and that choice's out-of-fold figure.
3. The recommended sweep, ``configs/sweep_hard.yaml``; ``talsearch refit`` of its ``--refit-top`` best
   configurations with ``--refit-seeds`` other seeds each (seed diversity for the ensemble; 0 skips it); then
   ``talsearch ensemble`` over all its trials and their snapshots.

Prints one JSON line: mAP@0.5/0.75/0.95/avg, per-class AP and wall time of each; for the ensemble also its nested
out-of-fold mAP, the best single trial's out-of-fold mAP, the gain with its bootstrap interval, and the gain for
4 draws of the folds (``by_fold_seed``). All figures are on val; the single run's and the sweep's best trial are
chosen on val (best epoch, best trial): optimistic; the ensemble's nested out-of-fold figure is not.
``--skip-sweep`` runs the single runs only; ``--seeds`` with no value skips them. A finished sweep and refit in
``--workdir`` are reused (rerun the bench after changing the ensemble).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("val_mAP@0.5", "val_mAP@0.75", "val_mAP@0.95", "val_mAP")
FOLD_SEEDS = 4  # the ensemble's gain for 4 draws of its cross-validation folds: how much the fold draw moves it
SINGLE = ["model.backbone=tiny", "data.image_size=64", "train.epochs=12", "data.view=panoramic"]


def talsearch(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "talsearch.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if done.returncode != 0:
        raise SystemExit(f"talsearch {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def figures(metrics: dict) -> dict:
    return {k: round(float(metrics[k]), 4) for k in KEYS} | {
        "per_class_AP": {k: round(float(v), 3) for k, v in (metrics.get("per_class_AP") or {}).items()}}


def single_runs(data: Path, work: Path, seeds: list[int]) -> dict:
    runs = []
    for seed in seeds:
        out = work / f"single_seed{seed}"
        started = time.perf_counter()
        if not (out / "metrics.json").exists():
            talsearch("train", "--data", str(data), "--out", str(out), "--config", str(ROOT / "configs" / "precise.yaml"),
                      "--set", *SINGLE, f"train.seed={seed}", cwd=work)
        metrics = json.loads((out / "metrics.json").read_text())
        decoding = metrics.get("decoding") or {}
        runs.append(figures(metrics) | {"seed": seed, "best_epoch": metrics["best_epoch"],
                                        "decoding": decoding.get("chosen"),
                                        "decoding_oof_val_mAP": decoding.get("out_of_fold_val_mAP"),
                                        "seconds": round(time.perf_counter() - started, 1)})
    avg = [r["val_mAP"] for r in runs]
    return {"runs": runs, "seeds": seeds, "val_mAP_mean": round(sum(avg) / len(avg), 4),
            "val_mAP_min": min(avg), "val_mAP_max": max(avg)}


def refit(sweep: Path, work: Path, top: int, seeds: int) -> dict:
    """The sweep's best configurations again with other seeds (a finished refit is reused)."""
    if top == 0 or seeds == 0:
        return {"trials": 0, "seconds": 0.0}
    started = time.perf_counter()
    state = json.loads((sweep / "refit.json").read_text()) if (sweep / "refit.json").exists() else {}
    if "finished" not in state:
        talsearch("refit", str(sweep), "--top", str(top), "--seeds", str(seeds), *(["--resume"] if state else []),
                  cwd=work)
        state = json.loads((sweep / "refit.json").read_text())
    values = [t.get("val_mAP") for t in state["trials"].values() if t.get("val_mAP") is not None]
    return {"trials": len(state["trials"]), "from": state["from"], "seeds": state["seeds"],
            "val_mAP": sorted(round(v, 4) for v in values), "seconds": round(time.perf_counter() - started, 1)}


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 4) if isinstance(value, float) else value


def sweep_and_ensemble(data: Path, work: Path, refit_top: int = 3, refit_seeds: int = 2) -> dict:
    sweep = work / "sweep"
    started = time.perf_counter()
    state = json.loads((sweep / "sweep.json").read_text()) if (sweep / "sweep.json").exists() else {}
    if "finished" not in state:  # a finished sweep is reused (rerun the bench after changing the ensemble)
        talsearch("sweep", "--data", str(data), "--config", str(ROOT / "configs" / "sweep_hard.yaml"), "--out",
                  str(sweep), "--set", f"tracking.uri=sqlite:///{work}/mlflow.db",
                  *(["--resume"] if state else []), cwd=work)
    sweep_seconds = time.perf_counter() - started
    own = json.loads((sweep / "sweep.json").read_text())["trials"]  # the sweep's trials, not its refits
    trials = [json.loads(p.read_text()) for p in sorted((sweep / "trials").glob("*/metrics.json"))
              if p.parent.name in own]
    refitted = refit(sweep, work, refit_top, refit_seeds)
    best = max(trials, key=lambda m: m["val_mAP"])
    started = time.perf_counter()
    result = json.loads(talsearch("ensemble", "--sweep", str(sweep), "--data", str(data), "--out", str(work / "ensemble"),
                                  "--fold-seeds", str(FOLD_SEEDS), "--set", f"tracking.uri=sqlite:///{work}/mlflow.db", cwd=work))
    ensemble, single = result["ensemble"], result["best_single"]
    members = json.loads((work / "ensemble" / "ensemble.json").read_text())["members"]
    return {"sweep": {"trials": len(trials), "best_trial": figures(best), "seconds": round(sweep_seconds, 1)},
            "refit": refitted,
            "ensemble": {k: round(float(ensemble[k]), 4) for k in KEYS}
            | {"per_class_AP": {k: round(float(v), 3) for k, v in ensemble.get("per_class_AP", {}).items()},
               "procedure": ensemble["procedure"], "fusion": ensemble.get("fusion"),
               "members": {m["run_id"]: round(m["weight"], 3) for m in members},
               "nested_oof_val_mAP": round(float(ensemble["nested_oof_val_mAP"]), 4),
               "best_single_oof_val_mAP": round(float(single["oof_val_mAP"]), 4),
               "boundary_offsets": ensemble.get("boundary_offsets"),
               "best_single_oof_val_mAP_with_boundary_offsets": single.get("oof_val_mAP_with_boundary_offsets"),
               "oof_val_mAP_by_procedure": {k: round(v, 4) for k, v in result["oof_val_mAP_by_procedure"].items()},
               "gain": {k: _rounded(v) for k, v in result["gain"].items()}
               | {"by_fold_seed": {row["seed"]: round(row["mAP"], 4) for row in result["gain"]["by_fold_seed"]}},
               "seconds": round(time.perf_counter() - started, 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "out" / "bench_quality")
    parser.add_argument("--seed", type=int, default=0, help="seeds the hard data set")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2],
                        help="training seeds of the single run (none: skip the single runs)")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--refit-top", type=int, default=3, help="sweep configurations refit with other seeds")
    parser.add_argument("--refit-seeds", type=int, default=2, help="other seeds per refit configuration")
    args = parser.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"hard_seed{args.seed}"
    started = time.perf_counter()
    if not (data / "annotations.json").exists():
        talsearch("synth", str(data), "--preset", "hard", "--seed", str(args.seed), cwd=work)
    result = {"bench": "quality", "data": f"synth --preset hard --seed {args.seed}",
              "single": single_runs(data, work, args.seeds) if args.seeds else None}
    if not args.skip_sweep:
        result.update(sweep_and_ensemble(data, work, args.refit_top, args.refit_seeds))
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
