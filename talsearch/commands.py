"""Sub-commands that use Ray, MLflow or the ensemble: sweep, refit, replay, leaderboard, ensemble, demo, ui."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .arguments import add_command, config_arg, non_negative, port, positive_float, positive_int, share


def _private_network(args, tracking_uri: str, enabled: bool) -> None:
    """Re-runs this command with its local Ray cluster in a private network namespace (see
    search.private_network) when it starts one, needs no network, and was run from the command line."""
    from search import private_network

    if private_network.inside():
        private_network.bring_loopback_up()
        return
    if not getattr(args, "command_line", False) or not enabled:
        return
    if getattr(args, "address", None) or os.environ.get("RAY_ADDRESS"):
        return
    if private_network.needs_network(tracking_uri):
        return  # a private namespace could not reach the server (the sweep says so when Ray starts)
    private_network.reexec(sys.argv[1:])


def cmd_sweep(args) -> None:
    from search.space import load_sweep
    from search.study_storage import sweep_needs_network
    from search.sweep import run_sweep

    base = load_sweep(args.config, args.set).base
    _private_network(args, base.tracking.uri, base.search.private_network and not sweep_needs_network(
        base.search.storage, args.out, args.resume, args.warm_start))  # a study on a database server: network
    out = run_sweep(args.data, args.config, args.out, args.set, args.resume, args.address, args.storage,
                    args.warm_start, check_only=args.check)
    if args.check:
        print(json.dumps({"check": "passed", "sweep": str(out), "storage": args.storage}))
        return
    print(str(out))


def cmd_refit(args) -> None:
    from search.refit import read_state, run_refit

    state = read_state(Path(args.sweep))
    _private_network(args, state.get("tracking_uri", ""), True)
    print(str(run_refit(args.sweep, args.top, args.seeds, args.resume, args.address)))


def cmd_replay(args) -> None:
    import logging

    from search.replay_run import replay, table_lines

    overrides = {"grace_period": args.grace_period, "reduction_factor": args.reduction_factor,
                 "startup_trials": args.startup_trials, "multivariate": args.multivariate,
                 "constant_liar": args.constant_liar, "avoid_repeats": args.avoid_repeats,
                 "repeat_replacement": args.repeat_replacement}
    result = replay(args.sweep, args.searcher, args.scheduler, args.workers, args.seeds, args.budget_min and
                    args.budget_min * 60, args.target, args.config, overrides, args.plot, args.table_out,
                    args.clock)
    log = logging.getLogger("talsearch.replay")
    for line in table_lines(result):
        log.info(line)
    print(json.dumps(result, indent=1))


def cmd_leaderboard(args) -> None:
    from search.leaderboard import leaderboard, render

    print(render(leaderboard(args.sweep, args.sort), args.format))


def cmd_ensemble(args) -> None:
    from ensemble.run import run_ensemble

    result = run_ensemble(args.sweep, args.data, args.out, args.config, args.set, top_n=args.top, folds=args.folds,
                          selection=args.selection, seed=args.seed, min_gain=args.min_gain,
                          fold_seeds=args.fold_seeds, boundary_offsets=args.boundary_offsets == "class",
                          second_trial_share=args.second_trial_share)
    print(json.dumps(result, indent=1))


def cmd_demo(args) -> None:
    from .demo import run_demo

    _private_network(args, "sqlite:", True)
    run_demo(Path(args.workdir), quick=args.quick)


def cmd_ui(args) -> None:
    from search.ui import run_ui

    def announce(what: str, url: str) -> None:
        print(f"{what}: {url}  (Ctrl-C stops it)", file=sys.stderr)
        print(url, flush=True)  # the result: where to point the browser

    run_ui(args.uri, args.host, args.port, optuna_sweep=args.optuna, announce=announce)


def add_parsers(sub) -> None:
    from ensemble.defaults import MIN_GAIN, SECOND_TRIAL_SHARE

    p = add_command(sub, "sweep", "Optuna + Ray Tune + Ray Train search, tracked in MLflow", cmd_sweep)
    p.add_argument("--data", type=Path, required=True, help="data-set folder (annotations.json + videos)")
    p.add_argument("--out", type=Path, required=True, help="sweep folder (trials, predictions, state)")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted sweep in --out (unpickles Ray's tuner state: only resume sweep "
                        "folders you trust)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local cluster)")
    p.add_argument("--storage", default=None,
                   help="Ray storage every node reaches (a shared path, file://, s3://, gs://): trials persist their "
                        "outputs there and the driver pulls them into --out, which may then be node-local; "
                        "recorded in sweep.json (resume and refit reuse it); default SWEEP/ray, --out shared")
    p.add_argument("--check", action="store_true",
                   help="run only the pre-flight checks (every node sees the sweep folder or storage, the data "
                        "set and the frame cache; MLflow is reachable), print the result and exit")
    p.add_argument("--warm-start", type=Path, default=None, metavar="OLD_SWEEP",
                   help="seed the new study with the trials of an earlier sweep that fit this one's space and "
                        "fixed settings (the others are counted and left out)")
    config_arg(p)

    p = add_command(sub, "refit", "train a finished sweep's best configurations again with other seeds, as more "
                                  "trials of the sweep (tracked under its MLflow parent run; the ensemble sees "
                                  "them)", cmd_refit)
    p.add_argument("sweep", type=Path, help="finished sweep folder")
    p.add_argument("--top", type=int, default=3, help="how many of the best trials to refit")
    p.add_argument("--seeds", type=int, default=2, help="other seeds per refit configuration")
    p.add_argument("--resume", action="store_true", help="finish an interrupted refit of this sweep")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")

    p = add_command(sub, "replay", "search strategies replayed against a finished sweep's learning curves on a "
                                   "simulated clock (time to a target, best at a budget)", cmd_replay)
    p.add_argument("sweep", help="finished sweep folder, or a replay table file (--table-out)")
    p.add_argument("--searcher", nargs="+", choices=("random", "tpe", "grid"), default=["random", "tpe"],
                   help="Optuna samplers to compare")
    p.add_argument("--scheduler", nargs="+", choices=("fifo", "asha", "hyperband"), default=["fifo", "asha"],
                   help="Ray Tune schedulers to compare (every searcher with every scheduler)")
    p.add_argument("--workers", type=positive_int, default=None, help="trials at once (default: the sweep's own)")
    p.add_argument("--seeds", type=positive_int, default=20, help="seeds per strategy")
    p.add_argument("--budget-min", type=positive_float, default=None,
                   help="simulated minutes per run (default: every recorded full-budget trial once, --workers at "
                        "a time)")
    p.add_argument("--target", type=float, default=None,
                   help="metric to reach (default: random search's median best at the budget)")
    p.add_argument("--grace-period", type=positive_int, default=None, help="ASHA grace period (default: the sweep's)")
    p.add_argument("--reduction-factor", type=positive_int, default=None, help="ASHA reduction factor (default: "
                   "the sweep's)")
    p.add_argument("--startup-trials", type=positive_int, default=None, help="TPE's random start-up proposals")
    p.add_argument("--multivariate", action=argparse.BooleanOptionalAction, default=None,
                   help="TPE's multivariate model")
    p.add_argument("--constant-liar", action=argparse.BooleanOptionalAction, default=None,
                   help="TPE's constant liar for concurrent trials")
    p.add_argument("--avoid-repeats", action=argparse.BooleanOptionalAction, default=None,
                   help="replace a proposal that repeats a tried configuration by an untried one")
    p.add_argument("--repeat-replacement", choices=("nearest", "random"), default=None,
                   help="nearest: an untried configuration one searched key away; random: any untried one")
    p.add_argument("--clock", choices=("recorded", "uniform"), default="recorded",
                   help="recorded: each epoch costs its recorded time; uniform: every epoch the table's median "
                        "(configurations of equal cost whose recorded times were disturbed)")
    p.add_argument("--config", type=Path, default=None, help="the sweep's file (sweeps whose sweep.json lacks "
                   "its space)")
    p.add_argument("--plot", type=Path, default=None, help="write best-so-far vs simulated time here (PNG)")
    p.add_argument("--table-out", type=Path, default=None, help="write the sweep's learning-curve table here "
                   "(JSON, replayable without the sweep folder)")

    p = add_command(sub, "leaderboard", "table of a sweep's trials", cmd_leaderboard)
    p.add_argument("sweep", type=Path, help="sweep folder")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    p.add_argument("--sort", default="val_mAP", help="column to sort by (descending)")

    p = add_command(sub, "ensemble", "choose members and weights that maximise val mAP", cmd_ensemble)
    p.add_argument("--sweep", required=True, nargs="+", metavar="SWEEP",
                   help="sweep folder, or an MLflow parent run id; several: their trials are candidates together "
                        "(e.g. a video sweep and an audio sweep of the same data)")
    p.add_argument("--data", type=Path, required=True, help="data-set folder (its annotations are the truth)")
    p.add_argument("--out", type=Path, required=True, help="ensemble folder to write")
    p.add_argument("--top", type=int, default=0, help="keep only the N best trials as candidates (0 = all)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds over val videos")
    p.add_argument("--selection", default="auto", choices=("auto", "cv", "greedy+refine", "greedy", "top3_average",
                                                           "greedy+refine/segments", "calibrated+greedy+refine",
                                                           "cmaes", "best_single", "classwise", "classmix",
                                                           "greedy+refine/classmix", "stacked"),
                   help="auto (default): cv over trials of one modality, classmix over trials of several; cv: the "
                        "procedure with the best out-of-fold mAP (classwise, classmix, greedy+refine/classmix and "
                        "stacked are not among them); or name one")
    p.add_argument("--min-gain", type=non_negative, default=MIN_GAIN,
                   help="cv: keep the best single member unless a fusion beats its out-of-fold mAP by this much; "
                        "any selection: drop boundary offsets where they lose to the same fit without them by more "
                        "than this (default %(default)s)")
    p.add_argument("--second-trial-share", type=share, default=SECOND_TRIAL_SHARE,
                   help="cv: fuse only where a trial other than the best member's reaches this share of its val mAP "
                        "on the videos the fusion is fitted on; otherwise the best single member, with one strong "
                        "member nothing is fused (0: always fuse; default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seeds the cross-validation folds")
    p.add_argument("--boundary-offsets", choices=("class", "none"), default="class",
                   help="class: move each class's detected edges back by the median offset of its matched "
                        "detections, fitted where the weights are (inside cross-validation: training folds only); "
                        "none: keep the edges")
    p.add_argument("--fold-seeds", type=positive_int, default=1,
                   help="also report the gain for this many draws of the folds (seed, seed + 1, ...): its spread")
    config_arg(p)

    p = add_command(sub, "demo", "the whole pipeline on synthetic data", cmd_demo)
    p.add_argument("--workdir", default="demo_out", help="folder for the data, sweeps, ensembles and MLflow store")
    p.add_argument("--quick", action="store_true", help="a smaller sweep: 2 one-worker trials of 2 epochs (for smoke tests)")

    p = add_command(sub, "ui", "MLflow UI over the project's tracking store (or optuna-dashboard over a sweep's "
                               "study)", cmd_ui)
    p.add_argument("--optuna", default=None, metavar="SWEEP",
                   help="serve optuna-dashboard over the Optuna study of sweep folder SWEEP instead")
    p.add_argument("--uri", default="", help="tracking/backend store URI (default sqlite:///./mlflow.db)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=port, default=5000, help="TCP port")
