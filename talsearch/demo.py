"""``talsearch demo``: synthetic data -> sweep (local Ray, SQLite MLflow) and one audio-only trial -> ensemble of
both -> submission -> summary."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ensemble.run import run_ensemble
from search.leaderboard import leaderboard, render
from search.sweep import run_sweep
from tal_core.data.synth import DIRECTION_ONLY
from tal_core.errors import UserError
from tal_core.io import write_json_atomic
from tal_core.run_folder import RunFolder
from tal_core.shipped_configs import shipped_config

DEMO_VIDEOS = 48  # enough for the tiny TSM to learn every class in the demo's budget

logger = logging.getLogger("talsearch.demo")


def demo_sweep_config() -> Path:
    return shipped_config("sweep_demo.yaml")


def demo_audio_config() -> Path:
    """One audio-only trial: the ensemble's candidate member that hears instead of sees."""
    return shipped_config("sweep_demo_audio.yaml")


def ensure_data(data_dir: Path, videos: int) -> None:
    if (data_dir / "annotations.json").exists():
        logger.info(f"[demo] reusing synthetic data in {data_dir}")
        return
    from tal_core.data.synth import SynthSpec, synthesize

    logger.info(f"[demo] writing {videos} synthetic multi-view videos to {data_dir}")
    synthesize(data_dir, SynthSpec(videos=videos, val_share=0.3), progress=lambda i, n: logger.info(f"[demo]   video {i}/{n}") if i % 6 == 0
               or i == n else None)


