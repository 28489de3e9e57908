"""One training run: data, model, epochs, best-epoch outputs, resume. No Ray.

Outputs under the run folder (written by rank 0, refreshed at every new best epoch
so that a run stopped early still leaves its best results):
``metrics.json``, ``detections/val.json`` (+ ``test.json``), ``predictions/val.npz``
(+ ``test.npz``), ``checkpoint.pt`` (best weights), ``last.pt`` (resume state),
``config.yaml`` (resolved config), ``history.jsonl`` (one line per epoch), and with ``train.snapshots`` K the
predictions and metrics of the K + 1 best epochs under ``snapshots/epoch_N/`` (extra ensemble members).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tal_core.config import Config, save_config
from tal_core.data.annotations import DatasetError, DatasetSpec
from tal_core.data.dataset import IntervalDataset
from tal_core.data.video import FrameCache
from tal_core.decoding import evaluation
from tal_core.decoding.decoding_choice import DecodingChoice, choose_decoding
from tal_core.errors import UserError
from tal_core.io import append_jsonl, clean_temporaries, write_atomic
from tal_core.model.global_bn import global_batch_norm
from tal_core.model.multitask import MultiTaskTSM
from tal_core.run_folder import RunFolder
from tal_core.scoring.formats import write_detections
from tal_core.scoring.predictions import IntervalPredictions, average_coinciding_cells, save_predictions
from tal_core.training import augment, loops
from tal_core.training.distributed import is_distributed, rank, select_device
from tal_core.training.ema import WeightEMA
from tal_core.training.losses import balanced_class_weights

EpochCallback = Callable[[int, dict, Path], None]


@dataclass(frozen=True)
class RunCallbacks:
    """Hooks into a run: ``on_epoch(epoch, metrics, run_dir)`` after every epoch (every rank; a Ray Train
    worker reports there), ``on_first_step()`` once, after the run's first optimizer step (start-up cost), and
    ``on_resume(history, run_dir)`` once a resumed run has read its state, before it trains on (every rank): it
    returns the epochs of ``history`` it reported there (a trial catches up on epochs it never reported)."""

    on_epoch: EpochCallback | None = None
    on_first_step: Callable[[], None] | None = None
    on_resume: Callable[[list, Path], list[int]] | None = None


class ResumeError(UserError):
    """The state a run was asked to resume from cannot be used; names the file."""


@dataclass
class RunState:
    epoch: int = 0
    best_metric: float = -1.0
    best_epoch: int = -1
    history: list = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


logger = logging.getLogger("talsearch.train")


class _RankZero(logging.Filter):
    """Under DDP every rank runs the same loop: only rank 0's progress lines are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return rank() == 0


logger.addFilter(_RankZero())


def build_model(cfg: Config, spec: DatasetSpec) -> MultiTaskTSM:
    return MultiTaskTSM(cfg.model, cfg.data.frames_per_interval, len(spec.taxonomy.actions),
                        len(spec.taxonomy.scenes), cfg.data.modalities, unimodal_heads=cfg.loss.modality_weight > 0,
                        contributions=cfg.loss.gradient_modulation > 0)


