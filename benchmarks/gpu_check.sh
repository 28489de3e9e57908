#!/usr/bin/env bash
# The device checks in one script (GPU machine, its own python3 with torch): GPU tests + model benchmark.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-}:$PWD"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_temporal_shift.py 2>&1 | tail -15 | tee "$OUT/pytest.txt"
python3 benchmarks/bench_model.py 2>&1 | tail -3 | tee "$OUT/bench_model.json"
