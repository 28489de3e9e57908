import json
import os

import pytest
import yaml
from pydantic import ValidationError

from helpers import ROOT
from tal_core.config import Config, ConfigError, flatten, load_config, parse_overrides, save_config, unflatten


def test_base_yaml_documents_every_default():
    text = (ROOT / "configs" / "base.yaml").read_text()
    assert flatten(yaml.safe_load(text)) == flatten(Config().model_dump(mode="json"))
    for line in text.splitlines():
        if line.startswith("  ") and ":" in line:
            assert "#" in line, f"base.yaml key without a comment: {line}"


def test_overrides_parse_as_yaml_and_apply():
    cfg = load_config(None, ["model.shift_fraction=0.25", "eval.tiou_thresholds=[0.5, 0.7]", "train.amp=false"])
    assert cfg.model.shift_fraction == 0.25
    assert cfg.eval.tiou_thresholds == (0.5, 0.7)
    assert cfg.train.amp is False


@pytest.mark.parametrize("pair, name", [
    ("data.interval_seconds=0", "data.interval_seconds"),
    ("model.shift_fraction=0.6", "model.shift_fraction"),
    ("model.backbone=vgg", "model.backbone"),
    ("model.shfit_fraction=0.1", "model.shfit_fraction"),
    ("train.epochs=abc", "train.epochs"),
    ("eval.tiou_thresholds=[1.5]", "eval.tiou_thresholds"),
])
def test_bad_values_name_their_key(pair, name):
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        load_config(None, [pair])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])


def test_yaml_file_errors_name_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml") as info:
        load_config(path)
    assert "train.lr" in str(info.value)


def test_configs_are_immutable_and_flat_roundtrip():
    cfg = Config()
    with pytest.raises(ValidationError):
        cfg.train.lr = 1.0
    flat = cfg.flat()
    assert unflatten(flat)["train"]["lr"] == cfg.train.lr
    changed = cfg.with_overrides({"train.lr": 0.5})
    assert changed.train.lr == 0.5 and cfg.train.lr != 0.5


@pytest.mark.parametrize("name", sorted(path.name for path in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_validate(name):
    from search.space import load_sweep

    load_sweep(ROOT / "configs" / name)


def test_tracking_credentials_move_to_mlflow_environment_variables(monkeypatch, tmp_path):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    cfg = load_config(None, {"tracking.uri": "http://bob:s3cret@127.0.0.1:5000/?access_token=tok123&x=1"})
    assert cfg.tracking.uri == "http://127.0.0.1:5000/?x=1"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "bob" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "tok123"
    save_config(cfg, tmp_path / "config.yaml")
    written = (tmp_path / "config.yaml").read_text() + json.dumps(cfg.flat())
    assert "s3cret" not in written and "tok123" not in written and "bob" not in written
    assert load_config(None, {"tracking.uri": "sqlite:///x.db"}).tracking.uri == "sqlite:///x.db"


@pytest.mark.parametrize("overrides, named", [
    ({"eval.grid_offsets": [0.5]}, "needs model.output=frame"),
    ({"model.output": "frame", "eval.grid_offsets": [0.3]}, "not whole cells"),
    ({"model.output": "frame", "eval.grid_offsets": [1.0]}, "eval.grid_offsets"),
    ({"model.output": "frame", "eval.grid_offsets": [0.5, 0.5]}, "each offset once"),
])
def test_grid_offsets_name_what_is_wrong(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_config(None, overrides)
