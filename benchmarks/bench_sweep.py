"""A small sweep on synthetic data: trials/hour, time from trial start to first training step, and the share
of wall time spent outside training. Prints one JSON line with ``overhead_s_per_trial``.

In the same run it measures Ray Train's own floor: ``TorchTrainer.fit`` (our ``TrialTrainer``, same worker
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

set_train_env(0.5, local=True)
ray.init(log_to_driver=False, configure_logging=False)
with tempfile.TemporaryDirectory() as storage:
    times = []
    for i in range(3):
        started = time.perf_counter()
        TrialTrainer(report_once, torch_config=TorchConfig(backend="gloo"),
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
        train_s, total_s, first, start = [], [], [], []
        for trial_id, outcome in state["trials"].items():
            history = (tmp / "sweep" / "trials" / trial_id / "history.jsonl").read_text().splitlines()
            train_s.append(sum(json.loads(line)["epoch_seconds"] for line in history))
            total_s.append(outcome["time_total_s"])
            first.append(outcome["first_step_s"])
            start.append(outcome["worker_start_s"])
    n = len(total_s)
    overhead = (sum(total_s) - sum(train_s)) / n
    floor = ray_train_floor_s()
    print(json.dumps({"bench": "sweep", "trials": n, "epochs": epochs, "workers_per_trial": 2,
                      "wall_s": round(wall, 1), "trials_per_hour": round(3600 * n / wall, 1),
                      "first_step_s": round(sum(first) / n, 1), "worker_group_start_s": round(sum(start) / n, 1),
                      "overhead_s_per_trial": round(overhead, 1), "ray_train_floor_s": round(floor, 1),
                      "overhead_vs_ray_train_floor": round(overhead / floor, 2),
                      "share_outside_training": round(1 - sum(train_s) / wall, 3), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
