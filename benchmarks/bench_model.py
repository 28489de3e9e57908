"""Train-step time with temporal shift (fraction 1/8) vs without (0), 8 frames, CPU (and CUDA when present).

Prints one JSON line with ``shift_overhead_ratio`` (ResNet-18, CPU) and clips/s per backbone.
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
from tal_core.losses import multitask_loss  # noqa: E402
from tal_core.model.multitask import MultiTaskTSM  # noqa: E402


def step_time(backbone: str, fraction: float, device: str, size: int, batch: int, repeats: int) -> float:
    torch.manual_seed(0)
    model = MultiTaskTSM(ModelConfig(backbone=backbone, shift_fraction=fraction), 8, 10, 4).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    clips = torch.randint(0, 255, (batch, 8, 3, size, size), dtype=torch.uint8, device=device)
    action = torch.randint(0, 11, (batch,), device=device)
    scene = torch.randint(0, 4, (batch,), device=device)
    times = []
    for i in range(repeats + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            a, s = model(clips)
        loss = multitask_loss(a, s, action, scene, LossConfig()).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2]


def measure(backbone: str, device: str, size: int, batch: int, repeats: int) -> dict:
    # interleave with/without to share the machine's noise
    with_shift, without = [], []
    for _ in range(3):
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
    if torch.cuda.is_available():
        result["resnet18_cuda"] = measure("resnet18", "cuda", 224, 16, 10)
        result["resnet50_cuda"] = measure("resnet50", "cuda", 224, 8, 10)
        result["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