def save_checkpoint(path: Path, model, optimizer=None, scheduler=None, state: RunState | None = None,
                    cfg: Config | None = None, ema: WeightEMA | None = None) -> None:
    payload = {"model": unwrap(model).state_dict()}
    if ema is not None:
        payload["ema"] = ema.state_dict()
    if optimizer is not None:
        payload.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
    if state is not None:
        payload.update(epoch=state.epoch, best_metric=state.best_metric, best_epoch=state.best_epoch,
                       history=json.dumps(state.history))
    if cfg is not None:
        payload["config"] = json.dumps(cfg.model_dump(mode="json"))
    write_atomic(path, lambda handle: torch.save(payload, handle), mode="wb")


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def unwrap(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


class Run:
    """Everything one training run holds; ``fit`` drives it."""

    def __init__(self, cfg: Config, spec: DatasetSpec, run_dir: Path, cache: FrameCache | None = None):
        self.cfg, self.spec, self.run_dir = cfg, spec, Path(run_dir)
        self.device = select_device(cfg.train.device)
        seed_everything(cfg.train.seed)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.flip_perm = augment.flip_permutation(spec.taxonomy.actions, cfg.data.flip_pairs)
        self.train_set = IntervalDataset(spec, "train", cfg.data, train=True, cache=cache, seed=cfg.train.seed,
                                         temporal_jitter=cfg.augment.temporal_jitter, audio=cfg.audio)
        phases = cfg.eval.frame_phases if cfg.model.output == "frame" else 1
        self.val_set = IntervalDataset(spec, "val", cfg.data, train=False, cache=cache, phases=phases,
                                       audio=cfg.audio)
        self.test_set = IntervalDataset(spec, "test", cfg.data, train=False, cache=cache, phases=phases,
                                        audio=cfg.audio)
        self.shifted = {split: [IntervalDataset(spec, split, cfg.data, train=False, cache=cache, phases=phases,
                                                grid_offset=offset, audio=cfg.audio)
                                for offset in cfg.eval.grid_offsets]
                        for split in ("val", "test")}  # eval.grid_offsets: the same cells seen in other clips
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise DatasetError(f"data set {spec.root} needs train and val videos with view '{cfg.data.view}'")
        self.model = build_model(cfg, spec).to(self.device)
        if is_distributed():
            if cfg.train.sync_bn:  # one BatchNorm over the global batch, as in a single process
                self.model = (nn.SyncBatchNorm.convert_sync_batchnorm(self.model) if self.device.type == "cuda"
                              else global_batch_norm(self.model))
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=ids)
        self.ema = WeightEMA(unwrap(self.model), cfg.train.ema) if cfg.train.ema > 0 else None
        self.class_weight = self._class_weight()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr,
                                           weight_decay=cfg.train.weight_decay)
        self.batch_size = loops.per_rank_batch(cfg.train.batch_size)
        steps = len(loops.make_loader(self.train_set, self.batch_size, True, 0, 0, 0))
        total = loops.cosine_steps(cfg.train.epochs, steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: loops.warmup_cosine(step, total, max(1, round(steps * cfg.train.warmup_epochs))))
        self.state = RunState()
        self.scene_prior = evaluation.scene_action_prior(self.train_set, len(spec.taxonomy.scenes))
        self.meta = {"actions": list(spec.taxonomy.actions), "scenes": list(spec.taxonomy.scenes),
                     "interval_seconds": cfg.data.interval_seconds, "view": cfg.data.view,
                     "cells": cfg.model.output,
                     "cells_per_interval": cfg.data.frames_per_interval * phases if cfg.model.output == "frame"
                     else 1,
                     "config": cfg.flat(), "run_id": self.run_dir.name}

    def _class_weight(self) -> torch.Tensor | None:
        if not self.cfg.loss.class_balanced:
            return None
        labels = np.concatenate([vi.labels for vi in self.train_set.videos])
        return balanced_class_weights(np.bincount(labels, minlength=len(self.spec.taxonomy.actions) + 1))

    def evaluated_model(self):
        """The weights that are evaluated and saved: the moving average with ``train.ema``, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def _augment(self, clips, action, frame_labels):
        return augment.augment_inputs(clips, action, frame_labels, self.cfg.augment, self.flip_perm, self.generator,
                                      self.cfg.audio)

    def resume_from(self, path: Path) -> None:
        """Load the resume state; a file that is not one, or one of another model, is a ``ResumeError``."""
        try:
            saved = load_checkpoint(path)
        except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, zip errors ...
            reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
            raise ResumeError(f"{path}: not a readable checkpoint ({reason})") from None
        missing = [k for k in ("model", "optimizer", "scheduler", "epoch", "history") if k not in saved]
        if missing:
            raise ResumeError(f"{path}: not a resume checkpoint (lacks {missing})")
        try:
            unwrap(self.model).load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError) as error:
            raise ResumeError(f"{path} was written by a different model config than this run's "
                              f"({str(error).splitlines()[0][:200]}); resume with the run's config.yaml") from None
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.ema is not None and "ema" in saved:
            self.ema.load_state_dict(saved["ema"])
        self.state = RunState(saved["epoch"], saved["best_metric"], saved["best_epoch"],
                              json.loads(saved["history"]))
        logger.info(f"resumed from {path} after epoch {self.state.epoch}")

    def train_epoch(self, epoch: int, after_step: Callable[[], None] | None = None) -> dict:
        self.train_set.set_epoch(epoch)
        loader = loops.make_loader(self.train_set, self.batch_size, True, self.cfg.train.seed, epoch,
                                    self.cfg.data.num_workers)
        # each rank draws its own augmentations, reproducibly
        self.generator = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + epoch * 1009 + rank())

        def step_done() -> None:
            if self.ema is not None:
                self.ema.update(unwrap(self.model))
            if after_step is not None:
                after_step()

        transform = (self._augment if augment.active(self.cfg.augment) or augment.audio_active(self.cfg.audio)
                     else None)
        return loops.train_one_epoch(self.model, loader, self.optimizer, self.scheduler, self.cfg.loss,
                                      self.device, self.cfg.train.amp, progress=rank() == 0
                                      and sys.stderr.isatty(), after_step=step_done, transform=transform,
                                      class_weight=self.class_weight)

    def predict(self, dataset: IntervalDataset, split: str):
        """Cell probabilities of ``dataset``, averaged over the shifted grids of ``eval.grid_offsets``."""
        predicted = [loops.predict(self.evaluated_model(), grid, self.device,
                                   self.cfg.eval.batch_size or 2 * self.cfg.train.batch_size, self.cfg.train.amp,
                                   dict(self.meta, split=split), self.cfg.data.num_workers)
                     for grid in [dataset, *self.shifted[split]]]
        return average_coinciding_cells(predicted[0], predicted[1:])

    def validate(self) -> tuple[DecodingChoice, IntervalPredictions]:
        """Val predictions, decoded every way ``eval`` lists (``choose_decoding``); they record the chosen
        decoding as their config's ``eval`` section, so whoever reads them decodes them as this run does."""
        val_pred = self.predict(self.val_set, "val")
        choice = choose_decoding(self.spec, val_pred, self.cfg, "val", self.scene_prior)
        return choice, self.decoded_as(val_pred, choice)

    def decoded_as(self, pred: IntervalPredictions | None, choice: DecodingChoice) -> IntervalPredictions | None:
        if pred is None or not self.cfg.eval.alternatives:
            return pred
        resolved = self.cfg.model_copy(update={"eval": choice.eval})
        return replace(pred, meta=dict(pred.meta, config=resolved.flat(), decoding=choice.name))

    def predict_test(self):
        """Test predictions (collective under DDP: every rank calls it), or None without test videos."""
        return self.predict(self.test_set, "test") if len(self.test_set) else None

    def write_best(self, metrics: dict, choice: DecodingChoice, val_pred, test_pred) -> None:
        """Rank 0 writes the best epoch's outputs, test detections decoded the way val chose."""
        if rank() != 0:
            return
        out = self.run_dir
        save_predictions(val_pred, out / "predictions" / "val.npz")
        write_detections(choice.detections, out / "detections" / "val.json")
        if test_pred is not None:
            save_predictions(self.decoded_as(test_pred, choice), out / "predictions" / "test.npz")
            write_detections(evaluation.decode_predictions(test_pred, choice.eval, self.scene_prior),
                             out / "detections" / "test.json")
        summary = dict(metrics, best_epoch=self.state.best_epoch, per_class_AP=choice.per_class)
        if self.cfg.eval.alternatives:
            summary["decoding"] = choice.summary()
        RunFolder(out).write_metrics(summary)
        save_checkpoint(out / "checkpoint.pt", self.evaluated_model(), cfg=self.cfg)

    def snapshot_epochs(self) -> list[int]:
        """The ``train.snapshots`` + 1 best epochs so far by val mAP (earlier epochs win ties)."""
        ranked = sorted(self.state.history, key=lambda m: (-m["val_mAP"], m["epoch"]))
        return [m["epoch"] for m in ranked[: self.cfg.train.snapshots + 1]]

    def write_snapshot(self, metrics: dict, choice: DecodingChoice, val_pred, test_pred) -> None:
        """Rank 0 keeps this epoch's predictions under snapshots/epoch_N and drops those out of the top."""
        if rank() != 0:
            return
        keep = self.snapshot_epochs()
        folder = RunFolder(self.run_dir).snapshot(metrics["epoch"])
        save_predictions(val_pred, folder.predictions_file("val"))
        if test_pred is not None:
            save_predictions(self.decoded_as(test_pred, choice), folder.predictions_file("test"))
        folder.write_metrics(dict(metrics, best_epoch=metrics["epoch"]))
        for epoch, old in RunFolder(self.run_dir).snapshots().items():
            if epoch not in keep:
                shutil.rmtree(old.path, ignore_errors=True)


