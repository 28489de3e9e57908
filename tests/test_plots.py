"""Figures are published atomically: a reader sees the old image or the new one, never half of one."""

import re
from pathlib import Path

import pytest

from tal_core.reporting.plots import bar_plot, plt, save_figure_atomic

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def broken_figure(monkeypatch):
    """A figure whose render writes part of an image and then fails."""
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])

    def savefig(handle, **kwargs):
        handle.write(PNG_MAGIC + b"half an image")
        raise RuntimeError("render failed")

    monkeypatch.setattr(fig, "savefig", savefig)
    return fig


def test_a_failing_render_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    fig = broken_figure(monkeypatch)
    with pytest.raises(RuntimeError, match="render failed"):
        save_figure_atomic(fig, tmp_path / "plots" / "curve.png")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []
    assert not plt.fignum_exists(fig.number)  # closed even when the render failed


def test_a_failing_render_keeps_the_previous_image(tmp_path, monkeypatch):
    target = tmp_path / "curve.png"
    target.write_bytes(b"the previous image")
    with pytest.raises(RuntimeError):
        save_figure_atomic(broken_figure(monkeypatch), target)
    assert target.read_bytes() == b"the previous image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png"]


def test_plots_are_whole_images_with_nothing_left_beside_them(tmp_path):
    open_before = plt.get_fignums()
    path = bar_plot({"walking": 0.5, "eating": 0.25}, tmp_path / "ap.png", "AP", "AP")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ap.png"]
    assert plt.get_fignums() == open_before  # the figure was closed


def test_the_format_follows_the_suffix(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert save_figure_atomic(fig, tmp_path / "curve.svg").read_text().lstrip().startswith("<?xml")


def test_every_figure_goes_through_the_atomic_writer():
    """No module saves a figure itself: ``savefig`` is called only inside ``save_figure_atomic``."""
    helper = ROOT / "tal_core" / "reporting" / "plots.py"
    callers = [f"{path.relative_to(ROOT)}:{number}"
               for folder in ("tal_core", "search", "ensemble", "talsearch", "benchmarks")
               for path in sorted((ROOT / folder).rglob("*.py"))
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if re.search(r"\.savefig\(", line) and not (path == helper and "fig.savefig(handle" in line)]
    assert callers == []


def test_importances_are_drawn_from_enough_finished_trials_only(tmp_path):
    import optuna

    from tal_core.reporting.plots import MIN_TRIALS_FOR_IMPORTANCES, optuna_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    objective = lambda t: t.suggest_float("lr", 1e-3, 1e-1, log=True) + t.suggest_int("width", 4, 16)  # noqa: E731
    study.optimize(objective, n_trials=MIN_TRIALS_FOR_IMPORTANCES - 1)
    study.enqueue_trial({"lr": 0.01, "width": 8})
    study.optimize(lambda t: (_ for _ in ()).throw(RuntimeError("failed")), n_trials=1, catch=(RuntimeError,))
    few = optuna_plots(study, tmp_path / "few")  # a failed trial does not count
    assert [p.name for p in few] == ["optuna_history.png"]
    study.optimize(objective, n_trials=1)
    enough = optuna_plots(study, tmp_path / "enough")
    assert sorted(p.name for p in enough) == ["optuna_history.png", "optuna_importances.png"]
    assert all(p.stat().st_size > 1000 for p in enough)
