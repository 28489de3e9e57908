import json

import pytest

from tal_core.data.annotations import DatasetError, load_dataset


def write(tmp_path, database, taxonomy=None, files=("videos/a.mp4",)):
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    taxonomy = taxonomy or {"actions": ["walk", "run"], "scenes": ["kitchen"], "views": ["front"]}
    (tmp_path / "annotations.json").write_text(json.dumps({"taxonomy": taxonomy, "database": database}))
    return tmp_path


def entry(**kw):
    base = {"subset": "train", "duration": 10.0, "scene": "kitchen", "views": {"front": "videos/a.mp4"},
            "annotations": [{"segment": [1.0, 2.0], "label": "walk"}]}
    base.update(kw)
    return base


def test_valid_dataset_loads(tmp_path):
    spec = load_dataset(write(tmp_path, {"v1": entry()}))
    video = spec.videos["v1"]
    assert video.segments[0].label == "walk" and video.duration == 10.0
    assert spec.taxonomy.action_index("run") == 2


def test_every_problem_is_listed_at_once(tmp_path):
    database = {
        "v1": entry(annotations=[{"segment": [3.0, 2.0], "label": "walk"}, {"segment": [1, 2], "label": "fly"}]),
        "v2": entry(annotations=[{"segment": [-1.0, 12.0], "label": "run"}]),
        "v3": entry(views={"front": "videos/missing.mp4"}),
        "v4": entry(views={"front": "../outside.mp4"}),
        "v5": entry(subset="training", scene="moon"),
    }
    with pytest.raises(DatasetError) as info:
        load_dataset(write(tmp_path, database))
    text = str(info.value)
    for needle in ("annotations.json", "end 2.0 <= start 3.0", "unknown label 'fly'", "outside [0, duration=10.0]",
                   "video file missing: videos/missing.mp4", "escapes the data-set folder",
                   "'training' is not one of", "unknown scene 'moon'"):
        assert needle in text, needle


def test_duplicate_video_ids_are_reported(tmp_path):
    write(tmp_path, {"v1": entry()})
    raw = (tmp_path / "annotations.json").read_text()
    body = json.dumps(entry())
    (tmp_path / "annotations.json").write_text(raw.replace('"database": {', f'"database": {{"v1": {body}, ', 1))
    with pytest.raises(DatasetError, match="duplicate video id 'v1'"):
        load_dataset(tmp_path)


def test_absolute_and_symlinked_escapes_are_refused(tmp_path):
    outside = tmp_path.parent / "elsewhere.mp4"
    outside.write_bytes(b"x")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "link.mp4").symlink_to(outside)
    database = {"v1": entry(views={"front": str(outside)}), "v2": entry(views={"front": "videos/link.mp4"})}
    with pytest.raises(DatasetError) as info:
        load_dataset(write(tmp_path, database, files=()))
    assert str(info.value).count("escapes the data-set folder") == 2


def test_bad_json_names_the_file(tmp_path):
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(DatasetError, match="annotations.json: not valid JSON"):
        load_dataset(tmp_path)


def test_background_is_reserved(tmp_path):
    taxonomy = {"actions": ["background"], "scenes": [], "views": ["front"]}
    with pytest.raises(DatasetError, match="reserved label 'background'"):
        load_dataset(write(tmp_path, {"v1": entry(annotations=[], scene=None)}, taxonomy))


def test_ground_truth_keeps_what_activitynet_publishes_and_training_refuses_it(tmp_path):
    from tal_core.data.annotations import kept_as_published, load_ground_truth

    published = [{"segment": [0, 0], "label": "walk"}, {"segment": [4.0, 10.3], "label": "run"},
                 {"segment": [10.5, 10.5], "label": "walk"}, {"segment": [1.0, 2.0], "label": "walk"}]
    database = {"v1": entry(annotations=published), "v2": entry(subset="val", annotations=published[1:2])}
    write(tmp_path, database)
    spec = load_ground_truth(tmp_path / "annotations.json")
    assert [(s.start, s.end) for s in spec.videos["v1"].segments] == [(0, 0), (4.0, 10.3), (10.5, 10.5), (1.0, 2.0)]
    assert kept_as_published(spec) == (2, 2)  # [10.5, 10.5] past the duration counts once, as zero-length
    assert kept_as_published(spec, "val") == (0, 1) and kept_as_published(spec, "test") == (0, 0)
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path)
    text = str(info.value)
    assert "annotations[0]: segment end 0.0 <= start 0.0" in text
    assert "segment [4.0, 10.3] outside [0, duration=10.0]" in text and "5 problem(s)" in text  # [10.5, 10.5]: two


def test_ground_truth_still_refuses_reversed_and_negative_segments(tmp_path):
    from tal_core.data.annotations import load_ground_truth

    write(tmp_path, {"v1": entry(annotations=[{"segment": [3.0, 2.0], "label": "walk"},
                                              {"segment": [-1.0, 2.0], "label": "run"}])})
    with pytest.raises(DatasetError) as info:
        load_ground_truth(tmp_path / "annotations.json")
    assert "segment end 2.0 < start 3.0" in str(info.value) and "starts before 0" in str(info.value)
