import pytest
import torch

from tal_core.config import ConfigError, LossConfig, ModelConfig
from tal_core.model.backbones import BACKBONES, build_backbone
from tal_core.model.multitask import MultiTaskTSM
from tal_core.model.temporal_shift import TemporalShift
from tal_core.training.losses import multitask_loss


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("place", ["blockres", "block"])
def test_every_backbone_builds_and_trains_one_step(backbone, place):
    cfg = ModelConfig(backbone=backbone, shift_place=place, tiny_width=8)
    model = MultiTaskTSM(cfg, n_segment=2, num_actions=3, num_scenes=2)
    assert any(isinstance(m, TemporalShift) for m in model.modules())
    clips = torch.randint(0, 255, (2, 2, 3, 32, 32), dtype=torch.uint8)
    action, scene, frame, unimodal, contributions = model(clips)
    assert action.shape == (2, 4) and scene.shape == (2, 2) and frame is None and unimodal == () == contributions
    (action.sum() + scene.sum()).backward()
    assert all(p.grad is not None for p in model.action_head.parameters())


def test_frame_output_classifies_every_frame_and_trains_all_heads():
    model = MultiTaskTSM(ModelConfig(output="frame", tiny_width=8), n_segment=4, num_actions=3, num_scenes=2)
    clips = torch.randint(0, 255, (2, 4, 3, 32, 32), dtype=torch.uint8)
    out = model(clips)
    assert out.action.shape == (2, 4) and out.scene.shape == (2, 2) and out.frame.shape == (2, 4, 4)
    parts = multitask_loss(out.action, out.scene, torch.tensor([1, 0]), torch.tensor([0, 1]), LossConfig(),
                           out.frame, torch.tensor([[0, 1, 1, 1], [0, 0, 2, 2]]))
    assert parts.frame > 0
    parts.total.backward()
    assert all(p.grad is not None for head in (model.action_head, model.frame_head, model.scene_head)
               for p in head.parameters())


def test_frame_loss_weight_scales_its_term():
    torch.manual_seed(0)
    action_logits, scene_logits, frame_logits = torch.randn(2, 3), torch.randn(2, 2), torch.randn(2, 4, 3)
    action, scene, frames = torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([[0, 1, 1, 2], [2, 2, 0, 0]])
    base = multitask_loss(action_logits, scene_logits, action, scene, LossConfig(frame_weight=0.0),
                          frame_logits, frames)
    weighted = multitask_loss(action_logits, scene_logits, action, scene, LossConfig(frame_weight=2.0),
                              frame_logits, frames)
    assert torch.isclose(weighted.total, base.total + 2 * base.frame)
    expected = torch.nn.functional.cross_entropy(frame_logits.reshape(-1, 3), frames.reshape(-1))
    assert torch.isclose(base.frame, expected)


def test_no_shift_inserted_at_fraction_zero():
    net, _ = build_backbone("tiny", 4, 0.0, "blockres", tiny_width=8)
    assert not any(isinstance(m, TemporalShift) for m in net.modules())


def test_local_pretrained_weights_load(tmp_path):
    net, _ = build_backbone("tiny", 2, 0.0, "blockres", tiny_width=8)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    loaded, _ = build_backbone("tiny", 2, 0.0, "blockres", pretrained=str(tmp_path / "w.pt"), tiny_width=8)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values(),
                                                  strict=True))
    with pytest.raises(ConfigError, match="model.pretrained"):
        build_backbone("tiny", 2, 0.0, "blockres", pretrained=str(tmp_path / "none.pt"))


def test_loss_weights_scale_their_terms():
    torch.manual_seed(0)
    action_logits, scene_logits = torch.randn(4, 3), torch.randn(4, 2)
    action, scene = torch.tensor([0, 1, 2, 1]), torch.tensor([0, 1, -1, 1])
    base = multitask_loss(action_logits, scene_logits, action, scene, LossConfig(action_weight=1, scene_weight=1))
    only_action = multitask_loss(action_logits, scene_logits, action, scene,
                                 LossConfig(action_weight=2, scene_weight=0))
    assert torch.isclose(base.total, base.action + base.scene)
    assert torch.isclose(only_action.total, 2 * base.action)
    heavy_bg = multitask_loss(action_logits, scene_logits, action, scene, LossConfig(background_weight=5.0))
    assert not torch.isclose(heavy_bg.action, base.action)


def test_imagenet_weights_load_offline_from_the_torch_hub_cache(tmp_path, monkeypatch):
    import torchvision

    from tal_core.model.weights import weights_file, weights_report

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("TALSEARCH_OFFLINE", "1")
    needed = weights_file("resnet18")
    assert needed.path == tmp_path / "hub" / "checkpoints" / needed.url.rsplit("/", 1)[-1]
    with pytest.raises(ConfigError, match=needed.path.name):  # nothing cached, no download: names the file
        build_backbone("resnet18", 2, 0.0, "blockres", pretrained="imagenet")
    reference = torchvision.models.resnet18(weights=None)
    needed.path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), needed.path)
    net, _ = build_backbone("resnet18", 2, 0.0, "blockres", pretrained="imagenet")
    assert torch.equal(net.state_dict()["conv1.weight"], reference.state_dict()["conv1.weight"])
    report = {row["backbone"]: row for row in weights_report()}
    assert report["resnet18"]["present"] and report["resnet18"]["hash_ok"] is False  # not torchvision's file
    assert report["resnet50"]["present"] is False
