"""Plots written next to results and logged to MLflow (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def per_class_ap_plot(metrics: dict, path: Path, title: str = "per-class AP (mean over tIoU)") -> Path:
    per_class = metrics.get("per_class_AP") or metrics.get("per_class") or {}
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(per_class) + 2), 3))
    ax.bar(list(per_class), list(per_class.values()), color="tab:blue")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def bar_plot(values: dict, path: Path, title: str, ylabel: str) -> Path:
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(values) + 2), 3))
    ax.bar([str(k) for k in values], list(values.values()), color="tab:orange")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def line_plot(xs, ys, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(list(xs), list(ys), marker="o")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
