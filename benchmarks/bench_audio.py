"""Hear as well as see: video, audio and video+audio single runs and the video + audio ensemble on the hard preset.

1. ``talsearch synth --preset hard --seed S`` for every ``--data-seeds`` (sound in every mp4: each action class has
   a sound; sight and sound are complementary, docs/recipe.md).
2. The recommended single run (``configs/precise.yaml``; tiny backbone, 64 px, 12 epochs, panoramic view, as
   ``bench_quality.py``) once per modality (``data.modalities``: video, audio, video+audio; video+audio with
   precise.yaml's ``loss.modality_weight`` and ``model.fusion_detach``: each modality's own heads, the fused heads
   on detached features) and training seed (``--seeds``): avg mAP and
   per-class AP on val, mean and spread over the seeds.
3. For each training seed, the default ``talsearch ensemble`` (``--fold-seeds 4``; over trials of two modalities
   ``--selection auto`` is classmix) over two candidates: the video run and the audio run of that seed (each with
   its kept snapshots, as a sweep's trials): nested out-of-fold mAP, the better member's out-of-fold mAP as
   trained, the gain with its 90% bootstrap interval, the gain on 4 fold draws; and per data set the gain
   averaged over the training seeds (``ensemble_gain_over_seeds``), its interval over resamples of the val
   videos, each draw the same videos for every seed.

4. ``--view-ensemble`` (#36's "first, do no harm"): on the first data set, training seed 0, the video run on each
   of the other views (front, ego) too, and the default ensemble over one trial per view: one strong member
   (panoramic sees every action) and two weak ones; its nested gain over the panoramic trial on 4 fold draws.

Prints one JSON line. Finished runs in ``--workdir`` are reused (rerun the bench after changing the ensemble) if
they were trained with the configuration the bench would use now; one trained under an older precise.yaml stops the
bench (exit 2, naming the run and the keys): move it aside. ``--set K=V ... --tag T``: an A/B row, runs named by T.
All single-run figures are on val at the run's best epoch (chosen on val: optimistic); the ensemble's nested
out-of-fold figure is not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import FOLD_SEEDS, SINGLE, figures, talsearch  # noqa: E402

from tal_core.config import from_dict, load_config  # noqa: E402
from tal_core.run_folder import RunFolder  # noqa: E402

MODALITIES = ("video", "audio", "video+audio")
PRECISE = ROOT / "configs" / "precise.yaml"
# Keys that act in video+audio training only: a video or audio run trained before one of them changed is the same run.
FUSION_KEYS = {"model.fusion_detach", "model.modality_dropout", "loss.modality_weight", "loss.gradient_modulation"}


def single_run(data: Path, out: Path, modality: str, seed: int, epochs: int, *overrides: str) -> dict:
    """The recommended single run with ``data.modalities=modality`` (a finished one in ``out`` is reused if it
    was trained with the same configuration; one trained under an older precise.yaml stops the bench)."""
    started = time.perf_counter()
    settings = [*SINGLE, f"train.epochs={epochs}", f"data.modalities={modality}", f"train.seed={seed}", *overrides]
    if (out / "metrics.json").exists():
        refuse_stale(out, settings)
    else:
        talsearch("train", "--data", str(data), "--out", str(out), "--config", str(PRECISE), "--set", *settings,
                  cwd=out.parent)
    metrics = json.loads((out / "metrics.json").read_text())
    return figures(metrics) | {"modality": modality, "seed": seed, "best_epoch": metrics["best_epoch"],
                               "seconds": round(time.perf_counter() - started, 1)}


def refuse_stale(out: Path, settings: list[str]) -> None:
    """Exit 2 where the finished run in ``out`` was trained with another configuration than precise.yaml and
    ``settings`` give now (precise.yaml changed since): its figures would be reported as today's recipe."""
    wanted = load_config(PRECISE, settings).flat()
    stored = RunFolder(out).read_config()
    if stored is None:
        print(f"bench_audio: {out} has metrics but no config.yaml; move it aside to train it afresh", file=sys.stderr)
        raise SystemExit(2)
    trained = from_dict(stored).flat()  # keys added since the run was trained: their defaults
    inert = set() if wanted["data.modalities"] == "video+audio" else FUSION_KEYS
    differ = sorted(key for key in wanted if key not in inert | {"tracking.uri"} and wanted[key] != trained.get(key))
    if differ:
        shown = ", ".join(f"{key}={trained.get(key)!r} (now {wanted[key]!r})" for key in differ[:4])
        print(f"bench_audio: {out} was trained with another configuration: {shown}; move it aside (or name A/B "
              "runs with --tag) to train it afresh", file=sys.stderr)
        raise SystemExit(2)