def fit(cfg: Config, spec: DatasetSpec, run_dir: str | Path, callbacks: RunCallbacks = RunCallbacks(),
        resume_from: Path | None = None, cache: FrameCache | None = None) -> dict:
    """Train ``cfg.train.epochs`` epochs; returns the best epoch's metrics."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank() == 0:
        clean_temporaries(run_dir)  # left by a killed run
    run = Run(cfg, spec, run_dir, cache)
    resumed = resume_from is not None and Path(resume_from).is_file()
    if resumed:
        run.resume_from(Path(resume_from))  # before anything is written: a failed resume changes nothing
    if rank() == 0:
        save_config(cfg, run_dir / "config.yaml")
    best = _read_best(run_dir)
    first_step = [callbacks.on_first_step]  # fired once, then dropped

    def after_step() -> None:
        if first_step[0] is not None:
            first_step.pop()()
            first_step.append(None)

    caught_up = (callbacks.on_resume(run.state.history, run_dir)
                 if resumed and run.state.history and callbacks.on_resume is not None else [])
    if (run.state.epoch >= cfg.train.epochs and run.state.history and callbacks.on_epoch is not None
            and run.state.epoch not in caught_up):
        # resumed with nothing left to train: the caller still hears the last epoch (a Tune trial that reports
        # nothing has no result, and Tune then stops the whole sweep)
        callbacks.on_epoch(run.state.epoch, run.state.history[-1], run_dir)
    for epoch in range(run.state.epoch, cfg.train.epochs):
        started = time.perf_counter()
        losses = run.train_epoch(epoch, after_step)
        choice, val_pred = run.validate()
        metrics = {"epoch": epoch + 1, **losses, **choice.metrics, "epoch_seconds": time.perf_counter() - started}
        if cfg.eval.alternatives:
            metrics["decoding"] = choice.name
        run.state.epoch = epoch + 1
        run.state.history.append(metrics)
        is_best = metrics["val_mAP"] > run.state.best_metric
        is_snapshot = cfg.train.snapshots > 0 and epoch + 1 in run.snapshot_epochs()
        test_pred = run.predict_test() if is_best or is_snapshot else None  # the same on every rank
        if is_best:
            run.state.best_metric, run.state.best_epoch = metrics["val_mAP"], epoch + 1
            run.write_best(metrics, choice, val_pred, test_pred)
            best = metrics
        if is_snapshot:
            run.write_snapshot(metrics, choice, val_pred, test_pred)
        if rank() == 0:
            save_checkpoint(run_dir / "last.pt", run.model, run.optimizer, run.scheduler, run.state, cfg, run.ema)
            append_jsonl(RunFolder(run_dir).history_file, metrics)
        logger.info(_epoch_line(metrics, cfg.train.epochs))
        if callbacks.on_epoch is not None:
            callbacks.on_epoch(epoch + 1, metrics, run_dir)
    return best or {}


def _read_best(run_dir: Path) -> dict:
    return RunFolder(run_dir).read_metrics() or {}


def _epoch_line(m: dict, epochs: int) -> str:
    at = " ".join(f"{k[4:]}={v:.3f}" for k, v in m.items() if k.startswith("val_mAP@"))
    return (f"epoch {m['epoch']}/{epochs} loss={m['train_loss']:.3f} (action {m['train_action_loss']:.3f}, "
            f"frame {m['train_frame_loss']:.3f}, scene {m['train_scene_loss']:.3f}) val_mAP={m['val_mAP']:.3f} [{at}] "
            f"scene_acc={m['val_scene_acc']:.2f} {m['epoch_seconds']:.1f}s"
            + (f" decoding={m['decoding']}" if "decoding" in m else ""))
