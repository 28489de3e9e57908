"""``talsearch ensemble``: candidates -> aligned -> selected and weighted -> outputs + MLflow run."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tal_core.config import DECODING_KEYS, load_config, parse_overrides, read_yaml
from tal_core.data.annotations import load_ground_truth
from tal_core.errors import UserError
from tal_core.io import write_json_atomic
from tal_core.reporting.plots import bar_plot, grouped_bar_plot, line_plot
from tal_core.reporting.run_plots import detection_plots
from tal_core.reporting.tracking import log_ensemble_run, resolve_uri
from tal_core.scoring.formats import (
    ground_truth_segments,
    placements_of,
    segments_to_detection_dict,
    submission_rows,
    write_detections,
    write_submission,
)

from .align import align
from .boundaries import offsets_json
from .candidates import Candidate, CandidateError, as_sources, collect
from .defaults import MIN_GAIN, SECOND_TRIAL_SHARE
from .fuse import Evaluator
from .gain import bootstrap_gain
from .select import (
    AS_TRAINED,
    CROSS_MODAL,
    OFFSETS,
    Recipe,
    SelectionResult,
    choose_by_cv,
    gains_over_fold_seeds,
    held_out_pair,
    second_trial_strong,
)

logger = logging.getLogger("talsearch.ensemble")


def _detections_json(evaluator: Evaluator, fitted) -> dict[str, list[dict]]:
    """The detections of fitted weights (and fusion) on the evaluator's videos, as ActivityNet JSON."""
    return segments_to_detection_dict(evaluator.detections_of(fitted), [v.video_id for v in evaluator.videos])


def _metrics(result) -> dict:
    out = {f"val_mAP@{t:g}": float(m) for t, m in zip(result.thresholds, result.map_per_threshold, strict=True)}
    out["val_mAP"] = result.mean
    return out


