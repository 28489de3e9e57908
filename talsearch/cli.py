"""``talsearch``: the command line. stdout carries the result; logs and progress go to stderr."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tal_core.errors import UserError

EXIT_USAGE = 2


def _emit(result) -> None:
    print(result if isinstance(result, str) else json.dumps(result, indent=1))


def _set_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys (dotted names; values parse as YAML); repeatable")


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="YAML config (keys as in configs/base.yaml)")
    _set_arg(parser)


def cmd_synth(args) -> None:
    from tal_core.data.synth import SynthSpec, synthesize

    spec = SynthSpec(videos=args.videos, seed=args.seed, fps=args.fps, size=args.size, val_share=args.val_share,
                     test_share=args.test_share)
    path = synthesize(args.out, spec, progress=lambda i, n: print(f"synth: video {i}/{n}", file=sys.stderr))
    _emit(str(path.parent))


def cmd_import_360x(args) -> None:
    from tal_core.data.importers import import_360x

    _report_import(import_360x(args.src, args.out, args.scenes), args.out)


def cmd_import_activitynet(args) -> None:
    from tal_core.data.importers import import_activitynet

    _report_import(import_activitynet(args.src, args.videos, args.out, args.view), args.out)


def _report_import(report, out) -> None:
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    _emit({"out": str(out), "videos": report.videos, "segments": report.segments, "problems": len(report.problems)})


def cmd_train(args) -> None:
    from tal_core.config import load_config
    from tal_core.data.annotations import load_dataset
    from tal_core.trainer import fit

    cfg = load_config(args.config, args.set)
    spec = load_dataset(args.data)
    out = Path(args.out)
    resume = out / "last.pt" if args.resume else None
    if not args.resume and (out / "last.pt").exists():
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    best = fit(cfg, spec, out, resume_from=resume)
    _emit({k: v for k, v in best.items() if k != "per_class_AP"} | {"out": str(out)})


def cmd_evaluate(args) -> None:
    import numpy as np

    from tal_core.data.annotations import load_ground_truth
    from tal_core.formats import ground_truth_segments, read_detections
    from tal_core.metrics import average_precision

    spec = load_ground_truth(args.gt)
    truth = ground_truth_segments(spec, args.subset)
    if not len(truth):
        subsets = sorted({v.subset for v in spec.videos.values() if v.segments})
        raise UserError(f"{args.gt}: subset '{args.subset}' holds no ground truth (subsets with segments: {subsets})")
    detections = read_detections(args.pred)
    scored_videos = {v.video_id for v in spec.videos.values() if v.subset == args.subset}
    elsewhere = ~np.isin(detections.video.astype(str), list(scored_videos))
    if elsewhere.any():
        print(f"warning: {int(elsewhere.sum())} prediction(s) for {len(set(detections.video[elsewhere]))} video(s) "
              f"not in subset '{args.subset}' of {args.gt}: scored as false positives", file=sys.stderr)
    _emit(average_precision(truth, detections, args.tiou).to_json())


def cmd_submit(args) -> None:
    from tal_core.data.annotations import load_ground_truth
    from tal_core.formats import read_detections_dict, submission_rows, write_submission

    spec = load_ground_truth(args.gt)
    detections = read_detections_dict(args.pred)
    durations = {v.video_id: v.duration for v in spec.videos.values() if v.subset == args.subset}
    path = write_submission(submission_rows(detections, durations, spec.taxonomy.actions), args.out)
    _emit(str(path))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talsearch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic multi-view data set")
    p.add_argument("out", type=Path)
    p.add_argument("--videos", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--size", type=int, default=64, help="frame height in pixels")
    p.add_argument("--val-share", type=float, default=0.2, help="share of videos in the val subset")
    p.add_argument("--test-share", type=float, default=0.15, help="share of videos in the test subset")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("import-360x", help="360+x VIA-style annotations -> data-set format")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--scenes", type=Path, default=None, help="CSV recording,scene[,subset] (default SRC/scenes.csv)")
    p.set_defaults(func=cmd_import_360x)

    p = sub.add_parser("import-activitynet", help="ActivityNet JSON + videos -> data-set format")
    p.add_argument("src", type=Path)
    p.add_argument("videos", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--view", default="front")
    p.set_defaults(func=cmd_import_activitynet)

    p = sub.add_parser("train", help="train one model (no Ray)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    _config_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="mAP of detections against annotations")
    p.add_argument("--gt", type=Path, required=True)
    p.add_argument("--pred", type=Path, required=True)
    p.add_argument("--subset", default="val")
    p.add_argument("--tiou", type=float, nargs="+", default=[0.5, 0.75, 0.95])
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("submit", help="BinEgo-360 submission CSV from detections")
    p.add_argument("--gt", type=Path, required=True, help="annotations.json (for durations and class ids)")
    p.add_argument("--pred", type=Path, required=True, help="detections JSON")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--subset", default="test")
    p.set_defaults(func=cmd_submit)

    _add_search_commands(sub)
    return parser


def _add_search_commands(sub) -> None:
    from . import commands

    commands.add_parsers(sub, _config_arg, _set_arg)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success; 2 with one line naming the cause for a user's error (``UserError``, or a file the
    system refused: missing, a folder, no permission); anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        if error.filename is None:
            raise
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
