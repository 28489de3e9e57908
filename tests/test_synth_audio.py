"""Sound in the synthetic data sets, the declared "audio" of a video entry and the 360+x import of it."""

import json
import shutil

import av
import numpy as np
import pytest

from tal_core.data.annotations import DatasetError, load_dataset
from tal_core.data.audio import decode_audio
from tal_core.data.importers import import_360x
from tal_core.data.synth import ACTIONS, SynthSpec, synthesize
from tal_core.data.synth_audio import HARD_SOUNDS, ONSET_JITTER_S, RATE, plan_sounds, render_sound, sound_rng
from tal_core.data.synth_hard import HARD_ACTIONS


def video_packets(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(video=0) if packet.size]


def audio_streams(path) -> int:
    with av.open(str(path)) as container:
        return len(container.streams.audio)


def loudness(track: np.ndarray, start: float, end: float) -> float:
    """The peak level (ticks are short: their mean level is low)."""
    return float(np.abs(track[int(start * RATE): int(end * RATE)]).max())


def test_hard_frames_are_byte_identical_with_and_without_sound(tmp_path, monkeypatch):
    """The frames handed to the encoder are the same arrays with sound and without (sound has a random stream
    of its own). The mp4s' packets are not compared: x264 was seen to encode the same frames differently under
    heavy load, with or without sound."""
    from tal_core.data import synth

    written = {}
    encode = synth.write_mp4s

    def recording(paths, frames, fps, sound=None):
        frames = list(frames)
        written[next(iter(paths.values())).parents[2].name, next(iter(paths.values())).parent.name] = frames
        encode(paths, iter(frames), fps, sound)

    monkeypatch.setattr(synth, "write_mp4s", recording)
    for kind, audio in (("loud", "mp4"), ("mute", "none")):
        synthesize(tmp_path / kind, SynthSpec.for_preset("hard", videos=2, duration=(6.0, 7.0), size=32,
                                                        views=("front", "ego"), audio=audio))
    assert json.loads((tmp_path / "loud" / "annotations.json").read_text()) == \
        json.loads((tmp_path / "mute" / "annotations.json").read_text())
    for video in ("vid0000", "vid0001"):
        loud, mute = written["loud", video], written["mute", video]
        assert len(loud) == len(mute) > 90
        for a, b in zip(loud, mute, strict=True):
            assert a.keys() == b.keys() == {"front", "ego"}
            assert all(a[view].tobytes() == b[view].tobytes() for view in a)
        for view in ("front", "ego"):
            paths = [tmp_path / kind / "videos" / video / f"{view}.mp4" for kind in ("loud", "mute")]
            assert [len(video_packets(p)) for p in paths] == [len(loud)] * 2
            assert [audio_streams(p) for p in paths] == [1, 0]
    spec = load_dataset(tmp_path / "loud")
    video = spec.videos["vid0000"]
    sound = decode_audio(spec.audio_path(video, "front"))
    assert abs(len(sound) / RATE - video.duration) < 0.1 and np.abs(sound).max() > 0.05


def test_every_easy_action_sounds_and_the_direction_pair_sounds_different():
    heard = {}
    for action, name in enumerate(ACTIONS):
        track = render_sound(sound_rng(0, action), 6.0, 1, [(2.0, 4.0, action)], ACTIONS, "easy")
        assert loudness(track, 2.1, 3.9) > 5 * loudness(track, 0.2, 1.8), name  # on exactly while it lasts
        assert loudness(track, 4.1, 5.9) < 0.02
        heard[name] = np.abs(np.fft.rfft(track[2 * RATE: 4 * RATE]))
    left, right = heard["slide_left"].argmax() / 2, heard["slide_right"].argmax() / 2  # 2 s: bins of 0.5 Hz
    assert (left, right) == (440.0, 660.0)


def tick_times(track: np.ndarray, start: float, end: float) -> np.ndarray:
    """Onsets of the 2 kHz ticks: 5 ms frames whose energy jumps."""
    piece = track[int(start * RATE): int(end * RATE)]
    energy = np.array([np.sum(piece[i: i + 80] ** 2) for i in range(0, len(piece) - 80, 80)])
    rising = np.flatnonzero((energy[1:] > 0.05 * energy.max()) & (energy[:-1] <= 0.05 * energy.max()))
    return start + (rising + 1) * 0.005