def run_ensemble(source: str | Sequence[str], data: str | Path, out: str | Path, config=None, overrides=(), top_n: int = 0,
                 folds: int = 5, max_steps: int = 12, seed: int = 0, selection: str = "auto",
                 min_gain: float = MIN_GAIN, fold_seeds: int = 1, boundary_offsets: bool = True,
                 second_trial_share: float = SECOND_TRIAL_SHARE) -> dict:
    """``selection``: "cv" picks, among the procedures of ``ensemble.select.procedures``, the one with the best
    out-of-fold val mAP (the best single member unless another procedure beats it by ``min_gain``);
    or name one ("greedy+refine", "greedy", "top3_average", "best_single", "greedy+refine/segments",
    "calibrated+greedy+refine", "cmaes", or "classwise", "classmix", "greedy+refine/classmix" and "stacked", which
    "cv" does not compare: ``select.OPT_IN``); "auto" (the default): "cv" over candidates of one modality, "classmix" over
    candidates of several (``default_selection``).
    ``boundary_offsets``: every procedure also comes with per-class boundary offsets fitted where its weights are
    (``<name>+offsets``, ``ensemble.boundaries``), kept unless they lose to the same procedure without them out
    of fold by more than ``min_gain``; the gain is measured against the best single member as it was trained.
    ``second_trial_share`` (under "cv"): a fusion is fitted only where a trial other than the best member's
    reaches that share of its mAP on the fitting videos (``select.second_trial_strong``; 0: always).
    ``fold_seeds`` > 1 also reports the gain for that many draws of
    the folds (``seed``, ``seed`` + 1, ...): ``gain.by_fold_seed`` and its mean, min and max. ``source``: a sweep
    folder or MLflow parent run id, or several (their trials are candidates together; the ensemble is logged
    under the first one's parent run)."""
    if not 0 <= second_trial_share < 1:
        raise UserError(f"ensemble second_trial_share {second_trial_share!r}: must lie in [0, 1) (0: no gate)")
    sources = as_sources(source)
    cfg = load_config(config, overrides)
    out = Path(out)
    spec = load_ground_truth(Path(data))
    uri = resolve_uri(cfg.tracking.uri)
    candidates = collect(sources, uri, out, top_n)
    cfg = with_member_decoding(cfg, candidates[0], config, overrides)
    selection = default_selection(selection, candidates)
    recipe = Recipe(max_steps, selection, min_gain, boundary_offsets, second_trial_share)
    started = time.perf_counter()
    logger.info(f"[ensemble] {len(candidates)} candidate(s) from {', '.join(sources)}")
    evaluator = _evaluator(candidates, spec, data, cfg)
    held_out: dict = {}
    procedure, fitted, oof = choose_by_cv(evaluator, folds, seed, recipe, held_out)
    nested_detections, single_detections = held_out_pair(evaluator, folds, seed, recipe, held_out)
    nested = evaluator.score_detections(nested_detections).mean
    single_oof = evaluator.score_detections(single_detections).mean
    gain = _gain(evaluator, nested_detections, single_detections, seed)
    if boundary_offsets:
        gain["boundary_offsets_alone"] = {key: value for key, value in _gain(
            evaluator, held_out[AS_TRAINED + OFFSETS], held_out[AS_TRAINED], seed).items()
            if key in ("mAP", "low", "high")}
    if fold_seeds > 1:
        gain |= fold_seed_spread(gain["mAP"], seed, gains_over_fold_seeds(
            evaluator, folds, range(seed + 1, seed + fold_seeds), recipe))
    several_trials = len(np.unique(evaluator.trials)) > 1
    gate_open = second_trial_strong(evaluator, second_trial_share) if selection == "cv" else None
    if gate_open is False and several_trials:
        logger.info(f"[ensemble] one strong member: no other trial reaches {second_trial_share:g} of its val mAP "
                    "on all of val, so the final fit fuses nothing (the best single member, with its boundary "
                    "offsets unless they lose; --second-trial-share 0 fuses anyway)")
    elif fitted.fell_back:
        logger.info(f"[ensemble] {procedure} weighted one trial's epochs alone: the best single member instead "
                    "(a fusion must span two trials)")
    best_single = int(np.argmax(evaluator.single_scores()))
    ens_result = evaluator.score_detections(evaluator.detections_of(fitted))
    single_result = evaluator.score_fused(evaluator.fused(np.eye(len(candidates))[best_single]))
    metrics = {"ensemble": _metrics(ens_result) | {"oof_val_mAP": oof[procedure], "nested_oof_val_mAP": nested,
                                                   "procedure": procedure, "fusion": fitted.fusion,
                                                   "fell_back_to_best_single": fitted.fell_back,
                                                   "second_trial_strong": gate_open,
                                                   "boundary_offsets": offsets_json(fitted.boundary_offsets),
                                                   **_fusion_json(fitted, candidates, evaluator.actions,
                                                                   coefficients=False),
                                                   "per_class_AP": ens_result.to_json()["per_class"]},
               "gain": gain | {"measure": "nested out-of-fold ensemble mAP - best single's out-of-fold mAP (as "
                                          "trained: no boundary offsets); "
                                          f"{round(gain['level'] * 100)}% bootstrap interval over val videos"},
               "best_single": _metrics(single_result) | {"oof_val_mAP": single_oof,
                                                          "run_id": candidates[best_single].run_id},
               "oof_val_mAP_by_procedure": oof, "boundary_offsets": "class" if boundary_offsets else "none",
               "selection": selection, "min_gain": min_gain, "second_trial_share": second_trial_share,
               "folds": min(folds, len(evaluator.videos)),
               "evaluations": evaluator.calls, "seconds": time.perf_counter() - started}
    if boundary_offsets:
        metrics["best_single"]["oof_val_mAP_with_boundary_offsets"] = oof[AS_TRAINED + OFFSETS]
    write_outputs(out, candidates, fitted, evaluator, metrics, cfg, spec, sources,
                  {"val_out_of_fold.json": nested_detections, "val_out_of_fold_best_single.json": single_detections})
    _log_summary(metrics, fold_seeds)
    _log_mlflow(uri, cfg.tracking.experiment, out, metrics, sources[0])
    return {"out": str(out), **metrics}


