"""Training throughput fed from the frame cache, and the share of an epoch the device spends computing.

For each data-path setting (DataLoader worker processes, pinned memory) it trains one epoch from the frame
cache through the trainer's own loop (``loops.train_one_epoch``: augmentation, host-to-device copy, forward,
backward, optimizer step) and times the same number of steps on one batch already on the device. The busy
share is compute time / epoch time: 1.0 means the data path never keeps the device waiting.

With CUDA: ResNet-50 TSM, 224 px, 8 frames, bf16 autocast, channels_last (the model's default on CUDA). On
CPU (what CI machines have): the tiny backbone at 64 px, to check the script and the data path's shape. One
JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tal_core.config import load_config  # noqa: E402
from tal_core.data.annotations import load_dataset  # noqa: E402
from tal_core.data.dataset import IntervalDataset  # noqa: E402
from tal_core.data.synth import SynthSpec, synthesize  # noqa: E402
from tal_core.data.video import FrameCache  # noqa: E402
from tal_core.training.loops import train_one_epoch  # noqa: E402
from tal_core.training.trainer import build_model  # noqa: E402

SETTINGS = {  # device -> backbone, frame size, batch, synthetic videos, loader worker counts to try
    "cuda": {"backbone": "resnet50", "size": 224, "batch": 16, "videos": 16, "workers": (0, 4, 8, 12)},
    "cpu": {"backbone": "tiny", "size": 64, "batch": 8, "videos": 12, "workers": (0, 1)},
}


def config(setting: dict):
    return load_config(None, {"data.view": "front", "data.interval_seconds": 1.0, "data.frames_per_interval": 8,
                              "data.decode_fps": 8.0, "data.image_size": setting["size"],
                              "model.backbone": setting["backbone"], "model.pretrained": "none",
                              "model.shift_fraction": 0.125, "train.batch_size": setting["batch"]})


def timed_epoch(model, batches, optimizer, scheduler, cfg, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    train_one_epoch(model, batches, optimizer, scheduler, cfg.loss, device, amp=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(dataset, model, cfg, device, workers: int, pin: bool) -> dict:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loader = DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=True, num_workers=workers,
                        pin_memory=pin, drop_last=True, persistent_workers=False)
    steps = len(loader)
    on_device = [part.to(device) if torch.is_tensor(part) else part for part in next(iter(loader))]
    timed_epoch(model, [on_device] * 3, optimizer, scheduler, cfg, device)  # warm-up (cuDNN, allocator)
    epoch_s = timed_epoch(model, loader, optimizer, scheduler, cfg, device)
    compute_s = timed_epoch(model, [on_device] * steps, optimizer, scheduler, cfg, device)
    clips = steps * cfg.train.batch_size
    return {"loader_workers": workers, "pin_memory": pin, "steps": steps, "epoch_s": round(epoch_s, 3),
            "clips_per_s": round(clips / epoch_s, 1), "compute_only_clips_per_s": round(clips / compute_s, 1),
            "busy_share": round(min(1.0, compute_s / epoch_s), 3)}


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    setting = SETTINGS[device.type]
    cfg = config(setting)
    with tempfile.TemporaryDirectory() as tmp:
        synthesize(Path(tmp) / "data", SynthSpec(videos=setting["videos"], seed=0, size=setting["size"],
                                                 duration=(30.0, 40.0), views=("front",), val_share=0.1,
                                                 test_share=0.1))
        spec = load_dataset(Path(tmp) / "data")
        started = time.perf_counter()
        dataset = IntervalDataset(spec, "train", cfg.data, train=True, cache=FrameCache(Path(tmp) / "cache"))
        cache_s = time.perf_counter() - started
        torch.manual_seed(0)
        model = build_model(cfg, spec).to(device)
        runs = [measure(dataset, model, cfg, device, workers, pin)
                for workers in setting["workers"] for pin in ((False, True) if device.type == "cuda" else (False,))]
    best = max(runs, key=lambda run: run["clips_per_s"])
    print(json.dumps({"bench": "throughput", "device": torch.cuda.get_device_name(0) if device.type == "cuda"
                      else "cpu", "backbone": setting["backbone"], "image_size": setting["size"], "frames": 8,
                      "batch": setting["batch"], "train_intervals": len(dataset), "cache_build_s": round(cache_s, 1),
                      "clips_per_s": best["clips_per_s"], "busy_share": best["busy_share"],
                      "best_data_path": {"loader_workers": best["loader_workers"], "pin_memory": best["pin_memory"]},
                      "runs": runs, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
