"""How the ensemble's "first, do no harm" rule would fare if it were another: the nested out-of-fold gain of the
default ensemble over the best single member as trained, per draw of the folds, under other ways of choosing a
procedure inside each outer fold (docs/performance.md, "One trial per view").

The nested procedure is the shipped one (``ensemble.select.nested_out_of_fold``: in each outer fold every
procedure is cross-validated on the other outer folds, one is chosen and fitted on the outer training videos,
then applied to the held-out ones); only the choice differs:

- ``shipped``: the best pooled inner out-of-fold mAP, and the best single member unless that beats it by
  ``--min-gain`` (``ensemble.select.best_procedure``: each procedure with its boundary offsets unless they lose
  by ``--min-gain``); a fusion is fitted only where a second trial is strong
  (``ensemble.select.second_trial_strong`` at ``SECOND_TRIAL_SHARE``);
- ``ungated``: ``shipped`` without that gate (the rule shipped before the gate, 2026-12-06 evening); every rule
  below but ``shipped_every_inner_fold`` and ``share_S`` is replayed without it, as docs/performance.md's tables
  were made;
- ``share_S``: ``shipped`` with the gate at share S (``--shares``);
- ``offsets_must_earn``: the rule shipped before offsets were kept by default (``earned_procedure``: a
  ``+offsets`` procedure only where it beats its plain one by ``--min-gain``, the reference the best single as
  trained). Every rule below replays a variant of that one;
- ``margin_M``: the same with a margin of M (``--margins``, default 0.04);
- ``shipped_every_inner_fold`` / ``ungated_every_inner_fold``: ``shipped`` / ``ungated``, among fusions that
  also score at least the best single (as ``shipped`` resolves it, offsets kept unless they lose) on every inner
  fold;
- ``every_inner_fold``: as shipped, among procedures that also score at least the best single on every inner fold;
- ``most_inner_folds``: as shipped, among procedures that beat the best single on more inner folds than they lose;
- ``no_offsets``: as shipped, without the ``+offsets`` procedures;
- ``no_segments`` / ``no_segments_top3``: as shipped, without ``greedy+refine/segments`` (and ``top3_average``);
- ``with_classwise``: as shipped, with the opt-in ``classwise`` among the procedures;
- ``simplest_T``: among the procedures that earn the margin, the simplest (``SIMPLEST_FIRST``) within T of the
  best of them;
- ``offsets_margin_M``: as shipped, a ``+offsets`` procedure must beat its plain one by M;
- ``mapped`` / ``mapped_margin_M``: as shipped / with margin M, each outer fold's chosen fusion's held-out scores
  then mapped onto the best single's score scale (quantile map fitted on that fold's training videos) before the
  folds are pooled: a fold's own ranking stays, the pooled one no longer mixes two scales.

Usage: ``python benchmarks/replay_ensemble_rules.py [--sweep SWEEP --data DATA] [--fold-seeds 4]``: a sweep folder
(or any folder ``talsearch ensemble --sweep`` reads) and its data set; by default the one-trial-per-view sweep that
``benchmarks/bench_audio.py --view-ensemble`` leaves in out/bench_audio. Prints one JSON line: the gain per rule
and fold seed, and what each rule chose in each outer fold. A replay, not a timed benchmark: ``make bench`` skips
it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble import select  # noqa: E402
from ensemble.candidates import collect  # noqa: E402
from ensemble.defaults import MIN_GAIN, SECOND_TRIAL_SHARE  # noqa: E402
from ensemble.gain import concat_segments  # noqa: E402
from ensemble.run import _evaluator, with_member_decoding  # noqa: E402
from tal_core.config import load_config  # noqa: E402
from tal_core.data.annotations import load_ground_truth  # noqa: E402
from tal_core.scoring.metrics import Segments  # noqa: E402

AS_TRAINED = select.AS_TRAINED
VIEWS = ROOT / "out" / "bench_audio"  # where bench_audio.py --view-ensemble leaves its sweep and data set


def _among(pooled: dict, keep, min_gain: float, offsets_gain: float | None = None, opt_in: bool = False,
           legacy: bool = True) -> str:
    """As ``earned_procedure`` (``legacy``: the rule offsets had before) or ``select.best_procedure`` among the
    procedures ``keep`` lets in (of the opt-in ones, ``select.OPT_IN``, ``classwise`` only, and only with
    ``opt_in``: the rules replayed were written before the classmix ones); ``offsets_gain``: the margin a
    ``<name>+offsets`` must also beat ``<name>`` by."""
    allowed = {name: value for name, value in pooled.items() if name == AS_TRAINED
               or (keep(name) and (name.removesuffix(select.OFFSETS) not in select.OPT_IN
                                   or opt_in and name.removesuffix(select.OFFSETS) == "classwise"))}
    if offsets_gain is not None:
        allowed = {name: value for name, value in allowed.items()
                   if offsets_earned(allowed, name, offsets_gain)}
    return (earned_procedure if legacy else select.best_procedure)(allowed, list(allowed), min_gain)


def earned_procedure(oof: dict[str, float], order: list[str], min_gain: float) -> str:
    """``select.best_procedure`` as it was before offsets were kept by default: a ``<name>+offsets`` only where
    it beats ``<name>`` by ``min_gain``, and the best single as trained (no offsets) stays unless the best beats
    it by ``min_gain``."""
    best = max((n for n in oof if offsets_earned(oof, n, min_gain)), key=lambda n: (oof[n], -order.index(n)))
    if AS_TRAINED in oof and best != AS_TRAINED and oof[best] < oof[AS_TRAINED] + min_gain:
        return AS_TRAINED
    return best


def offsets_earned(oof: dict[str, float], name: str, margin: float) -> bool:
    """The rule offsets had before they were kept by default: false only for a ``<plain>+offsets`` procedure
    that does not beat ``<plain>`` out of fold by ``margin``."""
    plain = name.removesuffix(select.OFFSETS)
    return plain == name or plain not in oof or oof[name] >= oof[plain] + margin


SIMPLEST_FIRST = ("best_single", "classwise", "top3_average", "greedy", "greedy+refine", "greedy+refine/segments",
                  "calibrated+greedy+refine", "cmaes")  # fewest fitted choices first; each "+offsets" after all these


def _simplest(pooled: dict, min_gain: float, tolerance: float) -> str:
    """Among the procedures that earn ``min_gain`` over the best single (``classwise`` included), the simplest one
    within ``tolerance`` of the best of them (a one-standard-error-style rule: the inner folds cannot tell those
    apart); procedures not in ``SIMPLEST_FIRST`` come last."""
    best = _among(pooled, lambda n: True, min_gain, opt_in=True)
    if best == AS_TRAINED:
        return best
    plain = [*SIMPLEST_FIRST, *(n for n in pooled if n not in SIMPLEST_FIRST and not n.endswith(select.OFFSETS))]
    order = [*plain, *(n + select.OFFSETS for n in plain)]
    earned = [n for n in order if n in pooled and n != AS_TRAINED and pooled[n] >= pooled[AS_TRAINED] + min_gain
              and offsets_earned(pooled, n, min_gain)]
    return next((n for n in earned if pooled[n] >= pooled[best] - tolerance), best)


def rules(min_gain: float, margins=(0.04,), shares=()) -> dict:
    """name -> (choose(pooled, per_fold) -> procedure, map scores onto the single's scale[, the gate's share: the
    fits it chooses among are ``select.procedures(..., second_trial_share=share)``'s; without it 0, no gate])."""
    def wins(per, name, reference=AS_TRAINED):
        return [np.sign(round(a - b, 12)) for a, b in zip(per[name], per[reference], strict=True)]

    def margin(value, legacy=True):
        return lambda pooled, per: _among(pooled, lambda n: True, value, legacy=legacy)

    def shipped_every_fold(pooled, per):  # the reference: the best single as the shipped rule resolves it
        reference = select.with_offsets(pooled, AS_TRAINED, min_gain)
        return _among(pooled, lambda n: n.removesuffix(select.OFFSETS) == AS_TRAINED
                      or min(wins(per, n, reference)) >= 0, min_gain, legacy=False)

    found = {
        "shipped": (margin(min_gain, legacy=False), False, SECOND_TRIAL_SHARE),
        "ungated": (margin(min_gain, legacy=False), False),
        "offsets_must_earn": (margin(min_gain), False),
        "shipped_every_inner_fold": (shipped_every_fold, False, SECOND_TRIAL_SHARE),
        "ungated_every_inner_fold": (shipped_every_fold, False),
        "every_inner_fold": (lambda pooled, per: _among(pooled, lambda n: min(wins(per, n)) >= 0, min_gain), False),
        "most_inner_folds": (lambda pooled, per: _among(pooled, lambda n: sum(wins(per, n)) > 0, min_gain), False),
        "mapped": (margin(min_gain), True),
        "no_offsets": (lambda pooled, per: _among(pooled, lambda n: not n.endswith(select.OFFSETS), min_gain), False),
        "with_classwise": (lambda pooled, per: _among(pooled, lambda n: True, min_gain, opt_in=True), False),
        "simplest_0.01": (lambda pooled, per: _simplest(pooled, min_gain, 0.01), False),
        "simplest_0.02": (lambda pooled, per: _simplest(pooled, min_gain, 0.02), False),
        "no_segments": (lambda pooled, per: _among(pooled, lambda n: "/segments" not in n, min_gain), False),
        "no_segments_top3": (lambda pooled, per: _among(
            pooled, lambda n: "/segments" not in n and not n.startswith("top3"), min_gain), False),
    }
    for value in margins:
        found[f"margin_{value:g}"] = (margin(value), False)
        found[f"mapped_margin_{value:g}"] = (margin(value), True)
        found[f"offsets_margin_{value:g}"] = (
            lambda pooled, per, value=value: _among(pooled, lambda n: True, min_gain, value), False)
    for value in shares:
        found[f"share_{value:g}"] = (margin(min_gain, legacy=False), False, value)
    return found


def inner_scores(train, folds: list[set[str]], found: dict) -> tuple[dict, dict]:
    """Every procedure's pooled out-of-fold mAP over ``folds`` of ``train``'s videos, and its mAP on each fold."""
    here = {v.video_id for v in train.videos}
    pooled, per_fold = {}, {}
    for name, fit in found.items():
        held_out = [train.subset(held).detections_of(fit(train.subset(here - held))) for held in folds]
        pooled[name] = train.score_detections(concat_segments(held_out)).mean
        per_fold[name] = [train.subset(held).score_detections(found_here).mean
                          for held, found_here in zip(folds, held_out, strict=True)]
    return pooled, per_fold


def onto_scale(detections: Segments, own: Segments, reference: Segments) -> Segments:
    """``detections`` with scores moved by the monotone map that takes ``own``'s score quantiles onto
    ``reference``'s (both found on the same training videos)."""
    if len(own.score) < 2 or len(reference.score) < 2:
        return detections
    levels = np.linspace(0.0, 1.0, 201)
    source = np.maximum.accumulate(np.quantile(own.score, levels) + levels * 1e-9)
    target = np.quantile(reference.score, levels)
    return Segments(detections.video, detections.label, detections.start, detections.end,
                    np.interp(detections.score, source, target))


def _inner_folds(train, outer: list[set[str]], held: set[str], seed: int) -> list[set[str]] | None:
    """The inner cross-validation's folds, as ``nested_out_of_fold`` makes them: the other outer folds, or 3
    fresh folds of the training videos where fewer than 2 are left; None with fewer than 2 training videos."""
    here = [v.video_id for v in train.videos]
    if len(here) < 2:
        return None
    others = [fold for fold in outer if fold <= set(here)]
    return others if len(others) >= 2 else select.folds_of(here, max(2, min(3, len(here))), seed + 1)


def nested_gains(evaluator, folds: int, seed: int, choosers: dict) -> tuple[dict, dict]:
    """Per rule: nested out-of-fold mAP minus the best single's out-of-fold mAP, and the procedure chosen in
    each outer fold."""
    # the opt-in ones too (rules choose among them); each fusion spans two trials, as "cv" fits them, behind each
    # rule's gate
    shares = {name: (rule[2] if len(rule) > 2 else 0.0) for name, rule in choosers.items()}
    by_share = {share: select.procedures(select.Recipe().max_steps, across=True, second_trial_share=share)
                for share in set(shares.values())}
    ids = [v.video_id for v in evaluator.videos]
    outer = select.folds_of(ids, max(2, min(folds, len(ids))), seed)
    parts = {name: [] for name in choosers}
    chosen = {name: [] for name in choosers}
    for held in outer:
        train = evaluator.subset(set(ids) - held)
        inner = _inner_folds(train, outer, held, seed)
        scores = {share: inner_scores(train, inner, found) if inner else ({AS_TRAINED: 0.0}, {})
                  for share, found in by_share.items()}
        single = select.best_single(train)
        for name, (choose, mapped, *_) in choosers.items():
            found = by_share[shares[name]]
            procedure = choose(*scores[shares[name]])
            fitted = found[procedure](train)
            detections = evaluator.subset(held).detections_of(fitted)
            if mapped and procedure != AS_TRAINED:
                detections = onto_scale(detections, train.detections_of(fitted), train.detections_of(single))
            parts[name].append(detections)
            chosen[name].append(procedure)
    single_oof = evaluator.score_detections(select.out_of_fold(evaluator, folds, seed, select.best_single, outer))
    gains = {name: round(evaluator.score_detections(concat_segments(found_here)).mean - single_oof.mean, 4)
             for name, found_here in parts.items()}
    return gains, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=Path, default=VIEWS / "d0_views_ensemble" / "sweep")
    parser.add_argument("--data", type=Path, default=VIEWS / "hard_d0")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold-seeds", type=int, default=4)
    parser.add_argument("--min-gain", type=float, default=MIN_GAIN)
    parser.add_argument("--margins", type=float, nargs="*", default=[0.04],
                        help="wider margins replayed as margin_M and mapped_margin_M")
    parser.add_argument("--shares", type=float, nargs="*", default=[0.5, 0.75],
                        help="other shares of the second-trial gate, replayed as share_S")
    parser.add_argument("--tracking-uri", default=None, help="where the sweep's runs are (default: sweep.json's)")
    args = parser.parse_args()
    for path, made_by in ((args.sweep, "a sweep"), (args.data / "annotations.json", "a data set")):
        if not path.exists():
            parser.exit(2, f"replay_ensemble_rules: {path} not found (--sweep/--data: {made_by}; the default is made "
                           "by benchmarks/bench_audio.py --view-ensemble)\n")
    started = time.perf_counter()
    overrides = [f"tracking.uri={args.tracking_uri}"] if args.tracking_uri else []
    cfg = load_config(None, overrides)
    spec = load_ground_truth(args.data)
    with tempfile.TemporaryDirectory() as scratch:
        candidates = collect(str(args.sweep), cfg.tracking.uri if args.tracking_uri else "", Path(scratch), 0)
        cfg = with_member_decoding(cfg, candidates[0], None, overrides)
        evaluator = _evaluator(candidates, spec, args.data, cfg)
        choosers = rules(args.min_gain, args.margins, args.shares)
        by_seed = [nested_gains(evaluator, args.folds, seed, choosers) for seed in range(args.fold_seeds)]
    print(json.dumps({"bench": "ensemble_rules", "sweep": str(args.sweep), "candidates": len(candidates),
                      "videos": len(evaluator.videos), "fold_seeds": list(range(args.fold_seeds)),
                      "gains": {name: [gains[name] for gains, _ in by_seed] for name in choosers},
                      "chosen": {name: [chosen[name] for _, chosen in by_seed] for name in choosers},
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