def test_hard_sounds_complement_sight():
    index = HARD_ACTIONS.index
    # the flash rates sound apart: 2 vs 5 ticks a second, each at a flash onset (k / rate after the start)
    for name, rate in (("flash_slow", 2), ("flash_fast", 5)):
        track = render_sound(sound_rng(0, 0), 8.0, 0, [(1.0, 7.0, index(name))], HARD_ACTIONS, "hard")
        onsets = tick_times(track, 1.9, 5.9)
        assert len(onsets) == 4 * rate
        assert np.allclose(((onsets - 1.0) * rate + 0.1) % 1.0, 0.1, atol=0.05)
    # direction pairs make one sound; grow and shrink none
    assert HARD_SOUNDS["drift_left"] == HARD_SOUNDS["drift_right"] and HARD_SOUNDS["spin_cw"] == HARD_SOUNDS["spin_ccw"]
    for name in ("grow", "shrink"):
        quiet = render_sound(sound_rng(3, 1), 8.0, 0, [], HARD_ACTIONS, "hard")
        track = render_sound(sound_rng(3, 1), 8.0, 0, [(2.0, 6.0, index(name))], HARD_ACTIONS, "hard")
        assert np.array_equal(track, quiet)  # silent, and the rest of the sound is drawn alike
    # onsets jitter against the action's edges, by at most ONSET_JITTER_S, and the sound plays there
    plans = [plan_sounds(sound_rng(seed, 0), 8.0, [(3.0, 6.0, index("spin_cw"))], HARD_ACTIONS, "hard")[0]
             for seed in range(12)]
    edges = np.array([(begin, stop) for begin, stop, *_ in plans])
    assert (np.abs(edges - [3.0, 6.0]) <= ONSET_JITTER_S).all() and edges.std(axis=0).min() > 0.05
    begin, stop = edges[0]
    track = render_sound(sound_rng(0, 0), 8.0, 1, [(3.0, 6.0, index("spin_cw"))], HARD_ACTIONS, "hard")
    whirr = np.abs(np.fft.rfft(track[int(begin * RATE) + 160: int(stop * RATE) - 160]))
    assert abs(whirr.argmax() * RATE / (2 * (len(whirr) - 1)) - 900) < 2


def test_synth_declares_wav_files_the_spec_reads(tmp_path, capsys):
    from talsearch.cli import main

    assert main(["synth", str(tmp_path / "wav"), "--videos", "3", "--size", "32", "--audio", "wav"]) == 0
    spec = load_dataset(tmp_path / "wav")
    for video in spec.videos.values():
        assert video.audio == f"videos/{video.video_id}/audio.wav"
        assert spec.audio_path(video, "front") == tmp_path / "wav" / video.audio
        assert audio_streams(spec.video_path(video, "front")) == 0
        assert abs(len(decode_audio(spec.audio_path(video, "front"))) / RATE - video.duration) < 0.01
    raw = json.loads((tmp_path / "wav" / "annotations.json").read_text())
    raw["database"]["vid0000"]["audio"] = "../outside.wav"
    (tmp_path / "wav" / "annotations.json").write_text(json.dumps(raw))
    with pytest.raises(DatasetError, match=r"vid0000.audio: path '../outside.wav' escapes"):
        load_dataset(tmp_path / "wav")


def test_import_360x_keeps_the_recordings_audio(tmp_path):
    synthesize(tmp_path / "syn", SynthSpec(videos=2, seed=1, duration=(6.0, 6.5), size=32, views=("front",)))
    src = tmp_path / "src"
    (src / "rec1").mkdir(parents=True)
    (src / "rec2").mkdir(parents=True)
    shutil.copy(tmp_path / "syn" / "videos" / "vid0000" / "front.mp4", src / "rec1" / "front_view.mp4")
    shutil.copy(tmp_path / "syn" / "videos" / "vid0001" / "front.mp4", src / "rec2" / "front_view.mp4")
    from tal_core.data.synth_audio import write_wav

    write_wav(src / "rec2" / "audio.wav", np.zeros(6 * RATE, np.float32))  # rec2 has an audio file of its own
    for rec in ("rec1", "rec2"):
        (src / rec / f"{rec}.json").write_text(json.dumps({"metadata": {"a": {"z": [0.5, 2.2], "av": {"1": "walk"}}}}))
    (src / "scenes.csv").write_text("recording,scene\nrec1,kitchen\nrec2,office\n")
    import_360x(src, tmp_path / "out", cut=2.0)
    spec = load_dataset(tmp_path / "out")
    clips = {vid: v for vid, v in spec.videos.items() if v.recording == "rec2"}
    assert clips and all(v.audio == "videos/rec2/audio.wav" for v in clips.values())
    assert (tmp_path / "out" / "videos" / "rec2" / "audio.wav").is_file()
    rec1 = [v for v in spec.videos.values() if v.recording == "rec1"]
    assert all(v.audio is None for v in rec1)  # its sound is the view file's own track, linked as it is
    assert audio_streams(spec.audio_path(rec1[0], "front")) == 1
