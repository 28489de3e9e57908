import json
import shutil

from tal_core.data.annotations import load_dataset
from tal_core.data.importers import import_360x, import_activitynet
from talsearch.cli import main


def test_import_360x_reports_bad_entries_and_validates(tiny_data, tmp_path, capsys):
    src = tmp_path / "src"
    video = tiny_data / "videos" / "vid0000" / "front.mp4"
    for rec in ("rec1", "rec2"):
        (src / rec).mkdir(parents=True)
        shutil.copy(video, src / rec / "front_view.mp4")
        shutil.copy(video, src / rec / "360_panoramic.mp4")
    (src / "rec1" / "rec1.json").write_text(json.dumps({"metadata": {
        "1_a": {"vid": "1", "flg": 0, "z": [1.0, 3.5], "xy": [], "av": {"1": "operating phone"}},
        "1_b": {"vid": "1", "flg": 0, "z": [4.0, 6.0], "xy": [], "av": {}},
        "1_c": {"vid": "1", "flg": 0, "z": [5.0], "xy": [], "av": {"1": "walking"}},
        "1_d": {"vid": "1", "flg": 0, "z": [2.0, 2.2], "xy": [], "av": {"1": "walking"}},
    }}))
    (src / "rec2" / "rec2.json").write_text(json.dumps({"metadata": {
        "2_a": {"z": [0.5, 2.5], "av": {"1": "walking"}}}}))
    (src / "scenes.csv").write_text("recording,scene,subset\nrec1,kitchen,train\nrec2,office,val\n")
    report = import_360x(src, tmp_path / "out")
    assert report.videos == 2 and report.segments == 2
    assert len(report.problems) == 3
    assert any("1_b" in p and "no action label" in p for p in report.problems)
    assert any("1_c" in p and "malformed" in p for p in report.problems)
    spec = load_dataset(tmp_path / "out")
    assert spec.taxonomy.actions == ("operating phone", "walking")
    assert set(spec.videos["rec1"].views) == {"front", "panoramic"}
    assert spec.videos["rec2"].subset == "val" and spec.videos["rec2"].scene == "office"
    assert main(["import-360x", str(src), str(tmp_path / "out2")]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == 3


def test_import_activitynet(tiny_data, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(tiny_data / "videos" / "vid0000" / "front.mp4", videos / "v_abc.mp4")
    anet = {"database": {"abc": {"subset": "validation", "duration": 7.0,
                                 "annotations": [{"segment": [1.0, 3.0], "label": "jump"}]},
                         "missing": {"subset": "training", "duration": 5.0, "annotations": []}}}
    (tmp_path / "anet.json").write_text(json.dumps(anet))
    report = import_activitynet(tmp_path / "anet.json", videos, tmp_path / "out")
    assert report.videos == 1 and "missing" in report.problems[0]
    spec = load_dataset(tmp_path / "out")
    assert spec.videos["abc"].subset == "val" and spec.videos["abc"].segments[0].label == "jump"
