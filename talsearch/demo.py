"""``talsearch demo``: synthetic data -> sweep (local Ray, SQLite MLflow) -> ensemble -> submission -> summary."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tal_core.config import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def log(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def demo_sweep_config() -> Path:
    path = CONFIGS / "sweep_demo.yaml"
    if not path.exists():
        raise ConfigError(f"demo sweep config not found at {path} (run the demo from a checkout of tal-search)")
    return path


def ensure_data(data_dir: Path, videos: int) -> None:
    if (data_dir / "annotations.json").exists():
        log(f"reusing synthetic data in {data_dir}")
        return
    from tal_core.data.synth import SynthSpec, synthesize

    log(f"writing {videos} synthetic multi-view videos to {data_dir}")
    synthesize(data_dir, SynthSpec(videos=videos, val_share=0.3), progress=lambda i, n: log(f"  video {i}/{n}") if i % 6 == 0
               or i == n else None)


def summary_table(metrics: dict) -> str:
    rows = [("", "mAP@0.5", "mAP@0.75", "mAP@0.95", "mAP", "out-of-fold mAP")]
    for name, key in (("best single trial", "best_single"), ("ensemble", "ensemble")):
        m = metrics[key]
        rows.append((name, *(f"{m[k]:.4f}" for k in ("val_mAP@0.5", "val_mAP@0.75", "val_mAP@0.95", "val_mAP",
                                                      "oof_val_mAP"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def run_demo(workdir: Path, quick: bool = False) -> dict:
    from ensemble.run import run_ensemble
    from search.sweep import run_sweep

    started = time.perf_counter()
    workdir = workdir.resolve()
    data_dir = workdir / "data"
    ensure_data(data_dir, 12 if quick else 30)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    overrides = [f"tracking.uri={uri}", "tracking.experiment=tal-search-demo"]
    if quick:
        overrides += ["search.num_samples=2", "train.epochs=2", "data.image_size=32", "model.tiny_width=8"]
    sweep_dir = run_sweep(data_dir, demo_sweep_config(), workdir / "sweeps" / stamp, overrides)
    ens_dir = workdir / "ensembles" / stamp
    result = run_ensemble(str(sweep_dir), data_dir, ens_dir, overrides=overrides)
    from search.leaderboard import leaderboard, render

    table = leaderboard(sweep_dir)
    lines = [
        "", "tal-search demo", "=" * 15,
        render(table[[c for c in table.columns if c in ("trial_id", "status", "epochs", "val_mAP")]
                     + [c for c in table.columns if c not in ("trial_id", "status", "epochs", "val_mAP")
                        and not c.startswith("val_")]], "table"),
        "", summary_table(result), "",
        f"data:        {data_dir}",
        f"sweep:       {sweep_dir}   (talsearch leaderboard {sweep_dir})",
        f"ensemble:    {ens_dir}/ensemble.json",
        f"submission:  {ens_dir}/submission.csv",
        f"MLflow:      {uri}",
        f"dashboard:   talsearch ui --uri {uri}",
        f"total time:  {time.perf_counter() - started:.0f}s",
    ]
    print("\n".join(lines))
    (workdir / "last_demo.json").write_text(json.dumps({"sweep": str(sweep_dir), "ensemble": str(ens_dir),
                                                        "metrics": result}, indent=1))
    return result
