"""Member selection and weights.

1. Greedy forward selection with replacement (Caruana et al. 2004): start from the
   ``init_size`` best single members (sorted initialisation), then repeatedly add
   the member whose addition maximises val mAP, keeping running sums so each try
   is one add + decode + mAP; the best prefix is kept. Ties: lowest member index.
2. Refinement on the simplex: coordinate ascent that scales one member's weight at
   a time by a few factors and keeps strict improvements.
3. Per-class boundary offsets (``boundaries``) fitted on the same videos as the weights.
4. k-fold cross-validation over val videos: weights fitted on k-1 folds are scored
   on the held-out fold, giving an out-of-fold mAP beside the in-sample one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm import tqdm

from tal_core.errors import UserError
from tal_core.scoring.metrics import Segments

from .boundaries import Offsets, apply_offsets, fit_offsets
from .defaults import MIN_GAIN
from .fuse import Evaluator
from .gain import concat_segments


@dataclass(frozen=True)
class SelectionResult:
    weights: np.ndarray  # (members,), sums to 1
    score: float
    history: list = field(default_factory=list)  # val mAP after each greedy step
    fusion: str = "probabilities"  # how the members are combined: probabilities | segments (see Evaluator.detections_for)
    temperatures: np.ndarray | None = None  # per-member calibration applied before fusion (None: none)
    boundary_offsets: Offsets | None = None  # per-class edge offsets applied to the fused detections (None: none)


@dataclass(frozen=True)
class Recipe:
    """How the ensemble chooses its members: greedy steps; "cv" (the procedure with the best out-of-fold mAP) or
    a procedure's name; the out-of-fold margin a fusion must win by over the best single member; whether each
    procedure's detections get per-class boundary offsets fitted on the videos its weights were fitted on."""
    max_steps: int = 12
    selection: str = "cv"
    min_gain: float = MIN_GAIN
    boundary_offsets: bool = True

    def procedures(self) -> dict:
        return procedures(self.max_steps, self.boundary_offsets)


def greedy_select(evaluator: Evaluator, single_scores: np.ndarray, max_steps: int = 12,
                  init_size: int = 1) -> SelectionResult:
    members = len(single_scores)
    order = np.lexsort((np.arange(members), -single_scores))
    counts = np.zeros(members)
    counts[order[:init_size]] = 1
    running = [np.tensordot(counts, v.probs, axes=1) for v in evaluator.videos]
    best_counts, best_score = counts.copy(), evaluator.score_fused([r / counts.sum() for r in running]).mean
    history = [best_score]
    for _ in range(max_steps):
        total = counts.sum() + 1

        def with_member(m: int, running=running, total=total) -> float:
            return evaluator.score_fused([(r + v.probs[m]) / total
                                          for r, v in zip(running, evaluator.videos, strict=True)]).mean

        step_scores = evaluator.score_each(with_member, range(members))
        pick = int(np.argmax(step_scores))
        counts[pick] += 1
        running = [r + v.probs[pick] for r, v in zip(running, evaluator.videos, strict=True)]
        history.append(float(step_scores[pick]))
        if step_scores[pick] > best_score + 1e-12:
            best_score, best_counts = float(step_scores[pick]), counts.copy()
    return SelectionResult(best_counts / best_counts.sum(), best_score, history)


def refine_weights(evaluator: Evaluator, weights: np.ndarray, score: float, passes: int = 2,
                   factors=(0.0, 0.5, 1.5, 2.0)) -> SelectionResult:
    weights = np.asarray(weights, dtype=np.float64).copy()
    for _ in range(passes):
        improved = False
        for m in np.flatnonzero(weights > 0):
            for factor in factors:
                trial = weights.copy()
                trial[m] *= factor
                if trial.sum() <= 0:
                    continue
                trial /= trial.sum()
                value = evaluator.score(trial)
                if value > score + 1e-12:
                    weights, score, improved = trial, value, True
        if not improved:
            break
    return SelectionResult(weights, score)


