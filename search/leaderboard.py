"""``talsearch leaderboard``: a table of a sweep's trials, read from the sweep folder alone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tal_core.errors import UserError
from tal_core.io import read_jsonl
from tal_core.run_folder import RunFolder


def _trial_row(trial_dir: Path, outcome: dict, searched: list[str]) -> dict:
    row: dict = {"trial_id": trial_dir.name, "status": outcome.get("status", "RUNNING?"),
                 "epochs": outcome.get("epochs")}
    flat = RunFolder(trial_dir).read_flat_config() or {}
    row.update({key: flat.get(key) for key in searched})
    metrics = RunFolder(trial_dir).read_metrics()
    if metrics is not None:
        row.update({k: v for k, v in metrics.items() if k.startswith("val_")})
        row["best_epoch"] = metrics.get("best_epoch")
        if isinstance(metrics.get("decoding"), dict):  # the decoding the trial chose among eval.alternatives
            row["decoding"] = metrics["decoding"].get("chosen")
    history = trial_dir / "history.jsonl"
    if history.exists():
        lines = read_jsonl(history)
        row["duration_s"] = round(sum(line.get("epoch_seconds", 0) for line in lines), 1)
    return row


def leaderboard(sweep_dir: str | Path, sort: str = "val_mAP") -> pd.DataFrame:
    sweep_dir = Path(sweep_dir)
    state_path = sweep_dir / "sweep.json"
    if not state_path.exists():
        raise UserError(f"{sweep_dir} is not a sweep folder (no sweep.json)")
    state = json.loads(state_path.read_text())
    searched = [key for key in state.get("searched", [])]
    trial_dirs = sorted(p for p in (sweep_dir / "trials").glob("*") if p.is_dir())
    if not searched and trial_dirs:
        searched = _varying_keys(trial_dirs)
    outcomes = dict(state.get("trials", {}))
    refit = sweep_dir / "refit.json"  # trials of talsearch refit: the same folder, their own record
    if refit.exists():
        outcomes.update(json.loads(refit.read_text()).get("trials", {}))
    rows = [_trial_row(d, outcomes.get(d.name, {}), searched) for d in trial_dirs]
    table = pd.DataFrame(rows)
    if len(table) and sort in table:
        table = table.sort_values(sort, ascending=False, kind="stable").reset_index(drop=True)
    return table


def _varying_keys(trial_dirs: list[Path]) -> list[str]:
    """Config keys whose value differs between trials (what the sweep searched)."""
    flats = [flat for flat in (RunFolder(d).read_flat_config() for d in trial_dirs) if flat is not None]
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]


def render(table: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=1)
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.4f}".format):
        return table.to_string(index=False) if len(table) else "(no trials)"
