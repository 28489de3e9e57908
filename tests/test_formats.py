import csv
import json

import pytest

from tal_core.formats import FormatError, read_detections, submission_rows, write_detections, write_submission


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
    assert rows[0][1] == [[1, 8.0, 10.0, 0.9], [0, 1.0, 2.0, 0.5]]
    assert rows[1][1] == [[1, 10.0, 12.0, 0.9]] and rows[2][1] == []
    path = write_submission(rows, tmp_path / "s.csv")
    parsed = list(csv.DictReader(open(path)))
    assert json.loads(parsed[1]["prediction"]) == [[1, 10.0, 12.0, 0.9]]


def test_many_valid_detections_read_in_columns(tmp_path):
    items = {f"v{i}": [{"label": "a" if k % 2 else 3, "score": k / 10, "segment": [k, k + 0.5]} for k in range(10)]
             for i in range(50)}
    table = read_detections(write_detections(items, tmp_path / "d.json"))
    assert len(table) == 500 and set(table.label.tolist()) == {"a", "3"}
    assert table.start[:3].tolist() == [0.0, 1.0, 2.0] and table.end[1] == 1.5 and table.video[11] == "v1"
