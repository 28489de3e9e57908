import json

import numpy as np
import pytest
import torch

from helpers import TINY_OVERRIDES
from tal_core.config import LossConfig, load_config
from tal_core.data.annotations import load_dataset
from tal_core.model.multitask import Outputs
from tal_core.scoring.predictions import load_predictions
from tal_core.training.loops import NonFiniteLossError, train_one_epoch
from tal_core.training.trainer import RunCallbacks, fit, load_checkpoint


def test_fit_writes_every_output_and_is_deterministic(tiny_data, tmp_path):
    spec = load_dataset(tiny_data)
    cfg = load_config(None, TINY_OVERRIDES)
    best = fit(cfg, spec, tmp_path / "a")
    out = tmp_path / "a"
    for name in ("metrics.json", "detections/val.json", "detections/test.json", "predictions/val.npz",
                 "predictions/test.npz", "checkpoint.pt", "last.pt", "config.yaml", "history.jsonl"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"val_mAP", "val_mAP@0.5", "val_mAP@0.75", "val_mAP@0.95", "val_scene_acc"}
    pred = load_predictions(out / "predictions" / "val.npz")
    assert pred.probs.shape[1] == len(spec.taxonomy.actions) + 1
    assert np.allclose(pred.probs.sum(axis=1), 1, atol=1e-4)
    assert set(pred.video_ids) == {v.video_id for v in spec.subset("val")}
    again = fit(cfg, spec, tmp_path / "b")
    assert again["val_mAP"] == best["val_mAP"] and again["train_loss"] == best["train_loss"]
    state = load_checkpoint(out / "checkpoint.pt")
    assert "model" in state


def test_resume_continues_from_last_epoch(tiny_data, tmp_path):
    spec = load_dataset(tiny_data)
    fit(load_config(None, TINY_OVERRIDES), spec, tmp_path)
    cfg2 = load_config(None, {**TINY_OVERRIDES, "train.epochs": 2})
    cfg3 = load_config(None, {**TINY_OVERRIDES, "train.epochs": 4})
    first_steps = []
    fit(cfg2, spec, tmp_path, resume_from=tmp_path / "last.pt")
    fit(cfg3, spec, tmp_path, RunCallbacks(on_first_step=lambda: first_steps.append(1)),
        resume_from=tmp_path / "last.pt")
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
    assert first_steps == [1]  # the hook marks the run's first step only, not every epoch's


class NanModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, clips):
        n = clips.shape[0]
        return Outputs(self.w * torch.full((n, 3), float("nan")), self.w * torch.zeros(n, 2), None)


def test_nan_loss_stops_with_a_clear_error():
    model = NanModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    loader = [(torch.zeros(2, 1, 3, 4, 4), torch.tensor([0, 1]), torch.tensor([[0], [1]]), torch.tensor([0, 1]),
               torch.tensor([0, 1]))]
    with pytest.raises(NonFiniteLossError, match="nan"):
        train_one_epoch(model, loader, opt, sched, LossConfig(), torch.device("cpu"), amp=False)


def test_a_run_cleans_the_temporaries_a_killed_run_left(tiny_data, tmp_path):
    spec = load_dataset(tiny_data)
    (tmp_path / "predictions").mkdir(parents=True)
    leftovers = [tmp_path / ".metrics.json.4242.tmp", tmp_path / "predictions" / ".val.4242.tmp.npz"]
    for path in leftovers:
        path.write_text("half")
    fit(load_config(None, TINY_OVERRIDES), spec, tmp_path)
    assert not any(p.exists() for p in leftovers) and (tmp_path / "metrics.json").exists()


def test_a_run_resumed_with_nothing_left_reports_its_last_epoch(tiny_data, tmp_path):
    """A trial killed after its last epoch's checkpoint is resumed with no epoch to train: its caller (Tune)
    must still hear the final metrics (a trial reporting nothing stops the whole sweep)."""
    spec = load_dataset(tiny_data)
    cfg = load_config(None, TINY_OVERRIDES)
    fit(cfg, spec, tmp_path)
    last = json.loads((tmp_path / "history.jsonl").read_text().splitlines()[-1])
    heard = []
    fit(cfg, spec, tmp_path, RunCallbacks(on_epoch=lambda epoch, metrics, out: heard.append((epoch, metrics))),
        resume_from=tmp_path / "last.pt")
    assert heard == [(1, last)]
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 1  # nothing trained again



