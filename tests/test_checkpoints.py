"""Published TSM checkpoint layouts, built here from a known torchvision state dict."""

import json
import re
from collections import OrderedDict

import pytest
import torch

from tal_core.config import ConfigError
from tal_core.model.backbones import build_backbone, plain_backbone
from tal_core.model.checkpoints import load_tensors, match_backbone
from talsearch.cli import main


def known_resnet18() -> OrderedDict:
    torch.manual_seed(0)
    state = plain_backbone("resnet18").state_dict()
    return OrderedDict((k, torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v)
                       for k, v in state.items())


def tsm_layout(state: OrderedDict) -> dict:
    """The TSM repository's: module.base_model.*, conv1 of each block wrapped by the shift (.net), new_fc head."""
    out = OrderedDict(("module.base_model." + re.sub(r"(layer[0-9]+[.][0-9]+[.]conv1)[.]", r"\1.net.", k), v)
                      for k, v in state.items())
    out["module.new_fc.weight"], out["module.new_fc.bias"] = torch.zeros(5, 512), torch.zeros(5)
    return {"epoch": 3, "arch": "resnet18", "state_dict": out}


def mmaction2_layout(state: OrderedDict) -> dict:
    """mmaction2's: backbone.* with ConvModule names, shift inside conv1.conv, cls_head.fc_cls head."""
    out = OrderedDict()
    for k, v in state.items():
        k = re.sub(r"^conv1[.]", "conv1.conv.", k)
        k = re.sub(r"^bn1[.]", "conv1.bn.", k)
        k = re.sub(r"(layer[0-9]+[.][0-9]+)[.]conv([0-9])[.]", r"\1.conv\2.conv.", k)
        k = re.sub(r"(layer[0-9]+[.][0-9]+)[.]bn([0-9])[.]", r"\1.conv\2.bn.", k)
        k = k.replace("downsample.0.", "downsample.conv.").replace("downsample.1.", "downsample.bn.")
        k = re.sub(r"(layer[0-9]+[.][0-9]+[.]conv1[.]conv)[.]", r"\1.net.", k)
        out[f"backbone.{k}"] = v
    out["cls_head.fc_cls.weight"], out["cls_head.fc_cls.bias"] = torch.zeros(5, 512), torch.zeros(5)
    return {"meta": {"epoch": 3}, "state_dict": out}


class MessageHub:
    """Stands for a training framework's object in a checkpoint's metadata."""

    def __init__(self):
        self.history = [1, 2]


@pytest.mark.parametrize(("layout", "build"), [("tsm", tsm_layout), ("mmaction2", mmaction2_layout)])
def test_published_layouts_load_every_backbone_tensor(tmp_path, capsys, layout, build):
    state = known_resnet18()
    payload = build(state)
    if layout == "mmaction2":
        payload["message_hub"] = MessageHub()  # not a tensor: read as an inert placeholder
    path = tmp_path / f"{layout}.pth"
    torch.save(payload, path)
    assert main(["weights", "--check", str(path), "--backbone", "resnet18"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == layout and report["missing"] == []
    weights = [k for k in state if not k.endswith("num_batches_tracked")]  # counters are not weights
    assert report["matched"] == len(weights) and len(report["unexpected"]) == 2  # the two head tensors
    net, _ = build_backbone("resnet18", 4, 0.125, "blockres", str(path))
    loaded = net.state_dict()
    for name, tensor in state.items():  # the shift wraps conv1 of each block after loading: .net. appears
        wrapped = re.sub(r"(layer[0-9]+[.][0-9]+[.]conv1)[.]", r"\1.net.", name)
        assert torch.equal(loaded[wrapped], tensor), name


def test_a_tensor_of_another_shape_exits_2_naming_it(tmp_path, capsys):
    payload = tsm_layout(known_resnet18())
    payload["state_dict"]["module.base_model.layer2.0.conv1.net.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(payload, tmp_path / "bad.pth")
    assert main(["weights", "--check", str(tmp_path / "bad.pth"), "--backbone", "resnet18"]) == 2
    err = capsys.readouterr().err.strip()
    assert "layer2.0.conv1.weight" in err and "[128, 64, 1, 1]" in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError, match="layer2.0.conv1.weight"):
        build_backbone("resnet18", 4, 0.125, "blockres", str(tmp_path / "bad.pth"))


def test_a_missing_tensor_is_named(tmp_path, capsys):
    payload = mmaction2_layout(known_resnet18())
    del payload["state_dict"]["backbone.layer4.1.conv2.bn.running_var"]
    torch.save(payload, tmp_path / "short.pth")
    assert main(["weights", "--check", str(tmp_path / "short.pth"), "--backbone", "resnet18"]) == 2
    assert "layer4.1.bn2.running_var" in capsys.readouterr().err


def test_mobilenet_v2_maps_by_position_with_shapes_checked(tmp_path):
    state = plain_backbone("mobilenet_v2").state_dict()
    renamed = {f"backbone.block{i}.param": v for i, (k, v) in enumerate(state.items())
               if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": renamed}, tmp_path / "mnv2.pth")
    matching = match_backbone(tmp_path / "mnv2.pth", plain_backbone("mobilenet_v2"), "mobilenet_v2")
    assert matching.first_problem() is None and len(matching.loaded) == len(renamed)


def test_our_own_run_checkpoint_loads_as_a_backbone(tmp_path):
    from tal_core.config import ModelConfig
    from tal_core.model.multitask import MultiTaskTSM

    model = MultiTaskTSM(ModelConfig(tiny_width=8), n_segment=2, num_actions=3, num_scenes=2)
    torch.save({"model": model.state_dict()}, tmp_path / "checkpoint.pt")
    tensors = load_tensors(tmp_path / "checkpoint.pt")
    net, _ = build_backbone("tiny", 2, 0.125, "blockres", str(tmp_path / "checkpoint.pt"), tiny_width=8)
    assert torch.equal(net.state_dict()["1.conv1.net.weight"], tensors["backbone.1.conv1.net.weight"])


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pth"):
        load_tensors(tmp_path / "junk.pth")