def fit_weights(evaluator: Evaluator, max_steps: int = 12, refine: bool = True) -> SelectionResult:
    greedy = greedy_select(evaluator, evaluator.single_scores(), max_steps=max_steps)
    if not refine:
        return greedy
    refined = refine_weights(evaluator, greedy.weights, greedy.score)
    return SelectionResult(refined.weights, refined.score, greedy.history)


def folds_of(video_ids: list[str], k: int, seed: int) -> list[set[str]]:
    rng = np.random.default_rng(seed)
    shuffled = np.array(sorted(video_ids))[rng.permutation(len(video_ids))]
    return [set(part.tolist()) for part in np.array_split(shuffled, k) if len(part)]


def best_single(evaluator: Evaluator) -> SelectionResult:
    singles = evaluator.single_scores()
    members = len(singles)
    pick = int(np.argmax(singles))
    return SelectionResult(np.eye(members)[pick], float(singles[pick]))


def top_k_average(evaluator: Evaluator, k: int = 3) -> SelectionResult:
    singles = evaluator.single_scores()
    members = len(singles)
    weights = np.zeros(members)
    weights[np.lexsort((np.arange(members), -singles))[:k]] = 1.0 / min(k, members)
    return SelectionResult(weights, evaluator.score(weights))


def with_segment_fusion(evaluator: Evaluator, chosen: SelectionResult) -> SelectionResult:
    """The same members and weights, combined by pooling their detections (``segment_fusion``)."""
    score = evaluator.score_detections(evaluator.detections_for(chosen.weights, "segments")).mean
    return SelectionResult(chosen.weights, score, chosen.history, fusion="segments")


CMAES_MEMBERS = 8  # CMA-ES searches the weights of this many best single members
CMAES_TRIALS = 60


def cmaes_weights(evaluator: Evaluator, members: int = CMAES_MEMBERS, trials: int = CMAES_TRIALS,
                  seed: int = 0) -> SelectionResult:
    """Weights of the best ``members`` single members searched by CMA-ES (Optuna's CmaEsSampler) on
    normalised weights (raw values in [0, 1], divided by their sum: without it CMA-ES overfits, Purucker & Beel
    2023), starting from the best single member and from equal weights."""
    import optuna

    singles = evaluator.single_scores()
    pool = np.lexsort((np.arange(len(singles)), -singles))[:members]
    if len(pool) < 2:
        return best_single(evaluator)

    def weights_of(raw: np.ndarray) -> np.ndarray:
        full = np.zeros(len(singles))
        full[pool] = raw / raw.sum() if raw.sum() > 0 else np.eye(len(pool))[0]
        return full

    def objective(trial) -> float:
        return evaluator.score(weights_of(np.array([trial.suggest_float(f"w{i}", 0.0, 1.0) for i in range(len(pool))])))

    sampler = optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    quiet = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per weight vector is no progress report
    try:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.enqueue_trial({f"w{i}": 1.0 if i == 0 else 0.0 for i in range(len(pool))})
        study.enqueue_trial({f"w{i}": 0.5 for i in range(len(pool))})
        study.optimize(objective, n_trials=trials)
    finally:
        optuna.logging.set_verbosity(quiet)
    best = np.array([study.best_params[f"w{i}"] for i in range(len(pool))])
    return SelectionResult(weights_of(best), float(study.best_value))


def calibrated(evaluator: Evaluator, max_steps: int) -> SelectionResult:
    """Temperatures fitted on these videos, then greedy+refine on the tempered probabilities."""
    temperatures = evaluator.fit_temperatures()
    chosen = fit_weights(evaluator.with_temperatures(temperatures), max_steps, refine=True)
    return SelectionResult(chosen.weights, chosen.score, chosen.history, temperatures=temperatures)