def test_a_resumed_run_lets_its_caller_catch_up_on_epochs_it_never_reported(tiny_data, tmp_path):
    """A trial killed between an epoch's ``last.pt`` and its report resumes after that epoch: ``on_resume``
    hears the resumed history before the next epoch trains, and a run with nothing left to train reports its
    last epoch unless ``on_resume`` just did."""
    spec = load_dataset(tiny_data)
    fit(load_config(None, {**TINY_OVERRIDES, "train.epochs": 2}), spec, tmp_path)
    three = load_config(None, {**TINY_OVERRIDES, "train.epochs": 3})
    heard = []

    def callbacks(caught_up: list[int]) -> RunCallbacks:
        return RunCallbacks(on_epoch=lambda epoch, metrics, out: heard.append(("epoch", epoch)),
                            on_resume=lambda past, out: heard.append(("resume", [m["epoch"] for m in past]))
                            or caught_up)

    fit(three, spec, tmp_path, callbacks([2]), resume_from=tmp_path / "last.pt")
    assert heard == [("resume", [1, 2]), ("epoch", 3)]
    heard.clear()
    fit(three, spec, tmp_path, callbacks([3]), resume_from=tmp_path / "last.pt")
    assert heard == [("resume", [1, 2, 3])]  # the last epoch was just reported: not again
    heard.clear()
    fit(three, spec, tmp_path, callbacks([]), resume_from=tmp_path / "last.pt")
    assert heard == [("resume", [1, 2, 3]), ("epoch", 3)]
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 3  # nothing trained twice

def test_snapshots_keep_the_next_best_epochs_and_join_the_ensemble_candidates(tiny_data, tmp_path):
    from ensemble.candidates import from_sweep_folder

    spec = load_dataset(tiny_data)
    run = tmp_path / "trials" / "t1"
    cfg = load_config(None, {**TINY_OVERRIDES, "train.epochs": 4, "train.snapshots": 1, "train.lr": 0.01})
    fit(cfg, spec, run)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    top2 = [m["epoch"] for m in sorted(history, key=lambda m: (-m["val_mAP"], m["epoch"]))[:2]]
    kept = sorted(int(p.name.removeprefix("epoch_")) for p in (run / "snapshots").iterdir())
    assert kept == sorted(top2)
    for epoch in kept:
        saved = json.loads((run / "snapshots" / f"epoch_{epoch}" / "metrics.json").read_text())
        assert saved["val_mAP"] == history[epoch - 1]["val_mAP"]
        assert (run / "snapshots" / f"epoch_{epoch}" / "predictions" / "test.npz").exists()
    best_epoch = json.loads((run / "metrics.json").read_text())["best_epoch"]
    other = next(e for e in kept if e != best_epoch)
    assert [c.run_id for c in from_sweep_folder(tmp_path)] == ["t1", f"t1@e{other}"]


def test_ema_weights_are_evaluated_and_saved_and_resume(tiny_data, tmp_path):
    spec = load_dataset(tiny_data)
    cfg = load_config(None, {**TINY_OVERRIDES, "train.ema": 0.9, "train.epochs": 1})
    fit(cfg, spec, tmp_path)  # one epoch: it is the best, so checkpoint.pt holds its evaluated weights
    last = load_checkpoint(tmp_path / "last.pt")
    assert "ema" in last and last["ema"]["updates"] > 0
    ema_weights = last["ema"]["module"]
    raw = last["model"]
    assert any(not torch.equal(ema_weights[k], raw[k]) for k in raw if raw[k].is_floating_point())
    saved = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    assert all(torch.equal(saved[k], ema_weights[k]) for k in saved)
    cfg2 = load_config(None, {**TINY_OVERRIDES, "train.ema": 0.9, "train.epochs": 2})
    fit(cfg2, spec, tmp_path, resume_from=tmp_path / "last.pt")
    assert load_checkpoint(tmp_path / "last.pt")["ema"]["updates"] > last["ema"]["updates"]


