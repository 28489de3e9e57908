import pytest

from search.space import grid_size, load_sweep, require_space
from tal_core.config import ConfigError


def write(tmp_path, body: str):
    path = tmp_path / "sweep.yaml"
    path.write_text(body)
    return path


def test_grid_sampler_takes_categorical_spaces_up_to_their_size(tmp_path):
    spec = load_sweep(write(tmp_path, """
search: {sampler: grid, num_samples: 4}
space:
  model.shift_fraction: {type: categorical, values: [0.0, 0.125]}
  model.output: {type: categorical, values: [interval, frame]}
"""))
    assert grid_size(spec.params) == 4


def test_grid_sampler_names_a_ranged_key_and_a_too_large_budget(tmp_path):
    with pytest.raises(ConfigError, match="space.train.lr is a float range"):
        load_sweep(write(tmp_path, """
search: {sampler: grid, num_samples: 2}
space:
  model.output: {type: categorical, values: [interval, frame]}
  train.lr: {type: float, low: 0.001, high: 0.01}
"""))
    with pytest.raises(ConfigError, match="search.num_samples: 5 trials but the grid holds 2"):
        load_sweep(write(tmp_path, """
search: {sampler: grid, num_samples: 5}
space:
  model.output: {type: categorical, values: [interval, frame]}
"""))


def test_output_kind_and_decoding_keys_are_searchable(tmp_path):
    spec = load_sweep(write(tmp_path, """
space:
  model.output: {type: categorical, values: [interval, frame]}
  eval.smooth_seconds: {type: float, low: 0.0, high: 1.5}
  eval.decode: {type: categorical, values: [merge, multithreshold]}
  loss.frame_weight: {type: float, low: 0.5, high: 2.0}
"""))
    cfg = spec.config_for({"model.output": "frame", "eval.smooth_seconds": 0.5, "eval.decode": "merge",
                           "loss.frame_weight": 1.5})
    assert cfg.model.output == "frame" and cfg.eval.smooth_seconds == 0.5 and cfg.loss.frame_weight == 1.5
    with pytest.raises(ConfigError, match="space.model.output"):
        load_sweep(write(tmp_path, "space:\n  model.output: {type: categorical, values: [interval, pixel]}\n"))


def test_a_sweep_without_a_space_is_refused_before_it_starts(tmp_path):
    path = write(tmp_path, "search: {num_samples: 1}\n")
    with pytest.raises(ConfigError, match="sweep.yaml: no 'space' to search"):
        require_space(load_sweep(path), path)
    one = write(tmp_path, "space:\n  data.modalities: {type: categorical, values: [audio]}\n")
    require_space(load_sweep(one), one)  # one configuration: a key with one value