def with_boundary_offsets(evaluator: Evaluator, chosen: SelectionResult) -> SelectionResult:
    """``chosen`` with per-class boundary offsets fitted on these videos (``boundaries``): of each class's median
    offsets, those that raise the class's AP here (a median is not an mAP optimum: offsets that would cost a class
    AP on the videos they were fitted on are left out)."""
    found = evaluator.detections_of(chosen)
    offsets = fit_offsets(found, evaluator.gt)
    if not offsets:
        return chosen
    before = evaluator.score_detections(found).to_json()["per_class"]
    after = evaluator.score_detections(apply_offsets(found, offsets, evaluator.video_ends))
    after_per_class = after.to_json()["per_class"]
    kept = {label: moved for label, moved in offsets.items()
            if after_per_class.get(label, 0.0) > before.get(label, 0.0)}
    if not kept:
        return chosen
    if kept != offsets:  # the kept ones moved on the detections already decoded
        after = evaluator.score_detections(apply_offsets(found, kept, evaluator.video_ends))
    return replace(chosen, boundary_offsets=kept, score=after.mean)


def procedures(max_steps: int, boundary_offsets: bool = True) -> dict:
    """The ways of choosing weights (and the fusion) that cross-validation compares (names are reported).
    ``greedy+refine/segments`` takes greedy+refine's weights (computed once per set of videos) and fuses the
    members' detections instead of their probabilities; ``calibrated+greedy+refine`` tempers each member's
    probabilities first (``calibrate``); ``cmaes`` searches normalised weights of the best members with CMA-ES.
    With ``boundary_offsets`` every procedure's detections then get per-class boundary offsets fitted on the
    same videos (``with_boundary_offsets``)."""
    found = _procedures(max_steps)
    if not boundary_offsets:
        return found
    return {name: (lambda ev, fit=fit: with_boundary_offsets(ev, fit(ev))) for name, fit in found.items()}


def _procedures(max_steps: int) -> dict:
    fitted: dict[tuple, SelectionResult] = {}

    def greedy_refine(ev: Evaluator) -> SelectionResult:
        key = tuple(v.video_id for v in ev.videos)
        if key not in fitted:
            fitted[key] = fit_weights(ev, max_steps, refine=True)
        return fitted[key]

    return {
        "greedy+refine": greedy_refine,
        "greedy": lambda ev: fit_weights(ev, max_steps, refine=False),
        "top3_average": lambda ev: top_k_average(ev, 3),
        "best_single": best_single,
        "greedy+refine/segments": lambda ev: with_segment_fusion(ev, greedy_refine(ev)),
        "calibrated+greedy+refine": lambda ev: calibrated(ev, max_steps),
        "cmaes": cmaes_weights,
    }


def best_procedure(oof: dict[str, float], order: list[str], min_gain: float = 0.0) -> str:
    """Highest out-of-fold mAP; ties go to the procedure listed first. With ``min_gain``, ``best_single`` stays
    unless the best procedure beats its out-of-fold mAP by at least that much: on a few val videos a fusion
    that wins by less has mostly won by luck (its weights were fitted on videos as few as the ones it is
    scored on), and the lone best member cannot overfit its weights."""
    best = max(oof, key=lambda n: (oof[n], -order.index(n)))
    if "best_single" in oof and oof[best] < oof["best_single"] + min_gain:
        return "best_single"
    return best


def nested_cross_validate(evaluator: Evaluator, k: int, seed: int, recipe: Recipe = Recipe(),
                          inner_k: int = 3) -> float:
    """Out-of-fold mAP of the whole recipe, procedure choice included: in each outer fold the procedure is
    chosen by an inner cross-validation on the outer training videos only, fitted there, and applied to the
    held-out videos. Unbiased where the plain figure of the best procedure is optimistic (it was chosen on the
    same held-out folds it is scored on)."""
    return evaluator.score_detections(nested_out_of_fold(evaluator, k, seed, recipe, inner_k)).mean


def nested_out_of_fold(evaluator: Evaluator, k: int, seed: int, recipe: Recipe = Recipe(),
                       inner_k: int = 3) -> Segments:
    """The held-out detections behind ``nested_cross_validate`` (every val video's, each from the outer fold
    that held it out)."""
    found = recipe.procedures()

    def choose_and_fit(train: Evaluator) -> SelectionResult:
        if len(train.videos) < 2:  # too few videos to cross-validate inside: the first procedure
            return next(iter(found.values()))(train)
        inner = {name: cross_validate(train, inner_k, seed + 1, fit) for name, fit in found.items()}
        return found[best_procedure(inner, list(found), recipe.min_gain)](train)

    return out_of_fold(evaluator, k, seed, choose_and_fit)


