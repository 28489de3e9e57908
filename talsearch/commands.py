"""Sub-commands that use Ray, MLflow or the ensemble: sweep, leaderboard, ensemble, demo, ui."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_sweep(args) -> None:
    from search.sweep import run_sweep

    out = run_sweep(args.data, args.config, args.out, args.set, args.resume, args.address, args.storage)
    print(str(out))


def cmd_leaderboard(args) -> None:
    from search.leaderboard import leaderboard, render

    print(render(leaderboard(args.sweep, args.sort), args.format))


def cmd_ensemble(args) -> None:
    from ensemble.run import run_ensemble

    result = run_ensemble(args.sweep, args.data, args.out, args.config, args.set, top_n=args.top, folds=args.folds,
                          selection=args.selection, seed=args.seed)
    print(json.dumps(result, indent=1))


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(Path(args.workdir), quick=args.quick)


def cmd_ui(args) -> None:
    from search.ui import run_ui

    run_ui(args.uri, args.host, args.port)


def add_parsers(sub, config_arg, set_arg) -> None:
    p = sub.add_parser("sweep", help="Optuna + Ray Tune + Ray Train search, tracked in MLflow")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="sweep folder (trials, predictions, state)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted sweep in --out")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("--storage", default=None, help="Ray storage_path (s3://, gs://, NFS); default SWEEP/ray")
    config_arg(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("leaderboard", help="table of a sweep's trials")
    p.add_argument("sweep", type=Path)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--sort", default="val_mAP")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("ensemble", help="choose members and weights that maximise val mAP")
    p.add_argument("--sweep", required=True, help="sweep folder, or an MLflow parent run id")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--top", type=int, default=0, help="keep only the N best trials as candidates (0 = all)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds over val videos")
    p.add_argument("--selection", default="cv",
                   help="cv (best out-of-fold procedure) | greedy+refine | greedy | top3_average | best_single")
    p.add_argument("--seed", type=int, default=0)
    config_arg(p)
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("demo", help="the whole pipeline on synthetic data")
    p.add_argument("--workdir", default="demo_out")
    p.add_argument("--quick", action="store_true", help="a smaller sweep (for smoke tests)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ui", help="MLflow UI over the project's tracking store")
    p.add_argument("--uri", default="", help="tracking/backend store URI (default sqlite:///./mlflow.db)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
