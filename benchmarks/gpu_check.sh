#!/usr/bin/env bash
# The device checks in one script (GPU machine, its own python3 with torch): GPU tests, model benchmark (shift
# overhead and where it goes, by op), training throughput from the frame cache, and a real Ray sweep on the GPU.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-}:$PWD"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_temporal_shift.py 2>&1 | tail -15 | tee "$OUT/pytest.txt"
python3 benchmarks/bench_model.py 2>&1 | tail -3 | tee "$OUT/bench_model.json"
# ResNet-50 TSM fed from the frame cache: clips/s, the share of the epoch the GPU computes, per data-path setting
python3 benchmarks/bench_throughput.py 2>&1 | tail -3 | tee "$OUT/bench_throughput.json"
# A real Ray sweep on the one GPU: two concurrent single-worker trials sharing it (search.gpus_per_worker 0.5),
# MLflow on SQLite; needs ray, optuna, mlflow on the machine (install their wheels there first).
if python3 -c "import ray, optuna, mlflow" 2>/dev/null; then
  work=$(mktemp -d)
  python3 -m talsearch.cli synth "$work/data" --videos 12 --seed 0 > /dev/null
  python3 -m talsearch.cli sweep --data "$work/data" --config configs/sweep_demo.yaml --out "$work/sweep" \
    --set search.use_gpu=true search.gpus_per_worker=0.5 search.trial_workers=1 search.num_samples=2 \
    search.max_concurrent=2 train.epochs=2 "tracking.uri=sqlite:///$work/mlflow.db" 2>&1 | tail -5 | tee "$OUT/gpu_sweep.txt"
  python3 - "$work" <<'PY' | tee -a "$OUT/gpu_sweep.txt"
import json, sys
from mlflow.tracking import MlflowClient
state = json.load(open(f"{sys.argv[1]}/sweep/sweep.json"))
client = MlflowClient(state["tracking_uri"])
children = client.search_runs([client.get_run(state["parent_run_id"]).info.experiment_id],
                              f"tags.mlflow.parentRunId = '{state['parent_run_id']}'")
print(json.dumps({"trials": {k: v["status"] for k, v in state["trials"].items()},
                  "mlflow_children": sorted(r.info.status for r in children)}))
PY
else
  echo "ray/optuna/mlflow not installed: GPU sweep skipped" | tee "$OUT/gpu_sweep.txt"
fi