def test_augmented_training_with_every_recipe_key_runs_and_learns_something(tiny_data, tmp_path):
    spec = load_dataset(tiny_data)
    cfg = load_config(None, {**TINY_OVERRIDES, "augment.crop_min_area": 0.6, "augment.colour": 0.3,
                             "augment.flip": 0.5, "data.flip_pairs": [["slide_left", "slide_right"]],
                             "augment.temporal_jitter": 0.25, "loss.focal_gamma": 2.0,
                             "loss.class_balanced": True, "train.epochs": 2})
    best = fit(cfg, spec, tmp_path)
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert np.isfinite(best["train_loss"]) and history[1]["train_loss"] < history[0]["train_loss"]


def test_loader_worker_processes_give_the_same_run(tiny_data, tmp_path):
    spec = load_dataset(tiny_data)
    inline = fit(load_config(None, TINY_OVERRIDES), spec, tmp_path / "inline")
    workers = fit(load_config(None, {**TINY_OVERRIDES, "data.num_workers": 2}), spec, tmp_path / "workers")
    assert workers["train_loss"] == pytest.approx(inline["train_loss"], rel=1e-5)
    assert workers["val_mAP"] == pytest.approx(inline["val_mAP"], abs=1e-9)


def test_challenge_bins_score_the_run_as_evaluate_does(tiny_data, tmp_path, capsys):
    from talsearch.cli import main

    spec = load_dataset(tiny_data)
    best = fit(load_config(None, {**TINY_OVERRIDES, "eval.bin_seconds": 3.0, "train.epochs": 2}), spec, tmp_path)
    assert main(["evaluate", "--gt", str(tiny_data / "annotations.json"), "--pred",
                 str(tmp_path / "detections" / "val.json"), "--bins", "3"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["mAP"] == pytest.approx(best["val_mAP"], abs=1e-9) and best["val_mAP"] > 0


def test_shifted_grids_are_averaged_into_the_runs_own_cells(tiny_data, tmp_path, capsys):
    from tal_core.training.trainer import Run

    spec = load_dataset(tiny_data)
    frame = {**TINY_OVERRIDES, "model.output": "frame", "eval.frame_phases": 2}
    shifted_cfg = load_config(None, {**frame, "eval.grid_offsets": [0.5]})
    run = Run(shifted_cfg, spec, tmp_path / "a")
    fused = run.predict(run.val_set, "val")
    plain = Run(load_config(None, frame), spec, tmp_path / "b")
    plain.model.load_state_dict(run.model.state_dict())
    alone = plain.predict(plain.val_set, "val")
    assert fused.starts.tolist() == alone.starts.tolist() and fused.ends.tolist() == alone.ends.tolist()
    assert not np.allclose(fused.probs, alone.probs)  # the shifted clips saw the cells among other neighbours
    assert np.allclose(fused.probs.sum(axis=1), 1, atol=1e-5)
    best = fit(shifted_cfg, spec, tmp_path / "c")
    saved = load_predictions(tmp_path / "c" / "predictions" / "val.npz")
    assert saved.starts.tolist() == alone.starts.tolist()
    # what the run wrote are the fused cells of its best weights: the checkpoint's model, predicted again over
    # the shifted grids, gives them back (a run that wrote its unshifted grid alone would not)
    again = Run(shifted_cfg, spec, tmp_path / "d")
    again.model.load_state_dict(load_checkpoint(tmp_path / "c" / "checkpoint.pt")["model"])
    assert np.allclose(again.predict(again.val_set, "val").probs, saved.probs, atol=1e-6)
    unshifted = Run(load_config(None, frame), spec, tmp_path / "e")
    unshifted.model.load_state_dict(again.model.state_dict())
    assert not np.allclose(unshifted.predict(unshifted.val_set, "val").probs, saved.probs, atol=1e-6)
    # and its val mAP is the score of the detections it wrote, as `talsearch evaluate` computes it
    from talsearch.cli import main

    assert main(["evaluate", "--gt", str(tiny_data / "annotations.json"), "--pred",
                 str(tmp_path / "c" / "detections" / "val.json")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["mAP"] == pytest.approx(best["val_mAP"], abs=1e-9)
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["val_mAP"] == best["val_mAP"]