def aligned(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def summary_table(metrics: dict) -> str:
    rows = [("", "mAP@0.5", "mAP@0.75", "mAP@0.95", "mAP", "out-of-fold mAP", "nested out-of-fold mAP")]
    for name, key in (("best single trial", "best_single"), ("ensemble", "ensemble")):
        m = metrics[key]
        rows.append((name, *(f"{m[k]:.4f}" for k in ("val_mAP@0.5", "val_mAP@0.75", "val_mAP@0.95", "val_mAP",
                                                      "oof_val_mAP")), f"{m['nested_oof_val_mAP']:.4f}"
                     if "nested_oof_val_mAP" in m else "-"))
    return aligned(rows)


def gain_line(metrics: dict) -> str:
    """The ensemble's nested out-of-fold gain over the best single trial's out-of-fold mAP, with its interval."""
    gain = metrics.get("gain")
    if not gain:
        return ""
    how = "nested out-of-fold" if metrics.get("selection", "cv") == "cv" else "out-of-fold, procedure named beforehand"
    line = (f"gain over the best single trial ({how}): {gain['mAP']:+.4f}, "
            f"{round(gain['level'] * 100)}% bootstrap interval [{gain['low']:+.4f}, {gain['high']:+.4f}] over "
            f"{gain['videos']} val videos; procedure {metrics['ensemble']['procedure']}, "
            f"{metrics['ensemble'].get('fusion', 'probabilities')} fusion")
    alone = gain.get("boundary_offsets_alone")
    if alone:
        moved = ", ".join(sorted(metrics["ensemble"].get("boundary_offsets") or {})) or "none"
        line += (f"\nof which boundary offsets alone (best single trial with them): {alone['mAP']:+.4f} "
                 f"[{alone['low']:+.4f}, {alone['high']:+.4f}]; classes moved: {moved}")
    return line


def trial_outcomes(sweep_dir: Path) -> list[dict]:
    """Per finished trial: its shift and output kind, its best-epoch val mAPs and its direction-only AP."""
    outcomes = []
    for trial in sorted((sweep_dir / "trials").glob("*")):
        metrics, cfg = RunFolder(trial).read_metrics(), RunFolder(trial).read_flat_config()
        if metrics is None or cfg is None:
            continue
        per_class = metrics.get("per_class_AP", {})
        direction = [per_class[c] for c in DIRECTION_ONLY if c in per_class]
        outcomes.append({"trial": trial.name, "shift": cfg["model.shift_fraction"], "output": cfg["model.output"],
                         "epoch": metrics.get("best_epoch"), **{k: metrics[k] for k in METHOD_KEYS},
                         "direction_AP": sum(direction) / len(direction) if direction else float("nan")})
    return outcomes


METHOD_KEYS = ("val_mAP@0.5", "val_mAP@0.95", "val_mAP")


def method_table(outcomes: list[dict]) -> str:
    """The grid the demo searched: shift x output kind, with the figures each effect shows in."""
    rows = [("shift", "output", "best epoch", "mAP@0.5", "mAP@0.95", "mAP", "AP slide_left/right")]
    for o in sorted(outcomes, key=lambda o: (o["output"], o["shift"])):
        rows.append((f"{o['shift']:g}", o["output"], o["epoch"], *(f"{o[k]:.3f}" for k in METHOD_KEYS),
                     f"{o['direction_AP']:.3f}"))
    return aligned(rows)


def effect_lines(outcomes: list[dict]) -> list[str]:
    """One line per effect the demo is there to show, each from the pair of trials that differ only in it."""
    cell = {(o["shift"] > 0, o["output"]): o for o in outcomes}
    lines = []
    for output in ("interval", "frame"):
        on, off = cell.get((True, output)), cell.get((False, output))
        if on and off:
            lines.append(f"temporal shift ({output} outputs): direction-only classes AP {on['direction_AP']:.3f} "
                         f"with shift vs {off['direction_AP']:.3f} without")
    for shifted in (True, False):
        frame, interval = cell.get((shifted, "frame")), cell.get((shifted, "interval"))
        if frame and interval:
            lines.append(f"frame outputs ({'with' if shifted else 'no'} shift): mAP@0.95 {frame['val_mAP@0.95']:.3f}"
                         f" vs {interval['val_mAP@0.95']:.3f} with interval outputs")
    return lines


def sound_sweep(data_dir: Path, out: Path, overrides: list[str]) -> Path | None:
    """The one-trial audio sweep, or None where its trial did not finish (the demo goes on with the grid alone)."""
    try:
        return run_sweep(data_dir, demo_audio_config(), out, [*overrides, "search.num_samples=1"])
    except UserError as error:  # no trial finished, or the data have no sound (data written by an older synth)
        logger.warning(f"[demo] the audio-only trial did not finish ({str(error).splitlines()[0]}); the ensemble takes the grid's trials "
                       f"alone (its files: {out})")
        return None


def sound_member_line(ensemble_dir: Path, audio_dir: Path | None, quick: bool = False) -> str:
    """Whether the audio trial (or one of its snapshots) earned a place in the ensemble, and its weight."""
    if audio_dir is None:
        return ("sound member: none (--quick trains no audio-only trial)" if quick else
                "sound member: none (the audio-only trial did not finish; see the log above)")
    members = json.loads((ensemble_dir / "ensemble.json").read_text())["members"]
    heard = {m["run_id"]: m["weight"] for m in members if Path(m["source"]).is_relative_to(audio_dir)}
    trials = [RunFolder(t).read_metrics() or {} for t in sorted((audio_dir / "trials").glob("*"))]
    alone = max((m.get("val_mAP", 0.0) for m in trials), default=float("nan"))
    if heard:
        weights = ", ".join(f"{name} {weight:.2f}" for name, weight in sorted(heard.items()))
        return f"sound member (audio alone, val mAP {alone:.3f}): in the ensemble, weight {weights}"
    return f"sound member (audio alone, val mAP {alone:.3f}): no weight (it did not earn a place on val)"


def _view_of(sweep_dir: Path) -> str:
    """The sweep's saved view of the MLflow runs table (its trials, best first)."""
    return json.loads((sweep_dir / "sweep.json").read_text()).get("mlflow_view", "")


def run_demo(workdir: Path, quick: bool = False) -> dict:
    started = time.perf_counter()
    workdir = workdir.resolve()
    data_dir = workdir / "data"
    ensure_data(data_dir, 12 if quick else DEMO_VIDEOS)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    overrides = [f"tracking.uri={uri}", "tracking.experiment=tal-search-demo"]
    if quick:  # a smoke test: 2 one-worker trials side by side (the full demo's trials are 2-worker DDP runs)
        overrides += ["search.num_samples=2", "train.epochs=2", "data.image_size=32", "model.tiny_width=8",
                      "search.trial_workers=1"]
    sweep_dir = run_sweep(data_dir, demo_sweep_config(), workdir / "sweeps" / stamp, overrides)
    # the smoke test (--quick) leaves the sound trial out: a second Ray cluster would double its time
    audio_dir = None if quick else sound_sweep(data_dir, workdir / "sweeps" / f"{stamp}-audio", overrides)
    ens_dir = workdir / "ensembles" / stamp
    sources = [str(sweep_dir)] + ([str(audio_dir)] if audio_dir else [])
    result = run_ensemble(sources, data_dir, ens_dir, overrides=overrides)
    outcomes = trial_outcomes(sweep_dir)
    table = leaderboard(sweep_dir)
    lines = [
        "", "tal-search demo", "=" * 15,
        render(table[[c for c in ("trial_id", "status", "epochs", "val_mAP") if c in table.columns]], "table"),
        "", "The method, trial by trial (val, best epoch):", method_table(outcomes) if outcomes else "(no trial)",
        "", *effect_lines(outcomes),
        "", "Ensemble of the trials (members and weights chosen on val; out-of-fold = scored on held-out val folds):",
        summary_table(result), gain_line(result), sound_member_line(ens_dir, audio_dir, quick), "",
        f"data:        {data_dir}",
        f"sweep:       {sweep_dir}   (talsearch leaderboard {sweep_dir})",
        f"sound:       {audio_dir or 'none'}   (one audio-only trial, ensembled with the sweep's)",
        f"ensemble:    {ens_dir}/ensemble.json",
        f"submission:  {ens_dir}/submission.csv",
        f"MLflow:      {uri}",
        f"dashboard:   talsearch ui --uri {uri}   then open http://127.0.0.1:5000/{_view_of(sweep_dir)}",
        f"study:       talsearch ui --optuna {sweep_dir}",
        f"total time:  {time.perf_counter() - started:.0f}s",
    ]
    print("\n".join(lines))
    write_json_atomic(workdir / "last_demo.json", {"sweep": str(sweep_dir),
                                                   "audio_sweep": str(audio_dir) if audio_dir else None,
                                                   "ensemble": str(ens_dir),
                                                   "metrics": result, "trials": outcomes})
    return result
