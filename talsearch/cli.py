"""``talsearch``: the command line. stdout carries the result; logs and progress go to stderr."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tal_core.errors import UserError
from tal_core.logs import configure_logging

from .arguments import (
    Formatter,
    add_command,
    config_arg,
    non_negative,
    positive_float,
    positive_int,
    share,
    tiou,
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _emit(result) -> None:
    print(result if isinstance(result, str) else json.dumps(result, indent=1))


def cmd_synth(args) -> None:
    from tal_core.data.synth import SynthSpec, synthesize

    spec = SynthSpec.for_preset(args.preset, videos=args.videos, seed=args.seed, fps=args.fps, size=args.size,
                                val_share=args.val_share, test_share=args.test_share, audio=args.audio)
    path = synthesize(args.out, spec, progress=lambda i, n: print(f"synth: video {i}/{n}", file=sys.stderr))
    _emit(str(path.parent))


def cmd_import_360x(args) -> None:
    from tal_core.data.importers import import_360x
    from tal_core.scoring.formats import read_label_map

    label_map = read_label_map(args.label_map) if args.label_map else None
    _report_import(import_360x(args.src, args.out, args.scenes, args.cut, label_map), args.out)


def cmd_import_activitynet(args) -> None:
    from tal_core.data.importers import import_activitynet

    _report_import(import_activitynet(args.src, args.videos, args.out, args.view), args.out)


def _report_import(report, out) -> None:
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    _emit({"out": str(out), "videos": report.videos, "segments": report.segments, "problems": len(report.problems),
           "clipped": report.clipped, "dropped": report.dropped})


def cmd_train(args) -> None:
    from tal_core.config import load_config
    from tal_core.data.annotations import load_dataset
    from tal_core.training.trainer import fit

    cfg = load_config(args.config, args.set)
    spec = load_dataset(args.data)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; name a run folder")
    resume = out / "last.pt" if args.resume else None
    if args.resume and not (out / "last.pt").is_file():
        raise UserError(f"--resume: {out} holds no run to resume (no last.pt); drop --resume to start one")
    if not args.resume and (out / "last.pt").exists():
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    best = fit(cfg, spec, out, resume_from=resume)
    _emit({k: v for k, v in best.items() if k != "per_class_AP"} | {"out": str(out)})


def cmd_evaluate(args) -> None:
    import gc

    enabled = gc.isenabled()
    gc.disable()  # a short command building ~10^6 acyclic objects: the cyclic collector would only rescan them
    try:
        _evaluate(args)
    finally:
        if enabled:  # main() may be called in-process: leave the collector as it was
            gc.enable()


def _evaluate(args) -> None:
    import numpy as np

    from tal_core.data.annotations import kept_as_published, load_ground_truth
    from tal_core.scoring.binning import binned
    from tal_core.scoring.formats import ground_truth_segments, placements_of, read_detections
    from tal_core.scoring.metrics import average_precision

    spec = load_ground_truth(args.gt)
    truth = ground_truth_segments(spec, args.subset)
    if not len(truth):
        subsets = sorted({v.subset for v in spec.videos.values() if v.segments})
        raise UserError(f"{args.gt}: subset '{args.subset}' holds no ground truth (subsets with segments: {subsets})")
    zero_length, past_duration = kept_as_published(spec, args.subset)
    if zero_length or past_duration:
        binning = " (then --bins drops pieces under 0.5 s, zero-length ones with them)" if args.bins else ""
        print(f"warning: {args.gt}: kept {zero_length} zero-length and {past_duration} past-duration annotations "
              f"as the ActivityNet scorer does{binning}", file=sys.stderr)
    detections = read_detections(args.pred)
    scored_videos = {v.video_id for v in spec.videos.values() if v.subset == args.subset}
    elsewhere = ~np.fromiter(map(scored_videos.__contains__, detections.video), dtype=bool,
                             count=len(detections.video))
    if elsewhere.any():
        print(f"warning: {int(elsewhere.sum())} prediction(s) for {len(set(detections.video[elsewhere]))} video(s) "
              f"not in subset '{args.subset}' of {args.gt}: scored as false positives", file=sys.stderr)
    _emit(average_precision(*binned(truth, detections, args.bins, placements_of(spec)), args.tiou).to_json())


def cmd_cache(args) -> None:
    from tal_core.data.cache_folder import entries, prune
    from tal_core.data.video import default_cache_dir

    folder = args.dir or default_cache_dir()
    if args.action == "prune":
        if args.older_than is None:
            raise UserError("cache prune needs --older-than DAYS (0 removes every entry)")
        _emit(prune(folder, args.older_than))
        return
    rows = [e.row() for e in entries(folder)]
    if args.format == "json":
        _emit(rows)
        return
    total = sum(r["mb"] for r in rows)
    lines = [f"{r['last_used']}  {r['mb']:10.1f} MB  {r['kind']:6}  {r['format'] or '':4}  {r['name']}" for r in rows]
    print("\n".join([*lines, f"{len(rows)} entries, {total:.1f} MB in {folder}"]))


def cmd_weights(args) -> None:
    if args.check is None:
        from tal_core.model.weights import weights_report

        _emit(weights_report())
        return
    from tal_core.model.backbones import plain_backbone
    from tal_core.model.checkpoints import match_backbone

    matching = match_backbone(args.check, plain_backbone(args.backbone), args.backbone)
    print(json.dumps(matching.report()))
    problem = matching.first_problem()
    if problem:
        raise UserError(f"{args.check} ({matching.layout} layout): {problem}")


def cmd_submit(args) -> None:
    from tal_core.data.annotations import load_ground_truth
    from tal_core.scoring.formats import (
        placements_of,
        read_detections_dict,
        read_label_map,
        submission_rows,
        write_submission,
    )

    spec = load_ground_truth(args.gt)
    detections = read_detections_dict(args.pred)
    durations = {v.video_id: v.duration for v in spec.videos.values() if v.subset == args.subset}
    if not durations:
        raise UserError(f"{args.gt}: subset '{args.subset}' holds no videos")
    label_map = read_label_map(args.label_map) if args.label_map else None
    rows = submission_rows(detections, durations, spec.taxonomy.actions, args.bins, label_map, placements_of(spec))
    path = write_submission(rows, args.out)
    _emit(str(path))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talsearch", description=__doc__.replace("``", ""), formatter_class=Formatter)
    parser.add_argument("--version", action=_VersionAction, help="show the version and exit")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--quiet", action="store_true", help="log warnings and errors only (stderr)")
    noise.add_argument("--verbose", action="store_true", help="log debugging detail too (stderr)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_command(sub, "synth", "write a synthetic multi-view data set (real mp4 files)", cmd_synth)
    p.add_argument("out", type=Path, help="folder to write annotations.json and videos/ into")
    p.add_argument("--preset", choices=("easy", "hard"), default="easy",
                   help="easy: 5 actions, one direction-only pair, 24 videos at 8 fps | hard: 8 actions in 4 pairs "
                        "that only temporal cues separate, views that miss actions, a still distractor, noise, a "
                        "shaking ego camera; 50 videos (32 train / 16 val / 2 test) of 20-30 s at 16 fps")
    p.add_argument("--videos", type=positive_int, default=None, help="number of videos (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="seeds every video's content")
    p.add_argument("--fps", type=positive_int, default=None, help="frame rate of the written videos (default: the "
                                                                  "preset's, 8 or 16)")
    p.add_argument("--size", type=positive_int, default=64, help="frame height in pixels")
    p.add_argument("--val-share", type=share, default=None, help="share of videos in the val subset (default: the "
                                                                 "preset's, 0.2 or 0.32)")
    p.add_argument("--test-share", type=share, default=None, help="share of videos in the test subset (default: "
                                                                  "the preset's, 0.15 or 0.04)")
    p.add_argument("--audio", choices=("mp4", "wav", "none"), default="mp4",
                   help="every action class has a sound (docs/recipe.md): mp4 = an AAC track in every view's file | "
                        "wav = videos/<id>/audio.wav, declared in annotations.json | none = silent videos")

    p = add_command(sub, "import-360x", "360+x VIA-style annotations -> data-set format", cmd_import_360x)
    p.add_argument("src", type=Path, help="folder with one annotation JSON per recording and the view videos")
    p.add_argument("out", type=Path, help="data-set folder to write")
    p.add_argument("--scenes", type=Path, default=None, help="CSV recording,scene[,subset] (default SRC/scenes.csv)")
    p.add_argument("--cut", type=positive_float, default=None,
                   help="the organisers' clips: the first 6 cuts of this many seconds (the kit uses 10), subsets by "
                        "cut (0-3 train, 4 val, 5 test), each pointing into its recording (offset)")
    p.add_argument("--label-map", type=Path, default=None,
                   help="the organisers' JSON action name -> class id: orders the taxonomy by id")

    p = add_command(sub, "import-activitynet", "ActivityNet JSON + videos -> data-set format", cmd_import_activitynet)
    p.add_argument("src", type=Path, help="ActivityNet annotation JSON")
    p.add_argument("videos", type=Path, help="folder holding <video id>.mp4 files")
    p.add_argument("out", type=Path, help="data-set folder to write")
    p.add_argument("--view", default="front", help="view name the videos are recorded under")

    p = add_command(sub, "train", "train one model (no Ray)", cmd_train)
    p.add_argument("--data", type=Path, required=True, help="data-set folder (annotations.json + videos)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write (must not hold a run unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    config_arg(p)

    p = add_command(sub, "evaluate", "mAP of detections against annotations (no videos needed)", cmd_evaluate)
    p.add_argument("--gt", type=Path, required=True, help="annotations.json (ours or ActivityNet v1.3)")
    p.add_argument("--pred", type=Path, required=True, help="detections JSON (ActivityNet result format)")
    p.add_argument("--subset", default="val", help="subset of the ground truth to score (e.g. validation)")
    p.add_argument("--tiou", type=tiou, nargs="+", default=[0.5, 0.75, 0.95], help="tIoU thresholds")
    p.add_argument("--bins", type=non_negative, default=0.0,
                   help="score as BinEgo-360 does: truth and detections split over bins of this many seconds, each "
                        "bin a video of its own (0 = off; the challenge uses 10)")

    p = add_command(sub, "submit", "BinEgo-360 submission CSV from detections", cmd_submit)
    p.add_argument("--gt", type=Path, required=True, help="annotations.json (for durations and class ids)")
    p.add_argument("--pred", type=Path, required=True, help="detections JSON")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    p.add_argument("--subset", default="test", help="subset whose videos get rows")
    p.add_argument("--label-map", type=Path, default=None,
                   help="the organisers' JSON action name -> class id (default: 1-based taxonomy order)")
    p.add_argument("--bins", type=positive_float, default=10.0, help="bin length in seconds (one row per bin)")

    p = add_command(sub, "weights", "the ImageNet weight files each backbone needs offline, and whether they are "
                                    "present and pass torchvision's hash check; with --check, how a checkpoint file "
                                    "(torchvision, TSM repository or mmaction2 layout) matches a backbone", cmd_weights)
    p.add_argument("--check", type=Path, default=None, metavar="FILE",
                   help="print {layout, matched, missing, unexpected} for FILE; exit 2 naming the first backbone "
                        "tensor missing or of another shape")
    p.add_argument("--backbone", choices=("tiny", "resnet18", "resnet34", "resnet50", "mobilenet_v2"),
                   default="resnet50", help="the backbone --check matches against")

    p = add_command(sub, "cache", "list or prune a frame cache folder (this machine's: TALSEARCH_CACHE or the "
                                  "default)", cmd_cache)
    p.add_argument("action", choices=("ls", "prune"), help="ls: entries, newest use first | prune: remove entries "
                                                           "unused for --older-than days")
    p.add_argument("--dir", type=Path, default=None, help="cache folder (default: TALSEARCH_CACHE or "
                                                          "~/.cache/talsearch/frames)")
    p.add_argument("--older-than", type=non_negative, default=None, metavar="DAYS",
                   help="prune: entries no run used for this many days (0 = all)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="ls output")

    _add_search_commands(sub)
    return parser


class _VersionAction(argparse.Action):
    """--version, looked up only when asked for (reading package metadata costs 0.1 s at every start)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(message=f"{parser.prog} {_version()}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tal-search")
    except PackageNotFoundError:
        return "unknown"


def _add_search_commands(sub) -> None:
    from . import commands

    commands.add_parsers(sub)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success; 2 with one line naming the cause for a user's error (``UserError``, or a file the
    system refused: missing, a folder, no permission); anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet, args.verbose)
    args.command_line = argv is None  # run as a program (not called from Python): it may re-run itself
    try:
        args.func(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", EXIT_USAGE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:
        if error.filename is None:
            raise
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
