"""Plots written next to results and logged to MLflow (matplotlib, headless). Every figure is published with
``save_figure_atomic``: a reader (MLflow, a browser) never sees half an image."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from tal_core.io import atomic_file

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure_atomic(fig, path: str | Path, dpi: int = 80) -> Path:
    """Render ``fig`` into a temporary file next to ``path`` and rename it over ``path`` (the format from the
    suffix, PNG without one); the figure is closed either way, and a failed render leaves neither ``path`` nor
    a temporary behind."""
    path = Path(path)
    try:
        with atomic_file(path, "wb") as handle:
            fig.savefig(handle, format=path.suffix.lstrip(".").lower() or "png", dpi=dpi)
    finally:
        plt.close(fig)
    return path


def per_class_ap_plot(metrics: dict, path: Path, title: str = "per-class AP (mean over tIoU)") -> Path:
    per_class = metrics.get("per_class_AP") or metrics.get("per_class") or {}
    return bar_plot(per_class, path, title, "AP", colour="tab:blue", ylim=(0, 1))


def bar_plot(values: dict, path: Path, title: str, ylabel: str, colour: str = "tab:orange",
             ylim: tuple[float, float] | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(values) + 2), 3))
    ax.bar([str(k) for k in values], list(values.values()), color=colour)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def line_plot(xs, ys, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(list(xs), list(ys), marker="o")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def grouped_bar_plot(groups: dict[str, dict[str, float]], path: Path, title: str) -> Path:
    """groups: series name -> {class: value}; one bar per series per class."""
    classes = sorted({c for values in groups.values() for c in values})
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(classes) + 2), 3))
    width = 0.8 / max(len(groups), 1)
    for i, (name, values) in enumerate(groups.items()):
        ax.bar([k + i * width for k in range(len(classes))], [values.get(c, 0.0) for c in classes], width,
               label=name)
    ax.set_xticks([k + width * (len(groups) - 1) / 2 for k in range(len(classes))], classes, rotation=45)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def timeline_plot(video_id: str, ground_truth: list[tuple], detections: list[dict], actions, path: Path,
                  min_score: float = 0.3) -> Path:
    """Ground truth (dark) vs predicted segments (light, opacity = score) of one video, one row per class."""
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(actions) + 1.2))
    row = {name: i for i, name in enumerate(actions)}
    for label, start, end in ground_truth:
        ax.broken_barh([(start, end - start)], (row[label] + 0.05, 0.4), color="black")
    for det in detections:
        if det["score"] >= min_score and det["label"] in row:
            start, end = det["segment"]
            ax.broken_barh([(start, end - start)], (row[det["label"]] + 0.5, 0.4), color="tab:red",
                           alpha=float(min(1.0, det["score"])))
    ax.set_yticks([i + 0.5 for i in range(len(actions))], list(actions))
    ax.set_xlabel("seconds")
    ax.set_title(f"{video_id}: ground truth (black) vs predictions (red, score >= {min_score})")
    fig.tight_layout()
    return save_figure_atomic(fig, path)


# Parameter importances (fANOVA: a random forest over the finished trials) need this many finished trials: over
# fewer points the forest ranks noise, and fitting it costs a sweep's driver ~2 CPU-seconds all the same.
MIN_TRIALS_FOR_IMPORTANCES = 5


def optuna_plots(study, folder: Path) -> list[Path]:
    """Optimisation history and parameter importances of a study: ``optuna_history.png`` once a trial finished,
    ``optuna_importances.png`` from ``MIN_TRIALS_FOR_IMPORTANCES`` finished trials on."""
    import optuna
    import optuna.visualization.matplotlib as ovm

    finished = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    plots = [("optuna_history.png", ovm.plot_optimization_history)]
    if finished >= MIN_TRIALS_FOR_IMPORTANCES:
        plots.append(("optuna_importances.png", ovm.plot_param_importances))
    written = []
    for name, draw in plots:
        try:
            axes = draw(study)
            axes.figure.set_size_inches(7, 4)
            axes.figure.tight_layout()
            written.append(save_figure_atomic(axes.figure, folder / name))
        except Exception:  # e.g. no finished trial, or a single searched value for importances
            continue
    return written