def modalities_of(candidates: list[Candidate]) -> set[str]:
    """The modalities (``data.modalities``) the candidates were trained on (video where a run's config says
    none)."""
    return {str(c.val.meta.get("config", {}).get("data.modalities", "video")) for c in candidates}


def default_selection(selection: str, candidates: list[Candidate]) -> str:
    """``selection``; "auto" is "cv" over candidates of one modality and ``CROSS_MODAL`` (classmix) over candidates
    of several: there the members' strengths differ class by class, and choosing among the procedures fold by
    fold cost more than it won (docs/performance.md, "Sight and sound")."""
    if selection != "auto":
        return selection
    modalities = modalities_of(candidates)
    if len(modalities) < 2:
        return "cv"
    logger.info(f"[ensemble] the candidates span modalities {', '.join(sorted(modalities))}: selection "
                f"{CROSS_MODAL} (--selection cv compares the procedures instead)")
    return CROSS_MODAL


def _fusion_json(fitted, candidates: list[Candidate], actions, coefficients: bool = True) -> dict:
    """``{"class_members": {action: run id}}`` for a classwise ensemble, ``{"class_weights": {column: {run id:
    weight}}}`` (columns: "background" and the actions) for a classmix one, ``{"stacker": {members, columns,
    coefficients, intercept}}`` for a stacked one (``stacking.Stacker.to_json``; without ``coefficients``, its
    members only), else nothing."""
    if fitted.stacker is not None:
        found = fitted.stacker.to_json([c.run_id for c in candidates], ("background", *actions))
        return {"stacker": found if coefficients else {"members": found["members"]}}
    if fitted.class_weights is not None:
        return {"class_weights": {column: {candidates[m].run_id: round(float(w), 6)
                                           for m, w in enumerate(fitted.class_weights[:, i]) if w != 0}
                                  for i, column in enumerate(("background", *actions))}}
    if fitted.class_members is None:
        return {}
    return {"class_members": {action: candidates[int(member)].run_id
                              for action, member in zip(actions, fitted.class_members, strict=True)}}


def _evaluator(candidates: list[Candidate], spec, data, cfg) -> Evaluator:
    """The candidates' val predictions on one grid, scored against the annotations of their val videos."""
    missing = [v for v in candidates[0].val.video_ids if v not in spec.videos]
    if missing:
        raise CandidateError(f"trial {candidates[0].run_id}: val videos {missing[:5]} are not in {data}")
    if len(candidates[0].val.video_ids) < 2:
        raise CandidateError(f"trial {candidates[0].run_id}: the ensemble needs at least 2 val videos (it "
                             f"cross-validates over them); found {len(candidates[0].val.video_ids)}")
    videos = align([c.val for c in candidates])
    gt = ground_truth_segments(spec, None)
    keep = np.isin(gt.video.astype(str), [v.video_id for v in videos])
    gt = type(gt)(gt.video[keep], gt.label[keep], gt.start[keep], gt.end[keep], gt.score[keep])
    trials = {trial: i for i, trial in enumerate(dict.fromkeys(c.trial_id for c in candidates))}
    return Evaluator(videos, gt, candidates[0].val.actions, cfg.eval, placements=placements_of(spec),
                     trials=[trials[c.trial_id] for c in candidates])


def _gain(evaluator: Evaluator, found, single, seed: int) -> dict:
    return bootstrap_gain(evaluator.scored_truth, evaluator.scored(found), evaluator.scored(single),
                          evaluator.thresholds, seed=seed)


