import pytest

from tal_core.run_folder import RunFolder, RunFolderError


def test_a_missing_file_reads_as_nothing_yet(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert folder.read_metrics() is None and folder.read_history() == [] and folder.snapshots() == {}


def test_metrics_round_trip_and_snapshots_are_listed_by_epoch(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_metrics({"val_mAP": 0.5, "best_epoch": 3})
    folder.snapshot(7).write_metrics({"val_mAP": 0.4})
    folder.snapshot(12).write_metrics({"val_mAP": 0.45})
    (tmp_path / "snapshots" / "epoch_x").mkdir()  # not a snapshot
    assert folder.read_metrics() == {"val_mAP": 0.5, "best_epoch": 3}
    assert sorted(folder.snapshots()) == [7, 12] and folder.snapshots()[12].read_metrics()["val_mAP"] == 0.45
    assert not list(tmp_path.glob(".*.tmp"))  # published atomically: no temporary left


@pytest.mark.parametrize("content", ["{torn", "[1, 2]"])
def test_an_unreadable_metrics_file_is_an_error_naming_it(tmp_path, content):
    (tmp_path / "metrics.json").write_text(content)
    with pytest.raises(RunFolderError, match="metrics.json"):
        RunFolder(tmp_path).read_metrics()


def test_the_resolved_config_reads_back_nested_and_flat(tmp_path):
    from tal_core.config import load_config, save_config

    folder = RunFolder(tmp_path)
    assert folder.read_config() is None and folder.read_flat_config() is None  # not saved yet
    config = load_config(None, {"train.lr": 0.01, "model.output": "frame"})
    save_config(config, folder.config_file)
    assert folder.read_config() == config.model_dump(mode="json")
    flat = folder.read_flat_config()
    assert flat["train.lr"] == 0.01 and flat["model.output"] == "frame" and set(flat) == set(config.flat())


@pytest.mark.parametrize("content", ["data: {view: [front", "[1, 2]", "", "just text"])
def test_an_unreadable_config_is_an_error_naming_it(tmp_path, content):
    (tmp_path / "config.yaml").write_text(content)
    with pytest.raises(RunFolderError, match="config.yaml"):
        RunFolder(tmp_path).read_flat_config()


@pytest.mark.parametrize(("asha", "scheduler"), [(False, "fifo"), (True, "hyperband")])
def test_a_config_an_older_version_saved_reads_as_todays(tmp_path, asha, scheduler):
    """``search.asha`` (deprecated): false meant fifo, true kept the scheduler; nothing is logged for stored files."""
    (tmp_path / "config.yaml").write_text(f"search: {{scheduler: hyperband, asha: {str(asha).lower()}}}\n")
    flat = RunFolder(tmp_path).read_flat_config()
    assert flat == {"search.scheduler": scheduler}


CONFIG_READERS = {"tal_core/run_folder.py"}  # RunFolder.read_config: the one parser of a run's config.yaml
YAML_PARSERS = {"tal_core/config.py", "tal_core/run_folder.py"}  # config.py: the user's files and --set values


def test_a_runs_config_is_parsed_in_one_module_only():
    import re

    from helpers import ROOT

    sources = {str(p.relative_to(ROOT)): p.read_text() for top in ("tal_core", "search", "ensemble", "talsearch",
                                                                  "benchmarks") for p in (ROOT / top).rglob("*.py")}
    parsers = {name for name, text in sources.items() if re.search(r"\byaml\.(safe_|full_|unsafe_)?load\b", text)}
    assert parsers <= YAML_PARSERS, f"parse YAML through tal_core.config or RunFolder.read_config: {parsers}"
    reading = re.compile(r"(config\.yaml|config_file)\W[^\n]*(read_text|read_yaml|load_config|open)\(|"
                         r"(read_yaml|load_config)\([^\n]*(config\.yaml|config_file)")
    readers = {name for name, text in sources.items() if reading.search(text)}
    assert readers <= CONFIG_READERS, f"read a run's config.yaml with RunFolder(path).read_config(): {readers}"