def spread(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4), "min": round(min(values), 4), "max": round(max(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def ensemble_folder(selection: str) -> str:
    """Where a pair's ensemble under ``selection`` is written, inside the pair's folder."""
    return "ensemble" if selection == "auto" else f"ensemble_{selection.replace('/', '_')}"


def pair_ensemble(data: Path, work: Path, runs: dict[str, Path], selection: str = "auto") -> dict:
    """The default ensemble (or ``selection``, written to ``ensemble_<selection>``) over one trial of each
    modality, laid out as a sweep's trials (links to the runs)."""
    sweep = work / "sweep"
    (sweep / "trials").mkdir(parents=True, exist_ok=True)
    for name, run in runs.items():
        link = sweep / "trials" / name
        if not link.exists():
            link.symlink_to(run.resolve(), target_is_directory=True)
    started = time.perf_counter()
    out = work / ensemble_folder(selection)
    result = json.loads(talsearch("ensemble", "--sweep", str(sweep), "--data", str(data), "--out", str(out),
                                  "--fold-seeds", str(FOLD_SEEDS), "--selection", selection,
                                  "--set", f"tracking.uri=sqlite:///{work}/mlflow.db", cwd=work))
    ensemble, single, gain = result["ensemble"], result["best_single"], result["gain"]
    members = json.loads((out / "ensemble.json").read_text())["members"]
    return {"procedure": ensemble["procedure"], "members": {m["run_id"]: round(m["weight"], 3) for m in members},
            "nested_oof_val_mAP": round(float(ensemble["nested_oof_val_mAP"]), 4),
            "best_single": single.get("run_id"), "best_single_oof_val_mAP": round(float(single["oof_val_mAP"]), 4),
            "gain": round(float(gain["mAP"]), 4), "gain_interval": [round(gain["low"], 4), round(gain["high"], 4)],
            "gain_by_fold_seed": {row["seed"]: round(row["mAP"], 4) for row in gain["by_fold_seed"]},
            "seconds": round(time.perf_counter() - started, 1)}


def gain_over_seeds(data: Path, outs: list[Path]) -> dict:
    """The pair ensembles' gain over their best single member, averaged over the training seeds (one ensemble
    folder each, all on ``data``'s val videos), with a 90% interval over resamples of the val videos (each draw
    the same videos for every seed): their out-of-fold detections (``detections/val_out_of_fold*.json``) scored
    as the ensemble scored them (its ``decode`` section)."""
    from ensemble.gain import bootstrap_mean_gain
    from tal_core.data.annotations import load_ground_truth
    from tal_core.scoring.binning import binned_predictions, binned_truth
    from tal_core.scoring.formats import ground_truth_segments, placements_of, read_detections

    decode = json.loads((outs[0] / "ensemble.json").read_text())["decode"]
    spec = load_ground_truth(data)
    placements, bins = placements_of(spec), decode.get("bin_seconds")
    videos = list(json.loads((outs[0] / "detections" / "val_out_of_fold.json").read_text())["results"])
    gt = ground_truth_segments(spec, None)
    keep = [str(v) in videos for v in gt.video]
    truth = binned_truth(type(gt)(*(getattr(gt, k)[keep] for k in ("video", "label", "start", "end", "score"))),
                         bins, placements)
    pairs = [tuple(binned_predictions(read_detections(out / "detections" / name), bins, placements)
                   for name in ("val_out_of_fold.json", "val_out_of_fold_best_single.json")) for out in outs]
    found = bootstrap_mean_gain(truth, pairs, tuple(decode["tiou_thresholds"]))
    return {"seeds": len(outs), "mAP": round(found["mAP"], 4), "interval": [round(found["low"], 4),
                                                                            round(found["high"], 4)]}


def view_ensemble(data: Path, tag: str, work: Path, epochs: int) -> dict:
    """One video trial per view (training seed 0) and the default ensemble over them; ``tag`` names the data set's
    runs (its panoramic video run is the modality table's)."""
    runs = {"panoramic": work / f"{tag}_video_s0"}
    singles = {}
    for view in ("front", "ego"):
        runs[view] = work / f"{tag}_video_{view}_s0"
        singles[view] = single_run(data, runs[view], "video", 0, epochs, f"data.view={view}")
    return {"singles": singles, "ensemble": pair_ensemble(data, work / f"{tag}_views_ensemble", runs)}


def one_data_set(work: Path, data_seed: int, seeds: list[int], modalities: list[str], epochs: int,
                 selection: str = "auto", overrides: tuple[str, ...] = (), tag: str = "") -> dict:
    data = work / f"hard_d{data_seed}"
    if not (data / "annotations.json").exists():
        talsearch("synth", str(data), "--preset", "hard", "--seed", str(data_seed), "--audio", "mp4", cwd=work)
    runs = {m: [] for m in modalities}
    for seed in seeds:  # every modality early: a problem with one shows in the first minutes
        for m in modalities:
            name = f"d{data_seed}_{m.replace('+', '_')}{'_' + tag if tag else ''}_s{seed}"
            runs[m].append(single_run(data, work / name, m, seed, epochs, *overrides))
            print(f"[bench_audio] d{data_seed} {m} seed {seed}: val_mAP {runs[m][-1]['val_mAP']}", file=sys.stderr,
                  flush=True)
    result = {"data": f"synth --preset hard --seed {data_seed}", "runs": runs,
              "val_mAP": {m: spread([r["val_mAP"] for r in rs]) for m, rs in runs.items()}}
    if "video" in runs and "video+audio" in runs:
        result["fusion_gain_over_video"] = round(result["val_mAP"]["video+audio"]["mean"]
                                                 - result["val_mAP"]["video"]["mean"], 4)
    if "video" in runs and "audio" in runs and not tag:
        result["ensembles"] = [pair_ensemble(data, work / f"d{data_seed}_ensemble_s{s}", {
            "video": work / f"d{data_seed}_video_s{s}", "audio": work / f"d{data_seed}_audio_s{s}"}, selection) | {"seed": s}
            for s in seeds]
        result["ensemble_gain_over_seeds"] = gain_over_seeds(data, [
            work / f"d{data_seed}_ensemble_s{s}" / ensemble_folder(selection) for s in seeds])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "out" / "bench_audio")
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[0, 1], help="seeds of the hard data sets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of every run")
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, default=list(MODALITIES))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--view-ensemble", action="store_true",
                        help="also one video trial per view on the first data set, and their ensemble")
    parser.add_argument("--pair-selection", default="auto",
                        help="the video + audio ensembles' --selection (default auto; e.g. cv)")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides for every single run (an A/B row; needs --tag)")
    parser.add_argument("--tag", default="", help="names the --set runs (d0_video_audio_<tag>_s0 ...), so they are "
                        "never mistaken for the recipe's own runs; no ensembles or view trials are built for them")
    args = parser.parse_args()
    if bool(args.overrides) != bool(args.tag):
        parser.error("--set and --tag go together (a tagged run is an A/B row of the overrides)")
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = {"bench": "audio", "epochs": args.epochs, "seeds": args.seeds,
              "overrides": args.overrides, "tag": args.tag,
              "data_sets": [one_data_set(work, d, args.seeds, args.modalities, args.epochs, args.pair_selection,
                                         tuple(args.overrides), args.tag) for d in args.data_seeds]}
    if args.view_ensemble and not args.tag and "video" in args.modalities and 0 in args.seeds:
        first = args.data_seeds[0]
        result["views"] = view_ensemble(work / f"hard_d{first}", f"d{first}", work, args.epochs)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
