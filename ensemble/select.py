"""Member selection and weights.

1. Greedy forward selection with replacement (Caruana et al. 2004): start from the
   ``init_size`` best single members (sorted initialisation), then repeatedly add
   the member whose addition maximises val mAP, keeping running sums so each try
   is one add + decode + mAP; the best prefix is kept. Ties: lowest member index.
2. Refinement on the simplex: coordinate ascent that scales one member's weight at
   a time by a few factors and keeps strict improvements.
3. k-fold cross-validation over val videos: weights fitted on k-1 folds are scored
   on the held-out fold, giving an out-of-fold mAP beside the in-sample one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fuse import Evaluator


@dataclass(frozen=True)
class SelectionResult:
    weights: np.ndarray  # (members,), sums to 1
    score: float
    history: list = field(default_factory=list)  # val mAP after each greedy step


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
        step_scores = np.full(members, -np.inf)
        total = counts.sum() + 1
        for m in range(members):
            step_scores[m] = evaluator.score_fused([(r + v.probs[m]) / total
                                                    for r, v in zip(running, evaluator.videos, strict=True)]).mean
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
    members = evaluator.videos[0].probs.shape[0]
    singles = np.array([evaluator.score(np.eye(members)[m]) for m in range(members)])
    greedy = greedy_select(evaluator, singles, max_steps=max_steps)
    if not refine:
        return greedy
    refined = refine_weights(evaluator, greedy.weights, greedy.score)
    return SelectionResult(refined.weights, refined.score, greedy.history)


def folds_of(video_ids: list[str], k: int, seed: int) -> list[set[str]]:
    rng = np.random.default_rng(seed)
    shuffled = np.array(sorted(video_ids))[rng.permutation(len(video_ids))]
    return [set(part.tolist()) for part in np.array_split(shuffled, k) if len(part)]


def cross_validate(evaluator: Evaluator, k: int, seed: int, max_steps: int, refine: bool) -> dict:
    """Out-of-fold mAP of the ensemble procedure and of picking the best single member."""
    ids = [v.video_id for v in evaluator.videos]
    k = max(2, min(k, len(ids)))
    members = evaluator.videos[0].probs.shape[0]
    oof_ens, oof_single = [], []
    for held in folds_of(ids, k, seed):
        train = evaluator.subset(set(ids) - held)
        test = evaluator.subset(held)
        fitted = fit_weights(train, max_steps, refine)
        singles = np.array([train.score(np.eye(members)[m]) for m in range(members)])
        oof_ens.append(test.fused(fitted.weights))
        oof_single.append(test.fused(np.eye(members)[int(np.argmax(singles))]))
    order = [v.video_id for fold in folds_of(ids, k, seed) for v in evaluator.subset(fold).videos]
    full = evaluator.subset(set(ids))
    position = {vid: i for i, vid in enumerate(order)}
    reorder = [position[v.video_id] for v in full.videos]
    ens = [p for fold in oof_ens for p in fold]
    single = [p for fold in oof_single for p in fold]
    return {"oof_mAP": full.score_fused([ens[i] for i in reorder]).mean,
            "oof_best_single_mAP": full.score_fused([single[i] for i in reorder]).mean, "folds": k}
