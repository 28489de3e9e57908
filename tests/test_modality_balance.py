import math

import pytest
import torch
from torch import nn

from tal_core.config import LossConfig, ModelConfig
from tal_core.model.multitask import MultiTaskTSM, contributions_of
from tal_core.training.modality_balance import coefficients, modality_factors, modality_scores, scaled_step


def test_the_stronger_modality_is_slowed_by_one_minus_tanh_of_its_lead():
    assert coefficients(torch.tensor([3.0, 1.0]), 0.5) == pytest.approx([1 - math.tanh(1.0), 1.0])
    assert coefficients(torch.tensor([2.0, 4.0]), 0.25) == pytest.approx([1.0, 1 - math.tanh(0.25)])
    assert coefficients(torch.tensor([2.0, 2.0]), 5.0) == [1.0, 1.0]  # balanced: nothing changes
    assert coefficients(torch.tensor([1.0, 0.0]), 0.5)[0] == pytest.approx(0.0)  # a silent partner: frozen lead


def test_contributions_add_up_to_the_fused_logits_and_score_the_target():
    torch.manual_seed(0)
    head = nn.Linear(5, 4)
    features = torch.randn(6, 5)
    parts = contributions_of(head, features, [3, 2])
    assert [p.shape for p in parts] == [(6, 4), (6, 4)]
    assert torch.allclose(parts[0] + parts[1], head(features), atol=1e-6)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    expected = [p.softmax(1)[torch.arange(6), target].sum() for p in parts]
    assert modality_scores(parts, target) == pytest.approx(torch.stack(expected))


def test_the_leading_branch_update_is_scaled_under_adam_where_a_gradient_factor_would_vanish():
    def moved(factors, on_gradients=False):
        torch.manual_seed(0)
        video, audio = nn.Linear(3, 2), nn.Linear(3, 2)
        start = [p.detach().clone() for p in [*video.parameters(), *audio.parameters()]]
        optimizer = torch.optim.AdamW([*video.parameters(), *audio.parameters()], lr=0.1, weight_decay=0.0)
        for step in range(5):
            optimizer.zero_grad()
            (video(torch.ones(1, 3)).sum() + audio(torch.ones(1, 3)).sum() * (step + 1)).backward()
            if on_gradients:  # the paper's way, under SGD
                for branch, factor in zip((video, audio), factors, strict=True):
                    for parameter in branch.parameters():
                        parameter.grad.mul_(factor)
                optimizer.step()
            else:
                scaled_step(optimizer, [video, audio], factors)
        now = [p.detach() for p in [*video.parameters(), *audio.parameters()]]
        return [float((a - b).abs().sum()) for a, b in zip(now, start, strict=True)]

    plain, slowed = moved([1.0, 1.0]), moved([1.0, 0.25])
    assert slowed[:2] == pytest.approx(plain[:2])  # video: as without modulation
    assert slowed[2:] == pytest.approx([0.25 * m for m in plain[2:]], rel=1e-5)  # audio: a quarter of each step
    assert moved([1.0, 0.25], on_gradients=True) == pytest.approx(plain, rel=1e-4)  # Adam divides that away


def test_modality_factors_slow_the_modality_that_scores_the_target():
    target = torch.tensor([0, 0])
    sure, unsure = torch.tensor([[9.0, 0.0], [9.0, 0.0]]), torch.zeros(2, 2)  # audio says "class 0" loudly
    factors = modality_factors((unsure, sure), target, alpha=1.0)
    lead = (2 * torch.softmax(torch.tensor([9.0, 0.0]), 0)[0]) / 1.0
    assert factors == pytest.approx([1.0, 1 - math.tanh(float(lead) - 1)])


def test_video_audio_model_reports_contributions_in_training_only():
    cfg = ModelConfig(tiny_width=8, audio_width=4, dropout=0.0)
    model = MultiTaskTSM(cfg, 2, 5, 4, "video+audio").train()
    inputs = {"video": torch.randint(0, 255, (3, 2, 3, 32, 32), dtype=torch.uint8), "audio": torch.randn(3, 2, 96, 64)}
    out = model(inputs)
    assert len(out.contributions) == 2 and torch.allclose(sum(out.contributions), out.action, atol=1e-5)
    assert [type(b).__name__ for b in model.branches()] == [type(model.backbone).__name__, "AudioBranch"]
    assert model.eval()(inputs).contributions == ()
    assert MultiTaskTSM(cfg, 2, 5, 4, "video").train()(inputs["video"]).contributions == ()
    assert MultiTaskTSM(cfg, 2, 5, 4, "video+audio", contributions=False).train()(inputs).contributions == ()


def test_the_trainer_asks_for_contributions_only_with_gradient_modulation():
    from types import SimpleNamespace

    from tal_core.config import load_config
    from tal_core.training.trainer import build_model

    spec = SimpleNamespace(taxonomy=SimpleNamespace(actions=["a", "b"], scenes=["s"]))
    tiny = {"model.backbone": "tiny", "model.tiny_width": 8, "data.modalities": "video+audio"}
    for alpha, asked in ((0.0, False), (0.5, True)):
        model = build_model(load_config(None, tiny | {"loss.gradient_modulation": alpha}), spec)
        assert model.contributions is asked


def test_one_training_step_with_modulation_slows_one_branch_never_the_heads():
    from tal_core.training.loops import train_one_epoch

    torch.manual_seed(0)
    cfg = ModelConfig(tiny_width=8, audio_width=4, dropout=0.0)
    inputs = {"video": torch.randint(0, 255, (4, 2, 3, 32, 32), dtype=torch.uint8), "audio": torch.randn(4, 2, 96, 64)}
    batch = [(inputs, torch.tensor([1, 2, 3, 4]), torch.zeros(4, 2, dtype=torch.long), torch.tensor([0, 1, 2, 3]),
              None)]

    def step(alpha: float) -> dict:
        torch.manual_seed(1)
        model = MultiTaskTSM(cfg, 2, 5, 4, "video+audio")
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        losses = train_one_epoch(model, batch, optimizer, scheduler, LossConfig(gradient_modulation=alpha),
                                 torch.device("cpu"), amp=False)
        scales.append({k: v for k, v in losses.items() if k.startswith("train_update_scale")})
        return {n: (p.detach() - start[n]).abs().sum().item() for n, p in model.named_parameters()}

    scales = []
    plain, balanced = step(0.0), step(10.0)
    assert scales[0] == {} and sorted(scales[1]) == ["train_update_scale_audio", "train_update_scale_video"]
    assert min(scales[1].values()) < 1.0 == max(scales[1].values())  # the epoch's mean factors: one branch slowed
    moved = {branch: (sum(v for n, v in plain.items() if n.startswith(branch)),
                      sum(v for n, v in balanced.items() if n.startswith(branch)))
             for branch in ("backbone", "audio_branch", "action_head")}
    slowed = [name for name, (before, after) in moved.items() if after < before * 0.99]
    assert len(slowed) == 1 and slowed[0] in ("backbone", "audio_branch")  # one branch slowed, never the heads
    assert moved["action_head"][0] == pytest.approx(moved["action_head"][1])