def _log_summary(metrics: dict, fold_seeds: int) -> None:
    ens, single, gain = metrics["ensemble"], metrics["best_single"], metrics["gain"]
    if fold_seeds > 1:
        logger.info(f"[ensemble] gain over {fold_seeds} fold seeds: mean {gain['fold_seed_mean']:+.4f}, "
                    f"min {gain['fold_seed_min']:+.4f}, max {gain['fold_seed_max']:+.4f}")
    if "boundary_offsets_alone" in gain:
        alone = gain["boundary_offsets_alone"]
        logger.info(f"[ensemble] boundary offsets alone (best single): {alone['mAP']:+.4f} "
                    f"[{alone['low']:+.4f}, {alone['high']:+.4f}]; offsets {ens['boundary_offsets']}")
    logger.info(f"[ensemble] ensemble ({ens['procedure']}) val_mAP {ens['val_mAP']:.4f} (oof {ens['oof_val_mAP']:.4f}, "
                f"nested {ens['nested_oof_val_mAP']:.4f}) vs best single {single['val_mAP']:.4f} (oof "
                f"{single['oof_val_mAP']:.4f}): gain {gain['mAP']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]")


def fold_seed_spread(gain: float, seed: int, others: list[dict]) -> dict:
    """The gain of every fold seed (``seed``'s first) and their mean, min and max."""
    rows = [{"seed": seed, "mAP": gain}, *others]
    values = [row["mAP"] for row in rows]
    return {"by_fold_seed": rows, "fold_seed_mean": float(np.mean(values)), "fold_seed_min": min(values),
            "fold_seed_max": max(values)}


# how a member's probabilities become segments and are scored; how it predicted them (grid offsets, frame phases,
# batch size) is its own: its files hold the result, and the ensemble (whose model.output may differ) predicts nothing
MEMBER_KEYS = {f"eval.{key}" for key in (*DECODING_KEYS, "tiou_thresholds", "bin_seconds")}


def with_member_decoding(cfg, best: Candidate, config, overrides):
    """The decoding (``eval.*``) the sweep's best member ran with, except keys that ``config`` or ``overrides``
    set (MEMBER_KEYS: decoding and scoring only): fused probabilities are decoded as their members were
    tuned to be. A member's predictions record the decoding its run chose among ``eval.alternatives``; the
    ensemble decodes one way, so it keeps no alternatives."""
    flat = overrides if isinstance(overrides, dict) else parse_overrides(overrides or ())
    explicit = set(flat) | ({f"eval.{k}" for k in (read_yaml(config).get("eval") or {})} if config else set())
    known = set(cfg.flat())
    member_eval = {k: v for k, v in best.params.items() if k in MEMBER_KEYS and k in known and k not in explicit}
    return cfg.with_overrides({**member_eval, "eval.alternatives": None})


OUTPUTS = ("ensemble.json", "metrics.json", "submission.csv", "detections", "weights.png", "map_vs_size.png",
           "per_class_ap_single_vs_ensemble.png", "map_vs_tiou.png", "per_class_ap.png", "timeline.png")


