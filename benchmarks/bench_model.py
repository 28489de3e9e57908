"""Train-step time with temporal shift (fraction 1/8) vs without (0), 8 frames, CPU (and CUDA when present).

Prints one JSON line with ``shift_overhead_ratio`` (ResNet-18, CPU), clips/s per backbone and, from
torch.profiler, which ops the shift's extra time goes to (per train step, with shift minus without).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tal_core.config import LossConfig, ModelConfig  # noqa: E402
from tal_core.model.multitask import MultiTaskTSM  # noqa: E402
from tal_core.training.losses import multitask_loss  # noqa: E402


def setup(backbone: str, fraction: float, device: str, size: int, batch: int):
    torch.manual_seed(0)
    model = MultiTaskTSM(ModelConfig(backbone=backbone, shift_fraction=fraction), 8, 10, 4).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    clips = torch.randint(0, 255, (batch, 8, 3, size, size), dtype=torch.uint8, device=device)
    action = torch.randint(0, 11, (batch,), device=device)
    scene = torch.randint(0, 4, (batch,), device=device)
    return model, opt, clips, action, scene


def train_step(model, opt, clips, action, scene, device: str) -> None:
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        out = model(clips)
    loss = multitask_loss(out.action, out.scene, action, scene, LossConfig()).total
    opt.zero_grad()
    loss.backward()
    opt.step()
    if device == "cuda":
        torch.cuda.synchronize()


def step_time(backbone: str, fraction: float, device: str, size: int, batch: int, repeats: int) -> float:
    parts = setup(backbone, fraction, device, size, batch)
    times = []
    for i in range(repeats + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        train_step(*parts, device)
        if i >= 2:
            times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2]


def shift_cost_by_op(backbone: str, device: str, size: int, batch: int, steps: int = 5,
                     top: int = 8) -> dict[str, float]:
    """Where the shift's extra time goes: per op, microseconds per train step with shift 1/8 minus without
    (device time on CUDA, CPU time otherwise), from torch.profiler; the ``top`` largest."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    per_op = {}
    for fraction in (0.0, 0.125):
        parts = setup(backbone, fraction, device, size, batch)
        for _ in range(2):
            train_step(*parts, device)
        with profile(activities=activities) as prof:
            for _ in range(steps):
                train_step(*parts, device)
        per_op[fraction] = {event.key: (getattr(event, "self_device_time_total", 0) if device == "cuda"
                                        else event.self_cpu_time_total) / steps for event in prof.key_averages()}
    extra = {op: per_op[0.125].get(op, 0.0) - per_op[0.0].get(op, 0.0) for op in per_op[0.125].keys() | per_op[0.0]}
    return {op: round(us, 1) for op, us in sorted(extra.items(), key=lambda item: -item[1])[:top]}


def measure(backbone: str, device: str, size: int, batch: int, repeats: int) -> dict:
    # interleave with/without to share the machine's noise
    with_shift, without = [], []
    for _ in range(5):  # five rounds: on the 2-core VM single rounds of ResNet-18 moved the ratio by +-20%
        without.append(step_time(backbone, 0.0, device, size, batch, repeats))
        with_shift.append(step_time(backbone, 0.125, device, size, batch, repeats))
    w, wo = min(with_shift), min(without)
    return {"step_s_shift": round(w, 4), "step_s_noshift": round(wo, 4), "ratio": round(w / wo, 3),
            "clips_per_s": round(batch / w, 1)}


def main() -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    result = {"bench": "model", "frames": 8, "device": "cpu"}
    result["resnet18_cpu"] = measure("resnet18", "cpu", 112, 2, 3)
    result["tiny_cpu"] = measure("tiny", "cpu", 64, 8, 5)
    result["shift_overhead_ratio"] = result["resnet18_cpu"]["ratio"]
    result["tiny_cpu_shift_extra_us_by_op"] = shift_cost_by_op("tiny", "cpu", 64, 8)
    if torch.cuda.is_available():
        result["resnet18_cuda"] = measure("resnet18", "cuda", 224, 16, 10)
        result["resnet50_cuda"] = measure("resnet50", "cuda", 224, 8, 10)
        result["resnet50_cuda_shift_extra_us_by_op"] = shift_cost_by_op("resnet50", "cuda", 224, 8)
        result["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
