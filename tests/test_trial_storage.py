"""Trial outputs through storage: incremental uploads, whole-folder pulls, URIs that may not carry secrets; on a
folder and on a real S3-compatible server (moto's, on loopback)."""

import os
import subprocess
import sys
import time

import pytest

from helpers import free_port, stop_process_group, wait_for_port
from search import trial_storage
from search.trial_storage import StorageError, Uploader


def _run_folder(folder):
    (folder / "predictions").mkdir(parents=True)
    (folder / "metrics.json").write_text('{"val_mAP": 0.5}')
    (folder / "predictions" / "val.npz").write_bytes(b"x" * 1000)
    (folder / "last.pt").write_bytes(b"resume state")
    (folder / "snapshots" / "epoch_1").mkdir(parents=True)
    (folder / "snapshots" / "epoch_1" / "metrics.json").write_text("{}")
    return folder


def _round_trip(uri, tmp_path):
    run = _run_folder(tmp_path / "node" / "trial")
    uploader = Uploader(run, uri)
    assert uploader.upload() == 3  # last.pt stays with Ray's checkpoint
    assert uploader.upload() == 0  # nothing changed: nothing sent
    (run / "metrics.json").write_text('{"val_mAP": 0.75}')
    os.utime(run / "metrics.json", ns=(time.time_ns(), time.time_ns() + 10**9))
    (run / "snapshots" / "epoch_1" / "metrics.json").unlink()  # a snapshot that left the top
    (run / "snapshots" / "epoch_1").rmdir()
    assert uploader.upload() == 1
    driver = tmp_path / "driver" / "trials" / "trial"
    assert trial_storage.download(uri, driver)
    assert (driver / "metrics.json").read_text() == '{"val_mAP": 0.75}'
    assert (driver / "predictions" / "val.npz").read_bytes() == b"x" * 1000
    assert not (driver / "last.pt").exists() and not (driver / "snapshots" / "epoch_1").exists()
    assert sorted(p.name for p in driver.parent.iterdir()) == ["trial"]  # no temporary left beside it
    (driver / "last.pt").write_bytes(b"the driver's own")
    assert trial_storage.download(uri, driver)  # a second pull replaces the folder, keeps what storage lacks
    assert (driver / "last.pt").read_bytes() == b"the driver's own"
    assert not trial_storage.download(trial_storage.join(uri, "..", "nothing-here"), tmp_path / "none")
    return driver


def test_uploads_send_what_changed_and_pulls_replace_the_folder(tmp_path):
    _round_trip(str(tmp_path / "storage" / "trials" / "t1"), tmp_path)
    assert not list((tmp_path / "storage").rglob("*.tmp"))


def test_file_uris_work_as_paths(tmp_path):
    _round_trip(f"file://{tmp_path / 'storage' / 't1'}", tmp_path)


def test_credentials_in_a_storage_uri_are_refused():
    with pytest.raises(StorageError, match="credentials in the environment"):
        trial_storage.check_uri("s3://key:secret@bucket/sweeps")
    assert trial_storage.check_uri("s3://bucket/sweeps") == "s3://bucket/sweeps"
    assert trial_storage.check_uri("relative/folder").startswith("/")


def test_small_files_round_trip(tmp_path):
    uri = str(tmp_path / "s" / "a" / "b.json")
    assert trial_storage.read_file(uri) is None
    trial_storage.write_file(uri, b"{}")
    assert trial_storage.read_file(uri) == b"{}"
    assert [p.name for p in (tmp_path / "s" / "a").iterdir()] == ["b.json"]


@pytest.fixture
def s3_server(tmp_path, monkeypatch):
    """moto's S3 server on 127.0.0.1 (a real HTTP server speaking S3); the bucket ``sweeps``."""
    pytest.importorskip("moto", reason="moto[server] is a test dependency (pyproject's test extra)")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    try:
        wait_for_port(port, timeout=60)
        query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1&allow_bucket_creation=true"
        fs, _ = trial_storage.filesystem(f"s3://sweeps?{query}")
        fs.create_dir("sweeps")
        yield lambda path: f"s3://sweeps/{path}?{query}"
    finally:
        stop_process_group(proc)


def test_uploads_and_pulls_through_an_s3_server(s3_server, tmp_path):
    driver = _round_trip(s3_server("study/trials/t1"), tmp_path)
    assert (driver / "metrics.json").is_file()


def test_checkpoints_ray_never_registered_are_pruned(tmp_path):
    import json

    run = tmp_path / "ray" / "trial1"
    for name in ("checkpoint_a", "checkpoint_b", "checkpoint_c"):
        (run / name).mkdir(parents=True)
        (run / name / "last.pt").write_bytes(b"state")
    (run / "checkpoint_manager_snapshot.json").write_text(json.dumps({
        "checkpoint_results": [{"checkpoint_dir_name": "checkpoint_b"}],
        "latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_b"}, "pending_training_results": []}))
    assert trial_storage.prune_checkpoints(str(tmp_path / "ray"), ["trial1", "no_such_run"]) == 2
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint_b", "checkpoint_manager_snapshot.json"]