def remove_previous_outputs(out: Path) -> None:
    """A rerun into the same folder leaves nothing of the previous run (e.g. its submission when this one has
    no test predictions)."""
    import shutil

    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def write_outputs(out: Path, candidates: list[Candidate], fitted, evaluator: Evaluator, metrics: dict, cfg,
                  spec, sources: list[str], out_of_fold: dict | None = None) -> None:
    """ensemble.json, metrics.json, detections/ (val and test; ``out_of_fold``: file name -> the out-of-fold
    detections the gain compares, e.g. the nested ensemble's and the best single's), submission.csv, plots."""
    out.mkdir(parents=True, exist_ok=True)
    remove_previous_outputs(out)
    temperatures = fitted.temperatures if fitted.temperatures is not None else np.ones(len(candidates))
    members = [{"run_id": c.run_id, "weight": float(w), "temperature": float(t), "val_mAP": c.val_map,
                "source": c.source, "interval_seconds": c.val.meta.get("interval_seconds"),
                "view": c.val.meta.get("view"), "params": c.params}
               for c, w, t in zip(candidates, fitted.weights, temperatures, strict=True) if w > 0]
    spec_json = {"sweep": sources[0], "sweeps": sources, "procedure": metrics["ensemble"]["procedure"], "fusion": fitted.fusion,
                 "fusions_compared": {name: oof for name, oof in metrics["oof_val_mAP_by_procedure"].items()
                                      if name in ("greedy+refine", "greedy+refine/segments")},
                 "members": members, "grid": "union of member interval boundaries",
                 "boundary_offsets": offsets_json(fitted.boundary_offsets),
                 **_fusion_json(fitted, candidates, evaluator.actions),
                 "decode": cfg.eval.model_dump(mode="json"), "selection_history": fitted.history}
    write_json_atomic(out / "ensemble.json", spec_json)
    write_json_atomic(out / "metrics.json", metrics)
    write_detections(_detections_json(evaluator, fitted), out / "detections" / "val.json")
    video_ids = [v.video_id for v in evaluator.videos]
    for name, found in (out_of_fold or {}).items():
        write_detections(segments_to_detection_dict(found, video_ids), out / "detections" / name)
    chosen = [c for c, w in zip(candidates, fitted.weights, strict=True) if w > 0]
    if all(c.test is not None for c in chosen) and chosen:
        test_eval = Evaluator(align([c.test for c in chosen]), evaluator.gt, evaluator.actions, cfg.eval)
        chosen_members = fitted.weights > 0
        weights = fitted.weights[chosen_members]
        temperatures = None if fitted.temperatures is None else fitted.temperatures[chosen_members]
        columns = None if fitted.class_weights is None else fitted.class_weights[chosen_members]
        owners = None if fitted.class_members is None else np.searchsorted(np.flatnonzero(chosen_members),
                                                                            fitted.class_members)
        stacker = None if fitted.stacker is None else fitted.stacker.reindexed(
            np.searchsorted(np.flatnonzero(chosen_members), fitted.stacker.members))
        test_dets = _detections_json(test_eval, type(fitted)(weights / weights.sum(), fitted.score,
                                                             fusion=fitted.fusion, temperatures=temperatures,
                                                             boundary_offsets=fitted.boundary_offsets,
                                                             class_members=owners, class_weights=columns,
                                                             stacker=stacker))
        write_detections(test_dets, out / "detections" / "test.json")
        durations = {v: spec.videos[v].duration for v in test_dets if v in spec.videos}
        write_submission(submission_rows(test_dets, durations, spec.taxonomy.actions, cfg.eval.bin_seconds or 10.0,
                                         placements=placements_of(spec)), out / "submission.csv")
    _plots(out, members, fitted.history)
    single = [c.run_id for c in candidates].index(metrics["best_single"]["run_id"])
    _compare_plots(out, evaluator, {"best single": SelectionResult(np.eye(len(candidates))[single], 0.0),
                                    "ensemble": fitted}, spec)


def _plots(out: Path, members: list[dict], history: list) -> None:
    bar_plot({m["run_id"]: m["weight"] for m in members}, out / "weights.png", "ensemble weights", "weight")
    if history:
        line_plot(range(1, len(history) + 1), history, out / "map_vs_size.png", "val mAP vs greedy steps",
                  "members added", "val mAP")


def _compare_plots(out: Path, evaluator: Evaluator, weights: dict[str, np.ndarray], spec) -> None:
    per_class = {name: evaluator.score_detections(evaluator.detections_of(chosen)).to_json()["per_class"]
                 for name, chosen in weights.items()}
    grouped_bar_plot(per_class, out / "per_class_ap_single_vs_ensemble.png", "per-class AP: best single vs ensemble")
    detection_plots(out, spec)


def _log_mlflow(uri: str, experiment: str, out: Path, metrics: dict, source: str) -> None:
    sweep_state = Path(source) / "sweep.json"
    parent = json.loads(sweep_state.read_text()).get("parent_run_id") if sweep_state.exists() else source
    try:
        log_ensemble_run(uri, experiment, out, metrics, str(parent))
    except Exception as error:  # tracking is a record, not a reason to lose the ensemble
        logger.info(f"[ensemble] warning: could not log to MLflow {uri}: {error}")
