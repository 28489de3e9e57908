"""The benchmark scripts' own pieces, on tiny inputs: they must keep running against the code they time."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_model_times_a_train_step_and_finds_the_shift_by_op():
    bench_model = bench("bench_model")
    assert bench_model.step_time("tiny", 0.125, "cpu", 32, 2, 1) > 0
    extra = bench_model.shift_cost_by_op("tiny", "cpu", 32, 2, steps=1, top=1000)
    # the shift's own autograd function runs only with the shift: all of its time is extra
    assert extra["_ShiftFunction"] > 0 and extra["_ShiftFunctionBackward"] > 0


def test_bench_throughput_measures_an_epoch_from_the_frame_cache(tiny_data, tmp_path):
    import torch

    from tal_core.data.annotations import load_dataset
    from tal_core.data.dataset import IntervalDataset
    from tal_core.data.video import FrameCache
    from tal_core.trainer import build_model

    bench_throughput = bench("bench_throughput")
    cfg = bench_throughput.config({"backbone": "tiny", "size": 32, "batch": 4})
    spec = load_dataset(tiny_data)
    dataset = IntervalDataset(spec, "train", cfg.data, train=True, cache=FrameCache(tmp_path / "cache"))
    run = bench_throughput.measure(dataset, build_model(cfg, spec), cfg, torch.device("cpu"), workers=0, pin=False)
    assert run["steps"] == len(dataset) // 4 and run["clips_per_s"] > 0
    assert 0 < run["busy_share"] <= 1 and run["compute_only_clips_per_s"] > 0


def test_bench_statistics_leave_out_the_cold_run_and_keep_the_best():
    assert bench("bench_sweep").warm_median([30.0, 20.0, 22.0, 21.0]) == 21.0
    assert bench("bench_sweep").warm_median([5.0]) == 5.0
    calls = iter([0.0, 0.0, 0.0])
    result, seconds = bench("bench_map").best_of(3, lambda: next(calls))
    assert result == 0.0 and seconds >= 0
    with pytest.raises(StopIteration):
        next(calls)
