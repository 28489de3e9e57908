"""A small sweep on synthetic data: trials/hour, time from trial start to first training step, and the share
of wall time spent outside training. Prints one JSON line with ``overhead_s_per_trial``.

In the same run it measures Ray Train's own floor on a warm local cluster with the same worker count and
environment knobs as a trial (controller polling interval, no preemption watcher): the wall time of
``TorchTrainer.fit()`` of a train function that only reports once, from the call until the run has shut its
workers down. A trial's overhead is measured over the same span: from the trial's start until its
``fit()`` returned (``trial_timing.json``), less its epochs' seconds. Both sides leave out their first, cold
run (Ray's own agents are still starting then) and take the median of the rest.

``overhead_vs_ray_train_floor`` divides by the plain ``TorchTrainer``'s floor. ``overhead_vs_tuned_floor`` is
the stricter figure: the floor of our ``TrialTrainer`` without its import warm-up, which also starts no Ray
Data dataset-manager actor.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


FLOOR_SCRIPT = """
import json, sys, tempfile, time
import ray
sys.path.insert(0, sys.argv[1])
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from search.trial import TrialTrainer, set_train_env

def report_once(config):
    ray.train.report({"done": 1})

class TunedFloorTrainer(TrialTrainer):
    warm_imports = False  # what TrialTrainer saves in Ray Train's start-up, none of its own work

set_train_env(0.5, local=True)
ray.init(address="local", log_to_driver=False, configure_logging=False)
times = {"plain": [], "tuned": []}
with tempfile.TemporaryDirectory() as storage:
    for i in range(int(sys.argv[2])):
        for kind, trainer in (("plain", TorchTrainer), ("tuned", TunedFloorTrainer)):  # interleaved: same drift
            started = time.perf_counter()
            backend = {"torch_config": TorchConfig(backend="gloo")} if kind == "plain" else {}  # tuned: its own
            trainer(report_once, **backend,
                    scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                    run_config=RunConfig(name=f"{kind}{i}", storage_path=storage)).fit()
            times[kind].append(time.perf_counter() - started)
print(json.dumps(times))
"""


def ray_train_floors_s(runs: int) -> dict[str, list[float]]:
    """Seconds of each empty 2-worker fit(), plain TorchTrainer and tuned TrialTrainer, first runs included."""
    done = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, str(ROOT), str(runs)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def warm_runs(values: list) -> list:
    """All runs but the first, cold one (Ray's own agents are still starting then), when there are others."""
    return values[1:] if len(values) > 1 else values


def warm_median(values: list[float]) -> float:
    return statistics.median(warm_runs(values))


def run_sweep(tmp: Path, trials: int, epochs: int, storage: bool = False) -> float:
    from tal_core.data.synth import SynthSpec, synthesize

    synthesize(tmp / "data", SynthSpec(videos=12, seed=2, size=64, views=("front",)))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "talsearch.cli", "sweep", "--data", str(tmp / "data"), "--config",
                    str(ROOT / "configs" / "sweep_demo.yaml"), "--out", str(tmp / "sweep"), "--set",
                    f"search.num_samples={trials}", "search.sampler=tpe", f"train.epochs={epochs}", "search.scheduler=fifo",
                    f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
                    *(["--storage", str(tmp / "storage")] if storage else [])], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, TALSEARCH_CACHE=str(tmp / "cache")), cwd=tmp)
    return time.perf_counter() - started


def trial_timings(sweep_dir: Path) -> list[dict]:
    """Per trial, in start order: seconds from its start to the worker loop, the first step, the loop's end
    (rank 0's ``worker_0.json``) and fit()'s return (``trial_timing.json``), and its epochs' seconds."""
    from tal_core.io import read_jsonl

    rows = []
    for trial_id in json.loads((sweep_dir / "sweep.json").read_text())["trials"]:
        trial_dir = sweep_dir / "trials" / trial_id
        rows.append({"train_s": sum(line["epoch_seconds"] for line in read_jsonl(trial_dir / "history.jsonl")),
                     **json.loads((trial_dir / "worker_0.json").read_text()),
                     **json.loads((trial_dir / "trial_timing.json").read_text())})
    return sorted(rows, key=lambda row: row["started"])


def main(trials: int = 5, epochs: int = 2, floor_runs: int = 5, storage: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wall = run_sweep(Path(tmp), trials, epochs, storage)
        rows = trial_timings(Path(tmp) / "sweep")
    floors = ray_train_floors_s(floor_runs)
    overheads = [row["fit_returned_s"] - row["train_s"] for row in rows]
    overhead, plain, tuned = warm_median(overheads), warm_median(floors["plain"]), warm_median(floors["tuned"])
    warm = warm_runs(rows)

    def mean(key):
        return round(statistics.mean(key(row) for row in warm), 2)

    # where a warm trial's time outside training goes: Ray Train starting the worker group; the worker's own
    # set-up until its first optimizer step; reports, checkpoints and best-epoch outputs between epochs; the
    # end of the Train run (workers shut down) after the loop returns
    breakdown = {"worker_group_start_s": mean(lambda r: r["worker_start_s"]),
                 "setup_to_first_step_s": mean(lambda r: r["first_step_s"] - r["worker_start_s"]),
                 "between_epochs_s": mean(lambda r: r["loop_end_s"] - r["first_step_s"] - r["train_s"]),
                 "after_loop_s": mean(lambda r: r["fit_returned_s"] - r["loop_end_s"])}
    print(json.dumps({"bench": "sweep", "trials": len(rows), "epochs": epochs, "workers_per_trial": 2,
                      "storage": storage,
                      "wall_s": round(wall, 1), "trials_per_hour": round(3600 * len(rows) / wall, 1),
                      "first_step_s": mean(lambda r: r["first_step_s"]),
                      "worker_group_start_s": breakdown["worker_group_start_s"],
                      "overhead_s_per_trial": round(overhead, 2),
                      "overhead_s_each": [round(value, 2) for value in overheads],
                      "ray_train_floor_s": round(plain, 2), "overhead_vs_ray_train_floor": round(overhead / plain, 3),
                      "tuned_floor_s": round(tuned, 2), "overhead_vs_tuned_floor": round(overhead / tuned, 3),
                      "floor_runs_s": {kind: [round(v, 2) for v in values] for kind, values in floors.items()},
                      "share_outside_training": round(1 - sum(r["train_s"] for r in rows) / wall, 3),
                      "overhead_breakdown": breakdown, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--floor-runs", type=int, default=5)
    parser.add_argument("--storage", action="store_true",
                        help="trials persist through --storage (a local folder): uploads after every epoch and "
                             "the driver's pulls are in the overhead")
    args = parser.parse_args()
    main(args.trials, args.epochs, args.floor_runs, args.storage)
