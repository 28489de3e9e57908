import json

import numpy as np
import pytest

from helpers import TINY_OVERRIDES
from tal_core.config import Config, ConfigError, load_config
from tal_core.data.annotations import load_dataset
from tal_core.decoding.decoding_choice import choose_decoding
from tal_core.decoding.evaluation import decode_predictions, detection_metrics
from tal_core.scoring.predictions import IntervalPredictions, load_predictions
from tal_core.training.trainer import fit

CELL = 0.25  # seconds
DURATION = 8.0
ACTION = (2.0, 4.0)  # every video's one action, in seconds
MEDIAN = {"smooth": "median", "smooth_seconds": 0.75}  # three cells: drops an isolated wrong cell, keeps steps


def _spec(tmp_path, videos):
    database = {v: {"subset": "val", "duration": DURATION, "scene": "s", "views": {"front": f"{v}.mp4"},
                    "annotations": [{"segment": list(ACTION), "label": "a"}]} for v in videos}
    (tmp_path / "annotations.json").write_text(json.dumps(
        {"taxonomy": {"actions": ["a"], "scenes": ["s"], "views": ["front"]}, "database": database}))
    return load_dataset(tmp_path, check_files=False)


def _predictions(videos, flickering):
    """Cells of 0.25 s: action 'a' on ACTION, exactly; in the videos of ``flickering`` one cell in the middle of
    the action reads as background."""
    starts = np.arange(0, DURATION, CELL)
    inside = (starts >= ACTION[0]) & (starts < ACTION[1])
    probs = []
    for video in videos:
        p_action = np.where(inside, 0.9, 0.05)
        if video in flickering:
            p_action[np.flatnonzero(inside)[4]] = 0.05
        probs.append(np.stack([1 - p_action, p_action], axis=1))
    return IntervalPredictions.from_videos(videos, [starts] * len(videos), [starts + CELL] * len(videos), probs,
                                           np.ones((len(videos), 1)), {"actions": ["a"], "scenes": ["s"]})


def _cfg(**alternatives):
    return Config().with_overrides({"eval.decode": "merge", "eval.alternatives": alternatives})


def test_the_decoding_that_scores_best_on_val_is_chosen_and_scored_as_it_decodes(tmp_path):
    videos = ["v0", "v1", "v2", "v3"]
    spec, pred = _spec(tmp_path, videos), _predictions(videos, flickering=videos)
    choice = choose_decoding(spec, pred, _cfg(median=MEDIAN))
    assert choice.name == "median"
    assert choice.eval.smooth_seconds == 0.75 and choice.eval.decode == "merge" and choice.eval.alternatives == {}
    assert choice.val_map["median"] == pytest.approx(1.0) and choice.val_map["config"] < 0.6  # split actions
    expected = detection_metrics(spec, "val", decode_predictions(pred, choice.eval), (0.5, 0.75, 0.95))[0]
    assert choice.metrics["val_mAP"] == pytest.approx(expected["val_mAP"])
    assert choice.detections == decode_predictions(pred, choice.eval)
    assert choice.out_of_fold == pytest.approx(1.0)  # every fold's other videos also prefer the median
    assert choice.summary()["chosen"] == "median"


def test_a_decoding_that_wins_on_one_video_only_is_not_credited_out_of_fold(tmp_path):
    videos = ["v0", "v1", "v2", "v3"]
    spec, pred = _spec(tmp_path, videos), _predictions(videos, flickering=["v3"])
    choice = choose_decoding(spec, pred, _cfg(median=MEDIAN))
    assert choice.name == "median" and choice.val_map["median"] > choice.val_map["config"]
    # v3's fold sees three videos on which both decode alike: the first listed (the config's own) is kept there
    assert choice.out_of_fold == pytest.approx(choice.val_map["config"])


def test_equal_decodings_keep_the_config_and_one_decoding_has_no_out_of_fold_figure(tmp_path):
    videos = ["v0", "v1"]
    spec, pred = _spec(tmp_path, videos), _predictions(videos, flickering=[])
    assert choose_decoding(spec, pred, _cfg(median=MEDIAN)).name == "config"
    alone = choose_decoding(spec, pred, _cfg())
    assert alone.name == "config" and alone.out_of_fold is None and list(alone.val_map) == ["config"]


@pytest.mark.parametrize("alternatives, named", [
    ({"a b": {"decode": "merge"}}, "'a b' must be an identifier"),
    ({"config": {"decode": "merge"}}, "other than 'config'"),
    ({"x": {"lr": 0.1}}, "x.lr is not a decoding key"),
    ({"x": {"smooth_seconds": -1}}, "x.smooth_seconds"),
    ({"x": {"decode": "argmax"}}, "x.decode"),
    ({"x": {}}, "x: must map decoding keys"),
])
def test_a_bad_alternative_names_itself(alternatives, named):
    with pytest.raises(ConfigError, match="eval.alternatives") as error:
        Config().with_overrides({"eval.alternatives": alternatives})
    assert named in str(error.value)


def test_null_clears_the_alternatives_of_a_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("eval:\n  alternatives:\n    flicker: {smooth: mean, smooth_seconds: 0.5}\n")
    assert list(load_config(path).eval.alternatives) == ["flicker"]
    assert load_config(path, {"eval.alternatives": None}).eval.alternatives == {}
    assert load_config(path, {"eval.alternatives.flicker.smooth_seconds": 1.0}).eval.decoding("flicker").smooth_seconds == 1.0


def test_a_run_records_and_applies_the_decoding_it_chose(tiny_data, tmp_path):
    spec = load_dataset(tiny_data)
    alternatives = {"coarse": {"decode": "merge", "smooth_seconds": 2.0}, "fine": {"decode": "merge"}}
    cfg = load_config(None, {**TINY_OVERRIDES, "train.epochs": 2, "eval.alternatives": alternatives})
    best = fit(cfg, spec, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    decoding = metrics["decoding"]
    assert set(decoding["val_mAP"]) == {"config", "coarse", "fine"}
    assert decoding["chosen"] == max(decoding["val_mAP"], key=decoding["val_mAP"].get)
    assert metrics["val_mAP"] == pytest.approx(decoding["val_mAP"][decoding["chosen"]], abs=1e-6)
    assert best["decoding"] == decoding["chosen"]
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert all(line["decoding"] in decoding["val_mAP"] for line in history)
    chosen = cfg.eval.decoding(decoding["chosen"])
    for split in ("val", "test"):  # predictions carry the decoding; detections were decoded with it
        pred = load_predictions(tmp_path / "predictions" / f"{split}.npz")
        recorded = {k: v for k, v in pred.meta["config"].items() if k.startswith("eval.")}
        assert recorded["eval.decode"] == chosen.decode and recorded["eval.smooth_seconds"] == chosen.smooth_seconds
        assert recorded["eval.alternatives"] == {} and not any(k.startswith("eval.alternatives.") for k in recorded)
        written = json.loads((tmp_path / "detections" / f"{split}.json").read_text())["results"]
        decoded = decode_predictions(pred, chosen)
        assert {v: len(d) for v, d in written.items()} == {v: len(d) for v, d in decoded.items()}
