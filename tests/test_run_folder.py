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
