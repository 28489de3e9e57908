"""Deprecated config keys: ``search.asha`` reads as ``search.scheduler`` wherever a config comes from."""

import logging

import pytest

from helpers import ROOT
from tal_core.config import Config, ConfigError, SearchConfig, load_config, translate_deprecated


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(("asha", "scheduler"), [("false", "fifo"), ("true", "hyperband")])
def test_a_user_config_that_sets_asha_gets_one_warning_naming_its_replacement(tmp_path, caplog, asha, scheduler):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"search: {{scheduler: hyperband, asha: {asha}}}\n")
    with caplog.at_level(logging.WARNING):
        config = load_config(path)
    assert config.search.scheduler == scheduler and config.search.stopper == scheduler
    [line] = warnings_of(caplog)
    assert "search.asha" in line and "search.scheduler" in line and str(path) in line


def test_asha_set_on_the_command_line_is_translated_too(caplog):
    with caplog.at_level(logging.WARNING):
        config = load_config(None, ["search.asha=false"])
    assert config.search.scheduler == "fifo"
    assert len(warnings_of(caplog)) == 1 and "search.asha" in warnings_of(caplog)[0]


def test_configs_without_it_warn_nothing_and_todays_config_has_no_asha(caplog):
    with caplog.at_level(logging.WARNING):
        for path in sorted((ROOT / "configs").glob("*.yaml")):
            load_config(path)
    assert warnings_of(caplog) == []
    assert "search.asha" not in Config().flat() and "asha:" not in (ROOT / "configs" / "base.yaml").read_text()


def test_every_way_of_building_a_search_section_translates_it():
    assert SearchConfig(asha=False).stopper == "fifo" and SearchConfig(asha=True).stopper == "asha"
    assert Config.model_validate({"search": {"asha": False}}).search.scheduler == "fifo"
    assert translate_deprecated({"search": {"asha": "no", "seed": 3}, "train": {}}) == (
        {"search": {"scheduler": "fifo", "seed": 3}, "train": {}}, ["search.asha"])
    assert translate_deprecated({"train": {"epochs": 2}}) == ({"train": {"epochs": 2}}, [])
    with pytest.raises(ConfigError, match="search.asha"):
        translate_deprecated({"search": {"asha": "sometimes"}})


@pytest.mark.parametrize("name", ["replay_hard.json", "replay_hard48.json"])
def test_stored_replay_tables_that_hold_asha_read_as_fifo(name):
    """The committed tables were recorded by sweeps run with ``asha: false`` (whole learning curves)."""
    from search.replay_run import search_settings
    from search.replay_table import load_table

    table = load_table(ROOT / "benchmarks" / "data" / name)
    assert "asha" not in table.search and table.search["scheduler"] == "fifo"
    assert search_settings(table.search, {}).stopper == "fifo"
    assert search_settings(table.search, {"scheduler": "asha"}).stopper == "asha"