AS_TRAINED = "best_single (as trained)"  # held_out's name for the best single member without boundary offsets


def held_out_pair(evaluator: Evaluator, k: int, seed: int, recipe: Recipe = Recipe(),
                  held_out: dict | None = None) -> tuple[Segments, Segments]:
    """The out-of-fold detections the gain compares for one draw of the folds: the recipe's (``selection`` "cv":
    the nested recipe; a named procedure: its own) and the best single member's as it was trained (no boundary
    offsets: what the sweep alone would submit). ``held_out``: out-of-fold detections already made with this
    ``seed`` (``choose_by_cv``), by name; the ones made here are added."""
    held_out = held_out if held_out is not None else {}

    def detections_of(name: str) -> Segments:
        if name not in held_out:
            fit = best_single if name == AS_TRAINED else recipe.procedures()[name]
            held_out[name] = out_of_fold(evaluator, k, seed, fit)
        return held_out[name]

    found = (nested_out_of_fold(evaluator, k, seed, recipe) if recipe.selection == "cv"
             else detections_of(recipe.selection))
    return found, detections_of(AS_TRAINED if recipe.boundary_offsets else "best_single")


def gains_over_fold_seeds(evaluator: Evaluator, k: int, seeds, recipe: Recipe = Recipe()) -> list[dict]:
    """The ensemble's gain over the best single member (both out of fold) again for other draws of the folds:
    ``[{"seed", "mAP"}]`` per fold seed. With 16 val videos, which videos share a fold moves the gain by about a
    hundredth; this is that spread."""
    rows = []
    for seed in seeds:
        found, single = held_out_pair(evaluator, k, seed, recipe)
        rows.append({"seed": seed, "mAP": evaluator.score_detections(found).mean
                     - evaluator.score_detections(single).mean})
    return rows


def cross_validate(evaluator: Evaluator, k: int, seed: int, fit) -> float:
    """Out-of-fold mAP of a weight-choosing procedure: weights fitted on k-1 folds of val videos,
    applied to the held-out fold; the held-out detections of all folds are scored together."""
    return evaluator.score_detections(out_of_fold(evaluator, k, seed, fit)).mean


def out_of_fold(evaluator: Evaluator, k: int, seed: int, fit) -> Segments:
    """Detections of every val video made by weights fitted without it (k folds over val videos)."""
    ids = [v.video_id for v in evaluator.videos]
    k = max(2, min(k, len(ids)))
    parts = []
    for held in folds_of(ids, k, seed):
        chosen = fit(evaluator.subset(set(ids) - held))  # temperatures too are fitted on the training folds
        parts.append(evaluator.subset(held).detections_of(chosen))
    return concat_segments(parts)


def choose_by_cv(evaluator: Evaluator, k: int, seed: int, recipe: Recipe = Recipe(), held_out: dict | None = None):
    """Out-of-fold mAP of every procedure; the chosen one (best OOF, or the one named) fitted on all of val.
    ``held_out``, when given, receives each procedure's out-of-fold detections (for the gain's interval)."""
    found = recipe.procedures()
    if recipe.selection != "cv" and recipe.selection not in found:
        raise UserError(f"ensemble selection {recipe.selection!r}: choose cv or one of {sorted(found)}")
    oof = {}
    for name, fit in tqdm(found.items(), desc="cross-validation", unit="procedure", file=sys.stderr, disable=None,
                          leave=False):
        detections = out_of_fold(evaluator, k, seed, fit)
        oof[name] = evaluator.score_detections(detections).mean
        if held_out is not None:
            held_out[name] = detections
    name = best_procedure(oof, list(found), recipe.min_gain) if recipe.selection == "cv" else recipe.selection
    return name, found[name](evaluator), oof
