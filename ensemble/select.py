"""Member selection and weights.

0. Screening: a weight search runs over at most ``SCREEN`` members, chosen by their single scores on the
   videos the weights are fitted on (so inside cross-validation on the training folds only): half the pool the
   best members by mAP, then the best member of each class, then mAP order again. Each member is decoded
   once per ensemble and scored once per set of videos; what a search costs beyond that does not grow with
   the number of candidates.
1. Greedy forward selection with replacement (Caruana et al. 2004): start from the
   ``init_size`` best single members (sorted initialisation), then repeatedly add
   the member whose addition maximises val mAP, keeping running sums so each try
   is one add + decode + mAP; the best prefix is kept. Ties: lowest member index.
2. Refinement on the simplex: coordinate ascent that scales one member's weight at
   a time by a few factors and keeps strict improvements.
3. Per-class boundary offsets (``boundaries``) fitted on the same videos as the weights.
4. k-fold cross-validation over val videos: weights fitted on k-1 folds are scored
   on the held-out fold, giving an out-of-fold mAP beside the in-sample one.
5. First, do no harm: the best single member (``best_single``: no weights; with its offsets unless they lose) is
   always a procedure, and the reference every other one must beat out of fold by ``min_gain`` to be chosen; a
   procedure's boundary offsets (``<name>+offsets``) are kept unless they lose to the same procedure without
   them out of fold by more than ``min_gain`` (``with_offsets``); under "cv" a fusion must span two trials
   (``across_trials``: one trial's epochs alone are the best single), and only beside a second strong trial
   (``second_trial_strong``: with one strong member every fusion is the best single). Over candidates of several
   modalities the default is ``classmix`` (``run.default_selection``), which keeps the best single's columns
   unless a class gains the margin.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm import tqdm

from tal_core.errors import UserError
from tal_core.scoring.metrics import Segments

from .boundaries import Offsets, apply_offsets, fit_offsets
from .calibrate import cell_labels
from .defaults import MIN_GAIN, SECOND_TRIAL_SHARE
from .fuse import Evaluator
from .gain import concat_segments
from .stacking import STACK_L2, STACK_MEMBERS, Stacker, fit_stacker


@dataclass(frozen=True)
class SelectionResult:
    weights: np.ndarray  # (members,), sums to 1
    score: float
    history: list = field(default_factory=list)  # val mAP after each greedy step
    fusion: str = "probabilities"  # how the members are combined: probabilities | segments (see Evaluator.detections_for)
    temperatures: np.ndarray | None = None  # per-member calibration applied before fusion (None: none)
    boundary_offsets: Offsets | None = None  # per-class edge offsets applied to the fused detections (None: none)
    class_members: np.ndarray | None = None  # fusion "classwise": per action class (evaluator.actions order), its member
    class_weights: np.ndarray | None = None  # fusion "classmix": (members, 1 + classes) weight of each probability column
    stacker: Stacker | None = None  # fusion "stacked": the logistic regression over the members' log-probabilities
    fell_back: bool = False  # a fusion replaced by the best single (``across_trials``): it weighted one trial's epochs
    # alone, or no second trial was strong enough to fuse with (``second_trial_strong``)


@dataclass(frozen=True)
class Recipe:
    """How the ensemble chooses its members: greedy steps; "cv" (the procedure with the best out-of-fold mAP) or
    a procedure's name; the out-of-fold margin a fusion must win by over the best single member; whether each
    procedure's detections get per-class boundary offsets fitted on the videos its weights were fitted on; under
    "cv", the share of the best member's mAP a second trial must reach before any fusion is fitted
    (``second_trial_strong``)."""
    max_steps: int = 12
    selection: str = "cv"
    min_gain: float = MIN_GAIN
    boundary_offsets: bool = True
    second_trial_share: float = SECOND_TRIAL_SHARE

    def procedures(self) -> dict:
        """The procedures this recipe compares: every one but the opt-in ones (``OPT_IN``), and the one named by
        the selection (with "cv": none). With "cv" a fusion must span two trials (``across_trials``); a procedure
        named is fitted as it is."""
        found = procedures(self.max_steps, self.boundary_offsets, across=self.selection == "cv",
                           second_trial_share=self.second_trial_share)
        return {name: fit for name, fit in found.items()
                if name.removesuffix(OFFSETS) not in OPT_IN or name.removesuffix(OFFSETS) == self.selection}


def greedy_select(evaluator: Evaluator, single_scores: np.ndarray, max_steps: int = 12,
                  init_size: int = 1, pool=None) -> SelectionResult:
    """``pool``: the members it may add (default all; ``fit_weights`` passes the screened ones)."""
    members = len(single_scores)
    pool = np.arange(members) if pool is None else np.sort(np.asarray(pool, dtype=np.int64))
    order = pool[np.lexsort((pool, -single_scores[pool]))]
    counts = np.zeros(members)
    counts[order[:init_size]] = 1
    running = evaluator.fused(counts)  # float32 sums
    best_counts, best_score = counts.copy(), evaluator.score_fused([r / counts.sum() for r in running]).mean
    history = [best_score]
    for _ in range(max_steps):
        total = counts.sum() + 1

        def with_member(m: int, running=running, total=total) -> float:
            return evaluator.score_fused([(r + v.probs[m]) / total
                                          for r, v in zip(running, evaluator.videos, strict=True)]).mean

        step_scores = evaluator.score_each(with_member, pool)
        step = float(step_scores.max())
        pick = int(pool[np.argmax(step_scores)])
        counts[pick] += 1
        running = [r + v.probs[pick] for r, v in zip(running, evaluator.videos, strict=True)]
        history.append(step)
        if step > best_score + 1e-12:
            best_score, best_counts = step, counts.copy()
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


SCREEN = 8  # members a weight search runs over (``screen``)


def screen(evaluator: Evaluator, size: int = SCREEN) -> np.ndarray:
    """The members a weight search runs over, by their scores alone on the evaluator's videos (ascending
    index): the ``size // 2`` best by mAP, then each class's best member by its AP (ties: the better mAP),
    strongest first, then mAP order again; all members when there are at most ``size``."""
    singles = evaluator.single_scores()
    members = len(singles)
    if members <= size:
        return np.arange(members)
    ranked = np.lexsort((np.arange(members), -singles))
    rank = np.empty(members, dtype=np.int64)
    rank[ranked] = np.arange(members)
    per_class = evaluator.single_class_ap()
    champions = {int(np.lexsort((rank, -per_class[:, c]))[0]) for c in range(per_class.shape[1])}
    picked = dict.fromkeys(int(m) for m in ranked[:size // 2])
    for m in [*sorted(champions, key=rank.__getitem__), *ranked.tolist()]:
        if len(picked) >= size:
            break
        picked.setdefault(int(m))
    return np.sort(np.array(list(picked), dtype=np.int64))


def fit_weights(evaluator: Evaluator, max_steps: int = 12, refine: bool = True, pool=None) -> SelectionResult:
    """Greedy selection (then refinement) over ``pool`` (default: ``screen``'s members)."""
    pool = screen(evaluator) if pool is None else pool
    greedy = greedy_select(evaluator, evaluator.single_scores(), max_steps=max_steps, pool=pool)
    return _refined(evaluator, greedy) if refine else greedy


def _refined(evaluator: Evaluator, greedy: SelectionResult) -> SelectionResult:
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


CLASSWISE_MARGIN = 0.1  # class AP (on the fit videos) a member must beat the best single's by to take that class


def classwise(evaluator: Evaluator, margin: float = CLASSWISE_MARGIN) -> SelectionResult:
    """The best single member's own detections, except for the classes where another member's own AP on these
    videos beats it by ``margin``: those classes take that member's own detections (fusion "classwise"; e.g. a
    sound member for the class that only sound tells). Weights: the share of classes each member owns."""
    singles = evaluator.single_scores()
    best = int(np.argmax(singles))  # the first of equals, as every ranking here
    owners = np.full(len(evaluator.actions), best, dtype=np.int64)
    per_class = evaluator.single_class_ap()
    for column, name in enumerate(evaluator.single_classes()):
        champion = int(np.argmax(per_class[:, column]))  # ties: the lowest index
        if per_class[champion, column] >= per_class[best, column] + margin:
            owners[evaluator.actions.index(name)] = champion
    chosen = SelectionResult(np.bincount(owners, minlength=evaluator.members) / len(owners), 0.0,
                             fusion="classwise", class_members=owners)
    return replace(chosen, score=evaluator.score_detections(evaluator.detections_of(chosen)).mean)


CLASSMIX_SHARES = (0.25, 0.5, 0.75, 1.0)  # the shares of a class's probabilities that classmix gives its champion
CLASSMIX_MARGIN = 0.05  # class AP (on the fit videos) a mix must beat the best single's by to be kept


def class_mix(evaluator: Evaluator, base: SelectionResult | None = None, shares=CLASSMIX_SHARES,
              margin: float = CLASSMIX_MARGIN) -> SelectionResult:
    """A base ensemble's probabilities (``base``: weights fused over untempered probabilities; default: the best
    single member), each action class's column mixed with that class's champion's (the member whose own AP for
    the class is best on these videos; for a one-member base, the best of the others) where a share of ``shares``
    raises the class's AP here by ``margin`` over the base's (the smallest share of the best AP; background: the
    base's). One evaluation per share (every class mixed at once) and one of the mix found: the classes still
    compete for each cell, so the mix is kept only where it scores no lower than the base here. Fusion
    "classmix": per-column weights (``class_weights``); a member's weight is its mean share over the columns.
    The soft ``classwise``."""
    if evaluator.members < 2:
        return best_single(evaluator)
    base = base if base is not None else best_single(evaluator)
    base_weights = np.asarray(base.weights, dtype=np.float64)
    index = {name: i for i, name in enumerate(evaluator.actions)}
    if base.fusion == "probabilities" and np.count_nonzero(base_weights) == 1:  # a member alone: its own APs
        alone = int(np.flatnonzero(base_weights)[0])
        base_ap = dict(zip(evaluator.single_classes(), evaluator.single_class_ap()[alone], strict=True))
        eligible = np.arange(evaluator.members) != alone
    else:
        found = evaluator.score_detections(evaluator.detections_for(base_weights))
        base_ap = dict(zip(found.classes, found.ap.mean(axis=0), strict=True))
        eligible = np.ones(evaluator.members, dtype=bool)
    # a class without truth here keeps the best single as its champion in the trials, and is never mixed
    champions = np.full(len(evaluator.actions), int(np.argmax(evaluator.single_scores())), dtype=np.int64)
    for column, name in enumerate(evaluator.single_classes()):
        champions[index[name]] = int(np.argmax(np.where(eligible, evaluator.single_class_ap()[:, column], -np.inf)))
    to_reach = {index[name]: ap + margin for name, ap in base_ap.items()}
    kept = np.zeros(len(evaluator.actions))

    def per_class(share: float) -> dict[int, float]:
        columns = class_mix_weights(base_weights, champions, np.full(len(champions), share))
        found = evaluator.score_detections(evaluator.detections_for(base_weights, "classmix", class_weights=columns))
        return {index[n]: float(ap) for n, ap in zip(found.classes, found.ap.mean(axis=0), strict=True)}

    for share, aps in zip(shares, evaluator.each(per_class, shares), strict=True):
        for i, ap in aps.items():
            if ap >= to_reach.get(i, np.inf):  # ties: the smaller share (tried first)
                to_reach[i], kept[i] = np.nextafter(ap, np.inf), share
    if not kept.any():
        return base
    columns = class_mix_weights(base_weights, champions, kept)
    chosen = SelectionResult(columns.mean(axis=1), 0.0, base.history, fusion="classmix", class_weights=columns)
    chosen = replace(chosen, score=evaluator.score_detections(evaluator.detections_of(chosen)).mean)
    return chosen if chosen.score >= base.score else base  # the classes compete for cells: the mix as a whole


def class_mix_weights(base: np.ndarray, champions: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """(members, 1 + classes) column weights: ``base`` (members,) for the background, and for each action class
    ``shares`` of its champion's column plus the rest of the base's."""
    columns = np.repeat(np.asarray(base, dtype=np.float64)[:, None], 1 + len(champions), axis=1)
    classes = np.arange(len(champions)) + 1
    columns[:, classes] *= 1.0 - shares
    columns[champions, classes] += shares
    return columns


def stacked(evaluator: Evaluator, members: int | None = None, l2: float = STACK_L2) -> SelectionResult:
    """A logistic regression over the log-probabilities of ``members`` members screened on these videos
    (default ``STACK_MEMBERS``; ``screen``: the best by mAP, then each class's best, so a member that alone tells
    a class is read), fitted on these videos' cells and pulled toward the best single member as trained
    (``stacking``). Fusion "stacked"; a member's weight is its share of the coefficients."""
    if evaluator.members < 2:
        return best_single(evaluator)
    best = int(np.argmax(evaluator.single_scores()))  # the first of equals, as every ranking here
    size = max(2, members or STACK_MEMBERS)
    chosen = np.array([best, *(int(m) for m in screen(evaluator, size) if m != best)][:size], dtype=np.int64)
    stacker = fit_stacker(evaluator.videos, cell_labels(evaluator.videos, evaluator.gt, evaluator.actions), chosen, l2)
    found = SelectionResult(stacker.member_shares(evaluator.members), 0.0, fusion="stacked", stacker=stacker)
    return replace(found, score=evaluator.score_detections(evaluator.detections_of(found)).mean)


CMAES_MEMBERS = 8  # CMA-ES searches the weights of this many best single members
CMAES_TRIALS = 60
CMAES_BATCH = 8  # weight vectors asked of CMA-ES at a time and scored together (on forked workers)


def cmaes_weights(evaluator: Evaluator, members: int = CMAES_MEMBERS, trials: int = CMAES_TRIALS,
                  seed: int = 0) -> SelectionResult:
    """Weights of the best ``members`` single members searched by CMA-ES (Optuna's CmaEsSampler) on
    normalised weights (raw values in [0, 1], divided by their sum: without it CMA-ES overfits, Purucker & Beel
    2023), starting from the best single member and from equal weights. Weight vectors are asked
    ``CMAES_BATCH`` at a time (CMA-ES samples a generation from one distribution anyway) and scored together."""
    import optuna

    singles = evaluator.single_scores()
    pool = np.lexsort((np.arange(len(singles)), -singles))[:members]
    if len(pool) < 2:
        return best_single(evaluator)

    def weights_of(raw: np.ndarray) -> np.ndarray:
        full = np.zeros(len(singles))
        full[pool] = raw / raw.sum() if raw.sum() > 0 else np.eye(len(pool))[0]
        return full

    names = [f"w{i}" for i in range(len(pool))]
    space = {name: optuna.distributions.FloatDistribution(0.0, 1.0) for name in names}
    sampler = optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    quiet = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per weight vector is no progress report
    try:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.enqueue_trial({f"w{i}": 1.0 if i == 0 else 0.0 for i in range(len(pool))})
        study.enqueue_trial({f"w{i}": 0.5 for i in range(len(pool))})
        for done in range(0, trials, CMAES_BATCH):
            asked = [study.ask(space) for _ in range(min(CMAES_BATCH, trials - done))]
            raw = [np.array([trial.params[name] for name in names]) for trial in asked]
            values = evaluator.score_each(lambda j, raw=raw: evaluator.score(weights_of(raw[j])), range(len(asked)))
            for trial, value in zip(asked, values, strict=True):
                study.tell(trial, float(value))
    finally:
        optuna.logging.set_verbosity(quiet)
    best = np.array([study.best_params[name] for name in names])
    return SelectionResult(weights_of(best), float(study.best_value))


def calibrated(evaluator: Evaluator, max_steps: int) -> SelectionResult:
    """Temperatures of the screened members fitted on these videos, then greedy+refine over those members'
    tempered probabilities (a float32 copy of the screened members only; the others keep temperature 1 and
    weight 0)."""
    pool = screen(evaluator)
    fitted = evaluator.fit_temperatures(pool)
    chosen = fit_weights(evaluator.restricted(pool, fitted), max_steps, refine=True)
    weights, temperatures = np.zeros(evaluator.members), np.ones(evaluator.members)
    weights[pool], temperatures[pool] = chosen.weights, fitted
    return SelectionResult(weights, chosen.score, chosen.history, temperatures=temperatures)


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


OPT_IN = ("classwise", "classmix", "greedy+refine/classmix", "stacked")  # procedures "cv" does not compare (each one more is
# one more chance to win inner folds by luck): named with --selection; docs/ensemble.md says where they pay
CROSS_MODAL = "classmix"  # what "auto" means where the candidates span several modalities (run.default_selection):
# the best single as trained, a class moved toward another member only where that class gains the margin
OFFSETS = "+offsets"  # suffix of a procedure whose detections get boundary offsets fitted beside its weights
AS_TRAINED = "best_single"  # the best single member as it was trained: no weights, no offsets


def procedures(max_steps: int, boundary_offsets: bool = True, across: bool = False,
               second_trial_share: float = SECOND_TRIAL_SHARE) -> dict:
    """The ways of choosing weights (and the fusion) that cross-validation compares (names are reported).
    ``greedy+refine/segments`` takes greedy+refine's weights and fuses the members' detections instead of their
    probabilities; ``calibrated+greedy+refine`` tempers each member's probabilities first (``calibrate``);
    ``cmaes`` searches normalised weights of the best members with CMA-ES; ``classwise`` takes each class from
    one member's own detections (the best single's, unless another is far better at that class); ``classmix``
    mixes a class's column toward the member best at it; ``stacked`` fits a logistic regression over the
    members' log-probabilities (``stacking``). With ``boundary_offsets`` each one also comes as ``<name>+offsets``: the same fit, its detections then given per-class boundary offsets
    fitted on the same videos (``with_boundary_offsets``). Every fit is made once per set of videos (the
    evaluator's root keeps it: ``Evaluator.memo``), so a procedure and its +offsets variant, greedy and
    greedy+refine, and an outer fold's fit in ``choose_by_cv`` and in the nested choice share their search.
    ``across``: every procedure but ``best_single`` goes through ``across_trials`` with ``second_trial_share``
    (the +offsets variants fit their offsets on what it returns)."""
    found = _procedures(max_steps)
    if across:
        found = {name: fit if name == AS_TRAINED else across_trials(fit, second_trial_share)
                 for name, fit in found.items()}
    tag = f"{ACROSS}@{second_trial_share!r}" if across else ""
    if boundary_offsets:
        found |= {name + OFFSETS: _memo(name + OFFSETS + tag, max_steps,
                                        lambda ev, fit=fit: with_boundary_offsets(ev, fit(ev)))
                  for name, fit in list(found.items())}
    return found


ACROSS = "/across-trials"  # memo tag of the fits made through ``across_trials`` (with their share)


def second_trial_strong(evaluator: Evaluator, share: float) -> bool:
    """Whether a member of a trial other than the best member's scores at least ``share`` of the best member's
    mAP on these videos (the fitting videos: inside cross-validation, the training folds only). Where none does,
    the sweep has one strong member, and a fusion's weights on the weak trials are fitted to what the few val
    videos happen to reward: on hard sets with one trial per view (weak views at 0.36-0.56 of the best) such
    fusions won their inner folds and lost on the held-out videos (docs/ensemble.md, "One strong member").
    Pruning the library to its strong models before ensemble selection is Caruana et al.'s (2006) remedy for
    the same overfitting. ``share`` 0: always true."""
    if share <= 0:
        return True
    singles = evaluator.single_scores()
    best = int(np.argmax(singles))
    others = evaluator.trials != evaluator.trials[best]
    return bool(np.any(others) and singles[others].max() >= share * singles[best])


def across_trials(fit, second_trial_share: float = 0.0):
    """``fit``, except where its weight lies on two or more epochs of one training run alone (a trial and its own
    snapshots): there the best single member as trained instead (``fell_back``; a fit of one member is left as
    it is). A trial's snapshots are one model seen at a few moments of its training; on a handful of val
    videos their fusion won the inner folds by luck and cost the best trial out of fold (docs/ensemble.md, "Two
    trials, and offsets by default"): the diversity an ensemble spends is that of other trials, and the snapshots
    join a fusion beside one. Where no other trial is strong (``second_trial_strong`` with
    ``second_trial_share``), ``fit`` is not called: the best single member as trained (``fell_back``)."""
    def fitted(ev):
        if not second_trial_strong(ev, second_trial_share):
            return replace(best_single(ev), fell_back=True)
        chosen = fit(ev)
        if np.count_nonzero(chosen.weights) <= 1 or not ev.one_trial(chosen.weights):
            return chosen
        return replace(best_single(ev), fell_back=True)
    return fitted


def _memo(name: str, max_steps: int, fit):
    return lambda ev: ev.memo((name, max_steps, tuple(v.video_id for v in ev.videos)), lambda: fit(ev))


def _procedures(max_steps: int) -> dict:
    greedy = _memo("greedy", max_steps, lambda ev: fit_weights(ev, max_steps, refine=False))
    greedy_refine = _memo("greedy+refine", max_steps, lambda ev: _refined(ev, greedy(ev)))
    found = {
        "greedy+refine": greedy_refine,
        "greedy": greedy,
        "top3_average": lambda ev: top_k_average(ev, 3),
        AS_TRAINED: best_single,
        "greedy+refine/segments": lambda ev: with_segment_fusion(ev, greedy_refine(ev)),
        "calibrated+greedy+refine": lambda ev: calibrated(ev, max_steps),
        "cmaes": cmaes_weights,
        "classwise": classwise,
        "classmix": class_mix,
        "greedy+refine/classmix": lambda ev: class_mix(ev, greedy_refine(ev)),
        "stacked": stacked,
    }
    return {name: fit if name in ("greedy", "greedy+refine") else _memo(name, max_steps, fit)
            for name, fit in found.items()}


def best_procedure(oof: dict[str, float], order: list[str], min_gain: float = 0.0) -> str:
    """Each procedure with its boundary offsets unless they lose out of fold (``with_offsets``), then the
    highest out-of-fold mAP; ties go to the procedure listed first. With ``min_gain``, ``best_single`` (the best
    member as trained, with its offsets unless they lose) stays unless the best procedure beats it out of fold
    by at least that much: on a few val videos a fusion that wins by less has mostly won by luck (its weights
    were fitted on videos as few as the ones it is scored on), and the lone best member cannot overfit its
    weights."""
    resolved = {name: with_offsets(oof, name, min_gain) for name in oof
                if not (name.endswith(OFFSETS) and name.removesuffix(OFFSETS) in oof)}
    best = max(resolved, key=lambda n: (oof[resolved[n]], -order.index(n)))
    reference = resolved.get(AS_TRAINED)
    if reference is not None and best != AS_TRAINED and oof[resolved[best]] < oof[reference] + min_gain:
        return reference
    return resolved[best]


def named_choice(selection: str, oof: dict[str, float], min_gain: float) -> str:
    """A procedure named by the user: with its boundary offsets unless they lose out of fold (``with_offsets``)."""
    return with_offsets(oof, selection, min_gain)


def with_offsets(oof: dict[str, float], name: str, margin: float) -> str:
    """``<name>+offsets`` unless it loses to ``<name>`` out of fold by more than ``margin``, scores the same (its
    offsets moved nothing that counts: the plainer name) or is not there.
    Offsets correct a class's edges that every member places the same wrong way; they are kept by default and
    dropped on evidence against them. The other way round (kept only where they won the inner folds by the
    margin) chose them in the outer folds whose held-out videos they then cost: with 16 val videos the inner
    and the held-out figures share one total, so a large inner gain foretells a held-out loss
    (docs/ensemble.md, "Two trials, and offsets by default")."""
    variant = name + OFFSETS
    return variant if variant in oof and oof[variant] != oof[name] and oof[variant] >= oof[name] - margin else name


def nested_cross_validate(evaluator: Evaluator, k: int, seed: int, recipe: Recipe = Recipe(),
                          inner_k: int | None = None) -> float:
    """Out-of-fold mAP of the whole recipe, procedure choice included: in each outer fold the procedure is
    chosen by an inner cross-validation on the outer training videos only, fitted there, and applied to the
    held-out videos. Unbiased where the plain figure of the best procedure is optimistic (it was chosen on the
    same held-out folds it is scored on)."""
    return evaluator.score_detections(nested_out_of_fold(evaluator, k, seed, recipe, inner_k)).mean


def nested_out_of_fold(evaluator: Evaluator, k: int, seed: int, recipe: Recipe = Recipe(),
                       inner_k: int | None = None) -> Segments:
    """The held-out detections behind ``nested_cross_validate`` (every val video's, each from the outer fold
    that held it out). The inner cross-validation's folds are the other outer folds (``inner_k`` None, the
    default; with 2 outer folds, 3 fresh folds of the training videos): a fit on a union of outer folds then
    serves each outer fold whose inner cross-validation makes it (``Evaluator.memo``). ``inner_k``: that many
    fresh folds of each outer fold's training videos instead."""
    found = recipe.procedures()
    ids = [v.video_id for v in evaluator.videos]
    outer = folds_of(ids, max(2, min(k, len(ids))), seed)

    def choose_and_fit(train: Evaluator) -> SelectionResult:
        if len(train.videos) < 2:  # too few videos to cross-validate inside: no evidence against the best single
            return found[AS_TRAINED](train)
        here = {v.video_id for v in train.videos}
        folds = [fold for fold in outer if fold <= here] if inner_k is None else []
        folds = folds if len(folds) >= 2 else None
        inner = {name: cross_validate(train, inner_k or 3, seed + 1, fit, folds) for name, fit in found.items()}
        return found[best_procedure(inner, list(found), recipe.min_gain)](train)

    return out_of_fold(evaluator, k, seed, choose_and_fit, outer)


def held_out_pair(evaluator: Evaluator, k: int, seed: int, recipe: Recipe = Recipe(),
                  held_out: dict | None = None) -> tuple[Segments, Segments]:
    """The out-of-fold detections the gain compares for one draw of the folds: the recipe's (``selection`` "cv":
    the nested recipe; a named procedure: its own, with its offsets unless they lose the margin) and the best
    single member's as it was trained (no boundary offsets: what the sweep alone would submit). ``held_out``:
    out-of-fold detections already made with this ``seed`` (``choose_by_cv``), by name; the ones made here are
    added."""
    held_out = held_out if held_out is not None else {}
    found = recipe.procedures()

    def detections_of(name: str) -> Segments:
        if name not in held_out:
            held_out[name] = out_of_fold(evaluator, k, seed, found[name])
        return held_out[name]

    if recipe.selection == "cv":
        chosen = nested_out_of_fold(evaluator, k, seed, recipe)
    else:
        names = [n for n in (recipe.selection, recipe.selection + OFFSETS) if n in found]
        oof = {n: evaluator.score_detections(detections_of(n)).mean for n in names}
        chosen = detections_of(named_choice(recipe.selection, oof, recipe.min_gain))
    return chosen, detections_of(AS_TRAINED)


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


def cross_validate(evaluator: Evaluator, k: int, seed: int, fit, folds: list[set[str]] | None = None) -> float:
    """Out-of-fold mAP of a weight-choosing procedure: weights fitted on k-1 folds of val videos,
    applied to the held-out fold; the held-out detections of all folds are scored together."""
    return evaluator.score_detections(out_of_fold(evaluator, k, seed, fit, folds)).mean


def out_of_fold(evaluator: Evaluator, k: int, seed: int, fit, folds: list[set[str]] | None = None) -> Segments:
    """Detections of every val video made by weights fitted without it (k folds over val videos, or ``folds``:
    sets of video ids that partition the evaluator's videos)."""
    ids = [v.video_id for v in evaluator.videos]
    k = max(2, min(k, len(ids)))
    parts = []
    for held in folds if folds is not None else folds_of(ids, k, seed):
        chosen = fit(evaluator.subset(set(ids) - held))  # temperatures too are fitted on the training folds
        parts.append(evaluator.subset(held).detections_of(chosen))
    return concat_segments(parts)


def choose_by_cv(evaluator: Evaluator, k: int, seed: int, recipe: Recipe = Recipe(), held_out: dict | None = None):
    """Out-of-fold mAP of every procedure; the chosen one (best OOF, or the one named) fitted on all of val.
    ``held_out``, when given, receives each procedure's out-of-fold detections (for the gain's interval)."""
    found = recipe.procedures()
    if recipe.selection != "cv" and recipe.selection not in found:
        raise UserError(f"ensemble selection {recipe.selection!r}: choose cv or one of {sorted(found)} (auto is "
                        "resolved by run_ensemble)")
    oof = {}
    for name, fit in tqdm(found.items(), desc="cross-validation", unit="procedure", file=sys.stderr, disable=None,
                          leave=False):
        detections = out_of_fold(evaluator, k, seed, fit)
        oof[name] = evaluator.score_detections(detections).mean
        if held_out is not None:
            held_out[name] = detections
    name = (best_procedure(oof, list(found), recipe.min_gain) if recipe.selection == "cv"
            else named_choice(recipe.selection, oof, recipe.min_gain))
    return name, found[name](evaluator), oof
