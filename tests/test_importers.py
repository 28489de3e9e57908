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


def test_import_activitynet_clips_and_drops_what_training_cannot_take_counted(tiny_data, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for vid in ("abc", "def", "ghi"):
        shutil.copy(tiny_data / "videos" / "vid0000" / "front.mp4", videos / f"v_{vid}.mp4")
    anet = {"database": {  # as published: [0, 0] (activitynet/ActivityNet#56) and ends past the duration
        "abc": {"subset": "validation", "duration": 7.0, "annotations": [
            {"segment": [0, 0], "label": "jump"}, {"segment": [1.0, 3.0], "label": "jump"},
            {"segment": [5.5, 7.25], "label": "swim"}]},
        "def": {"subset": "training", "duration": 6.0, "annotations": [
            {"segment": [6.5, 8.0], "label": "swim"}, {"segment": [2.0, 2.0], "label": "swim"},
            {"segment": [-0.5, 1.0], "label": "jump"}]},
        "ghi": {"subset": "testing", "duration": 5.0, "annotations": [{"segment": [0, 0], "label": "jump"}]}}}
    (tmp_path / "anet.json").write_text(json.dumps(anet))
    report = import_activitynet(tmp_path / "anet.json", videos, tmp_path / "out")
    assert (report.videos, report.segments, report.clipped, report.dropped) == (3, 3, 2, 3)
    assert report.problems == [f"{tmp_path / 'anet.json'}: clipped 2 segment(s) to their video's [0, duration] and "
                               "dropped 3 zero-length or empty one(s) (training takes neither; `talsearch evaluate` "
                               "scores the file as published)"]
    spec = load_dataset(tmp_path / "out")  # training's strict validation passes
    assert [(s.start, s.end, s.label) for s in spec.videos["abc"].segments] == [(1.0, 3.0, "jump"),
                                                                               (5.5, 7.0, "swim")]
    assert [(s.start, s.end) for s in spec.videos["def"].segments] == [(0.0, 1.0)]
    assert main(["import-activitynet", str(tmp_path / "anet.json"), str(videos), str(tmp_path / "out2")]) == 0
    out, err = capsys.readouterr()
    assert {k: json.loads(out)[k] for k in ("clipped", "dropped", "problems")} == {"clipped": 2, "dropped": 3,
                                                                                  "problems": 1}
    assert "warning:" in err and "clipped 2 segment(s)" in err


def test_import_360x_counts_clipped_and_dropped_segments(tiny_data, tmp_path):
    src = tmp_path / "src"
    (src / "rec1").mkdir(parents=True)
    shutil.copy(tiny_data / "videos" / "vid0000" / "front.mp4", src / "rec1" / "front_view.mp4")
    (src / "rec1" / "rec1.json").write_text(json.dumps({"metadata": {
        "a": {"z": [1.0, 1.0], "av": {"1": "walking"}}, "b": {"z": [1.0, 3.0], "av": {"1": "walking"}},
        "c": {"z": [5.0, 99.0], "av": {"1": "pouring"}}, "d": {"z": [98.0, 99.0], "av": {"1": "pouring"}}}}))
    (src / "scenes.csv").write_text("recording,scene,subset\nrec1,kitchen,train\n")
    report = import_360x(src, tmp_path / "out")
    assert (report.segments, report.clipped, report.dropped) == (2, 1, 2)
    assert any("metadata.a is zero-length" in p for p in report.problems)
    duration = load_dataset(tmp_path / "out").videos["rec1"].duration
    assert [(s.start, s.end) for s in load_dataset(tmp_path / "out").videos["rec1"].segments] == [(1.0, 3.0),
                                                                                                  (5.0, duration)]


def test_import_360x_cuts_the_kits_clips_pointing_into_the_recording(tiny_data, tmp_path):
    import numpy as np

    from tal_core.config import DataConfig
    from tal_core.data.dataset import IntervalDataset

    src = tmp_path / "src"
    (src / "rec1").mkdir(parents=True)
    shutil.copy(tiny_data / "videos" / "vid0000" / "front.mp4", src / "rec1" / "front_view.mp4")
    (src / "rec1" / "rec1.json").write_text(json.dumps({"metadata": {
        "a": {"z": [0.5, 2.2], "av": {"1": "walking"}},      # cut 0: 0.5-1; cut 1: 1-2; cut 2: 0.2 s dropped
        "b": {"z": [3.25, 4.5], "av": {"1": "pouring"}}}}))  # cut 3: 0.25-1 (relative); cut 4: 0-0.5
    (src / "scenes.csv").write_text("recording,scene\nrec1,kitchen\n")
    report = import_360x(src, tmp_path / "out", cut=1.0, label_map={"pouring": 3, "walking": 1, "eating": 4})
    spec = load_dataset(tmp_path / "out")
    assert spec.taxonomy.actions == ("walking", "pouring", "eating")  # ordered by the organisers' ids
    assert sorted(spec.videos) == [f"rec1_{i}_{i + 1}" for i in range(6)] and report.videos == 6
    subsets = [spec.videos[f"rec1_{i}_{i + 1}"].subset for i in range(6)]
    assert subsets == ["train", "train", "train", "train", "val", "test"]
    clip = spec.videos["rec1_3_4"]
    assert clip.offset == 3.0 and clip.recording == "rec1" and clip.duration == 1.0
    assert [(s.start, s.end, s.label) for s in clip.segments] == [(0.25, 1.0, "pouring")]
    assert [(s.start, s.end) for s in spec.videos["rec1_0_1"].segments] == [(0.5, 1.0)]
    assert spec.videos["rec1_2_3"].segments == () and spec.videos["rec1_5_6"].segments == ()
    assert len({v.views["front"] for v in spec.videos.values()}) == 1  # one file, not a copy per clip
    # the clip's frames are the recording's frames from its offset on
    data = DataConfig(image_size=32, frames_per_interval=4, interval_seconds=1.0, decode_fps=8.0)
    clips = IntervalDataset(spec, "train", data, train=False)
    index = [v.video.video_id for v in clips.videos].index("rec1_3_4")
    recording_frames = clips.frames_of(index)
    item = next(i for i, (v, _, _) in enumerate(clips.index.tolist()) if v == index)
    frames, _, frame_labels, _, _ = clips[item]
    assert np.array_equal(frames.permute(0, 2, 3, 1).numpy(), recording_frames[[25, 27, 29, 31]])
    assert frame_labels.tolist() == [0, 2, 2, 2]  # 3.125 s is before the segment's 3.25 s


def test_clip_submissions_and_bins_use_recording_time(tmp_path):
    from tal_core.scoring.formats import submission_rows

    dets = {"rec_40_50": [{"label": "a", "score": 0.9, "segment": [1.0, 4.0]}]}
    rows = submission_rows(dets, {"rec_40_50": 10.0}, ("a",), placements={"rec_40_50": ("rec", 40.0)})
    assert rows == [("rec_40_50", [[1, 41.0, 44.0, 0.9]])]
