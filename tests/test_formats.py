import csv
import json

import pytest

from tal_core.scoring.formats import (
    FormatError,
    read_detections,
    submission_rows,
    write_detections,
    write_submission,
)


def test_detections_roundtrip(tmp_path):
    path = write_detections({"v": [{"label": "a", "score": 0.5, "segment": [1.0, 2.0]}]}, tmp_path / "d.json")
    table = read_detections(path)
    assert table.video.tolist() == ["v"] and table.start.tolist() == [1.0] and table.score.tolist() == [0.5]


@pytest.mark.parametrize("content, needle", [
    ("{oops", "not valid JSON"),
    ('{"result": {}}', "field 'results'"),
    ('{"results": {"v": [{"label": "a", "score": 1, "segment": [1]}]}}', "results.v[0].segment"),
    ('{"results": {"v": [{"label": "a", "score": "hi", "segment": [1, 2]}]}}', "results.v[0].score"),
    ('{"results": {"v": [{"label": "a", "score": NaN, "segment": [1, 2]}]}}', "results.v[0].score must be a finite number"),
    ('{"results": {"v": [{"label": "a", "score": true, "segment": [1, 2]}]}}', "results.v[0].score"),
    ('{"results": {"v": [{"label": "a", "score": 1, "segment": [1, Infinity]}]}}', "results.v[0].segment must be finite"),
    ('{"results": {"v": [{"label": "a", "score": 1, "segment": [false, 2]}]}}', "results.v[0].segment"),
    ('{"results": {"v": [{"label": "a", "score": 1, "segment": [1, 2]}, {"label": "a", "score": 1, "segment": [3, 2]}]}}',
     "results.v[1].segment is reversed"),
    ('{"results": {"v": [{"label": true, "score": 1, "segment": [1, 2]}]}}', "results.v[0].label"),
    ('{"results": {"v": [{"label": "a", "score": 1, "segment": [1, 1e999]}]}}', "results.v[0].segment must be finite"),
    ('{"results": {"v": [{"label": "a", "segment": [1, 2]}]}}', "results.v[0].score"),
    ('{"results": {"v": {"label": "a", "score": 1, "segment": [1, 2]}}}', "results.v must be a list"),
])
def test_bad_detections_name_file_and_field(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(FormatError) as info:
        read_detections(path)
    assert "bad.json" in str(info.value) and needle in str(info.value)


def test_submission_bins_clip_detections(tmp_path):
    dets = {"v": [{"label": "b", "score": 0.9, "segment": [8.0, 12.0]}, {"label": "a", "score": 0.5,
                                                                         "segment": [1.0, 2.0]}]}
    rows = submission_rows(dets, {"v": 25.0}, ("a", "b"))
    assert [r[0] for r in rows] == ["v_0_10", "v_10_20", "v_20_30"]
    assert rows[0][1] == [[2, 8.0, 10.0, 0.9], [1, 1.0, 2.0, 0.5]]  # 1-based taxonomy order, best first
    assert rows[1][1] == [[2, 10.0, 12.0, 0.9]] and rows[2][1] == []
    path = write_submission(rows, tmp_path / "s.csv")
    parsed = list(csv.DictReader(open(path)))
    assert json.loads(parsed[1]["prediction"]) == [[2, 10.0, 12.0, 0.9]]
    organisers = submission_rows(dets, {"v": 25.0}, ("a", "b"), label_map={"a": 7, "b": 3})
    assert organisers[0][1] == [[3, 8.0, 10.0, 0.9], [7, 1.0, 2.0, 0.5]]
    with pytest.raises(FormatError, match="label map lacks"):
        submission_rows(dets, {"v": 25.0}, ("a", "b"), label_map={"a": 7})


def test_a_submission_scores_as_its_detections_under_challenge_binning(tmp_path):
    from tal_core.scoring.binning import binned
    from tal_core.scoring.formats import detections_to_segments, read_submission
    from tal_core.scoring.metrics import average_precision

    truth = detections_to_segments({"r": [{"label": "a", "score": 1, "segment": [3.0, 14.0]},
                                          {"label": "b", "score": 1, "segment": [21.0, 26.5]}]})
    dets = {"r": [{"label": "a", "score": 0.8, "segment": [3.0, 14.0]},
                  {"label": "b", "score": 0.6, "segment": [20.0, 26.0]},
                  {"label": "a", "score": 0.3, "segment": [40.0, 45.0]}]}
    path = write_submission(submission_rows(dets, {"r": 50.0}, ("a", "b"), label_map={"a": 5, "b": 9}),
                            tmp_path / "s.csv")
    back = read_submission(path, ("a", "b"), label_map={"a": 5, "b": 9})
    direct = average_precision(*binned(truth, detections_to_segments(dets), 10.0))
    again = average_precision(*binned(truth, detections_to_segments(back), 10.0))
    assert again.mean == pytest.approx(direct.mean) and 0 < direct.mean < 1


def test_many_valid_detections_read_in_columns(tmp_path):
    items = {f"v{i}": [{"label": "a" if k % 2 else 3, "score": k / 10, "segment": [k, k + 0.5]} for k in range(10)]
             for i in range(50)}
    table = read_detections(write_detections(items, tmp_path / "d.json"))
    assert len(table) == 500 and set(table.label.tolist()) == {"a", "3"}
    assert table.start[:3].tolist() == [0.0, 1.0, 2.0] and table.end[1] == 1.5 and table.video[11] == "v1"


def test_typed_reader_and_checked_walk_agree(tmp_path, monkeypatch):
    """The fast path (typed decoder) and the fallback (parse, then check columns) read the same table."""
    from tal_core.scoring import formats

    items = {f"v{i}": [{"label": "a" if k % 3 else k, "score": k, "segment": [k / 4, k / 4 + 1], "extra": [1]}
                       for k in range(7)] for i in range(5)}
    items["empty"] = []
    path = write_detections(items, tmp_path / "d.json")
    fast = read_detections(path)
    assert formats._typed_columns(path) is not None
    monkeypatch.setattr(formats, "_typed_columns", lambda path: None)
    slow = read_detections(path)
    for column in ("video", "label", "start", "end", "score"):
        assert getattr(fast, column).tolist() == getattr(slow, column).tolist(), column
    assert fast.label.dtype == object and set(fast.label.tolist()) == {"a", "0", "3", "6"}
