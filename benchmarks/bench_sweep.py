"""A small sweep on synthetic data: trials/hour, time from trial start to first training step, and the share
of wall time spent outside training. Prints one JSON line with ``overhead_s_per_trial``.

In the same run it measures Ray Train's own floor: ``TorchTrainer.fit`` (our ``TrialTrainer`` without its import warm-up, same worker
count and environment as a trial) of a train function that only reports once, on a warm local cluster. A
trial cannot start faster than that; ``overhead_vs_ray_train_floor`` is our overhead divided by it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


FLOOR_SCRIPT = """
import os, sys, tempfile, time
import ray
sys.path.insert(0, sys.argv[1])
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchConfig
from search.trial import TrialTrainer, set_train_env

def report_once(config):
    ray.train.report({"done": 1})

class FloorTrainer(TrialTrainer):
    warm_imports = False  # Ray Train's own start-up, none of ours

set_train_env(0.5, local=True)
ray.init(log_to_driver=False, configure_logging=False)
with tempfile.TemporaryDirectory() as storage:
    times = []
    for i in range(3):
        started = time.perf_counter()
        FloorTrainer(report_once, torch_config=TorchConfig(backend="gloo"),
                     scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                     run_config=RunConfig(name=f"floor{i}", storage_path=storage)).fit()
        times.append(time.perf_counter() - started)
print(min(times[1:]))
"""


def ray_train_floor_s() -> float:
    done = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, str(ROOT)], check=True, capture_output=True,
                          text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(trials: int = 3, epochs: int = 2) -> None:
    from tal_core.data.synth import SynthSpec, synthesize

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", SynthSpec(videos=12, seed=2, size=64, views=("front",)))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "talsearch.cli", "sweep", "--data", str(tmp / "data"), "--config",
                        str(ROOT / "configs" / "sweep_demo.yaml"), "--out", str(tmp / "sweep"), "--set",
                        f"search.num_samples={trials}", f"train.epochs={epochs}", "search.asha=false",
                        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}"], check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, TALSEARCH_CACHE=str(tmp / "cache")), cwd=tmp)
        wall = time.perf_counter() - started
        state = json.loads((tmp / "sweep" / "sweep.json").read_text())
        train_s, total_s, first, start, loop_end = [], [], [], [], []
        for trial_id, outcome in state["trials"].items():
            trial_dir = tmp / "sweep" / "trials" / trial_id
            history = (trial_dir / "history.jsonl").read_text().splitlines()
            train_s.append(sum(json.loads(line)["epoch_seconds"] for line in history))
            total_s.append(outcome["time_total_s"])
            first.append(outcome["first_step_s"])
            start.append(outcome["worker_start_s"])
            loop_end.append(json.loads((trial_dir / "worker_0.json").read_text())["loop_end_s"])
    n = len(total_s)
    overhead = (sum(total_s) - sum(train_s)) / n
    floor = ray_train_floor_s()
    mean = lambda values: round(sum(values) / n, 2)  # noqa: E731
    # where a trial's time outside training goes: Ray Train starting the worker group; the worker's own set-up
    # until its first optimizer step; reports, checkpoints and best-epoch outputs between epochs; the end of
    # the Train run and Tune's bookkeeping after the loop returns
    breakdown = {"worker_group_start_s": mean(start), "setup_to_first_step_s": mean([f - s for f, s in zip(first, start, strict=True)]),
                 "between_epochs_s": mean([e - f - t for e, f, t in zip(loop_end, first, train_s, strict=True)]),
                 "after_loop_s": mean([total - e for total, e in zip(total_s, loop_end, strict=True)])}
    print(json.dumps({"bench": "sweep", "trials": n, "epochs": epochs, "workers_per_trial": 2,
                      "wall_s": round(wall, 1), "trials_per_hour": round(3600 * n / wall, 1),
                      "first_step_s": round(sum(first) / n, 1), "worker_group_start_s": round(sum(start) / n, 1),
                      "overhead_s_per_trial": round(overhead, 1), "ray_train_floor_s": round(floor, 1),
                      "overhead_vs_ray_train_floor": round(overhead / floor, 2),
                      "share_outside_training": round(1 - sum(train_s) / wall, 3), "overhead_breakdown": breakdown,
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
