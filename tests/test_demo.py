import pytest

from talsearch.demo import gain_line, summary_table

METRICS = {
    "ensemble": {"val_mAP@0.5": 0.8, "val_mAP@0.75": 0.7, "val_mAP@0.95": 0.3, "val_mAP": 0.6, "oof_val_mAP": 0.55,
                 "nested_oof_val_mAP": 0.54, "procedure": "greedy+refine/segments", "fusion": "segments"},
    "best_single": {"val_mAP@0.5": 0.7, "val_mAP@0.75": 0.6, "val_mAP@0.95": 0.2, "val_mAP": 0.5,
                    "oof_val_mAP": 0.5},
    "gain": {"mAP": 0.04, "low": 0.01, "high": 0.07, "level": 0.9, "draws": 1000, "videos": 14},
}


def test_summary_rows_carry_both_sides_and_the_nested_figure_for_the_ensemble_only():
    rows = summary_table(METRICS).splitlines()
    assert rows[1].split()[-2:] == ["0.5000", "-"] and rows[2].split()[-2:] == ["0.5500", "0.5400"]


def test_gain_line_states_the_gain_its_interval_and_how_it_was_fused():
    line = gain_line(METRICS)
    assert "+0.0400" in line and "[+0.0100, +0.0700]" in line and "90%" in line and "14 val videos" in line
    assert "segments fusion" in line and "(nested out-of-fold)" in line
    assert gain_line({k: v for k, v in METRICS.items() if k != "gain"}) == ""
    named = gain_line({**METRICS, "selection": "classmix"})  # the default over trials of two modalities
    assert "(out-of-fold, procedure named beforehand)" in named and "nested" not in named


def test_gain_line_says_what_the_boundary_offsets_alone_give():
    metrics = {**METRICS, "ensemble": {**METRICS["ensemble"], "boundary_offsets": {"b": {"start": 0.5, "end": 0}}},
               "gain": {**METRICS["gain"], "boundary_offsets_alone": {"mAP": 0.03, "low": 0.0, "high": 0.05}}}
    second = gain_line(metrics).splitlines()[1]
    assert "+0.0300 [+0.0000, +0.0500]" in second and second.endswith("classes moved: b")
    assert len(gain_line(METRICS).splitlines()) == 1


def test_sound_member_line_says_whether_the_audio_trial_earned_weight(tmp_path):
    import json

    from talsearch.demo import sound_member_line

    audio = tmp_path / "sweeps" / "s-audio"
    (audio / "trials" / "t0").mkdir(parents=True)
    (audio / "trials" / "t0" / "metrics.json").write_text(json.dumps({"val_mAP": 0.25}))
    members = [{"run_id": "v1", "weight": 0.7, "source": str(tmp_path / "sweeps" / "s" / "trials" / "v1")},
               {"run_id": "t0@e6", "weight": 0.3, "source": str(audio / "trials" / "t0" / "snapshots" / "e6")}]
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": members}))
    assert sound_member_line(tmp_path, audio) == ("sound member (audio alone, val mAP 0.250): in the ensemble, "
                                                  "weight t0@e6 0.30")
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": members[:1]}))
    assert sound_member_line(tmp_path, audio).endswith("no weight (it did not earn a place on val)")
    assert sound_member_line(tmp_path, None).startswith("sound member: none (the audio-only trial did not finish")
    assert sound_member_line(tmp_path, None, quick=True) == "sound member: none (--quick trains no audio-only trial)"


def test_a_sound_trial_that_does_not_finish_leaves_the_grid_to_ensemble_alone(tmp_path, monkeypatch, caplog):
    from search.sweep import SweepFailed
    from talsearch import demo

    def failing(data, config, out, overrides):
        assert config.name == "sweep_demo_audio.yaml" and "search.num_samples=1" in overrides
        raise SweepFailed("no trial finished: 1 failed (t0: this video has no audio stream)")

    monkeypatch.setattr(demo, "run_sweep", failing)
    with caplog.at_level("WARNING", logger="talsearch.demo"):
        assert demo.sound_sweep(tmp_path / "data", tmp_path / "audio", ["a.b=1"]) is None
    assert "the audio-only trial did not finish (no trial finished: 1 failed" in caplog.text


@pytest.mark.ray
@pytest.mark.slow
def test_quick_demo_runs_the_whole_pipeline(tmp_path):
    import json
    import subprocess
    from pathlib import Path

    from helpers import TALSEARCH

    done = subprocess.run([*TALSEARCH, "demo", "--quick", "--workdir", str(tmp_path / "demo")], capture_output=True,
                          text=True, timeout=1200, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tal-search demo" in done.stdout and "gain over the best single trial" in done.stdout
    last = json.loads((tmp_path / "demo" / "last_demo.json").read_text())
    assert len(last["trials"]) == 2 and {"low", "high", "mAP"} <= set(last["metrics"]["gain"])
    ensemble = Path(last["ensemble"])
    assert (ensemble / "submission.csv").exists() and (ensemble / "ensemble.json").exists()
    # the smoke test trains no audio-only trial (the full demo's ensemble takes both sweeps: test_ensemble's
    # two-sweep test and the sound-member tests above hold those pieces) and says so
    assert last["audio_sweep"] is None and "sound member: none (--quick trains no audio-only trial)" in done.stdout
    assert json.loads((ensemble / "ensemble.json").read_text())["sweeps"] == [last["sweep"]]
