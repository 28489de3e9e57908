"""The audio front end: decoding (resampled, mono, aligned, clipped), VGGish's log-mel, the cache, windows."""

import fractions
import os
from pathlib import Path

import av
import numpy as np
import pytest

from tal_core.data import audio
from tal_core.data.audio import (
    SILENCE,
    AudioCache,
    AudioMissingError,
    cell_windows,
    decode_audio,
    log_mel,
    mel_filterbank,
    windows_at,
)


def write_wav(path: Path, channels: np.ndarray, rate: int) -> Path:
    """channels (C, S) float in [-1, 1] as 16-bit PCM."""
    layout = {1: "mono", 2: "stereo"}.get(len(channels), f"{len(channels)}c")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout=layout)
        interleaved = (np.clip(channels, -1, 1).T * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def write_mp4(path: Path, seconds: float, sound: np.ndarray | None = None, audio_start: float = 0.0,
              rate: int = 16000) -> Path:
    """An 8 fps 32 px mp4 of ``seconds``; ``sound`` (C, S) as AAC whose first sample plays at ``audio_start``."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=8)
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        stream = None
        if sound is not None:
            stream = container.add_stream("aac", rate=rate, layout="stereo" if len(sound) == 2 else "mono")
        for i in range(int(seconds * 8)):
            image = np.full((32, 32, 3), 8 * i % 256, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            frame = av.AudioFrame.from_ndarray(sound.astype(np.float32), format="fltp", layout=stream.layout.name)
            frame.sample_rate, frame.pts = rate, int(round(audio_start * rate))
            frame.time_base = fractions.Fraction(1, rate)
            for packet in [*stream.encode(frame), *stream.encode()]:
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return path


def click(seconds: float, at: float, rate: int = 16000, channels: int = 1) -> np.ndarray:
    signal = np.zeros((channels, int(seconds * rate)), np.float32)
    signal[:, int(round(at * rate))] = 0.9
    return signal


def click_at(signal: np.ndarray) -> int:
    """The sample of the sharpest step (a click over a low tone)."""
    return int(np.argmax(np.abs(np.diff(signal))))


def test_mel_filterbank_matches_a_per_bin_triangle_formula():
    """Reference written from the definition, one weight at a time: HTK mel, 66 equally spaced mel edges over
    125-7500 Hz, band m rises from edge m to m + 1 and falls to m + 2; DC carries nothing."""
    def mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    low, high = mel(125.0), mel(7500.0)
    edges = [low + i * (high - low) / 65 for i in range(66)]
    reference = np.zeros((257, 64))
    for k in range(1, 257):
        m_k = mel(k * 8000.0 / 256)
        for band in range(64):
            left, centre, right = edges[band], edges[band + 1], edges[band + 2]
            if left < m_k <= centre:
                reference[k, band] = (m_k - left) / (centre - left)
            elif centre < m_k < right:
                reference[k, band] = (right - m_k) / (right - centre)
    weights = mel_filterbank()
    assert weights.shape == (257, 64)
    np.testing.assert_allclose(weights, reference, atol=1e-12)
    assert (weights[:4].sum(axis=1) == 0).all() and weights[-1].sum() == 0  # nothing below 125 or at 8 kHz


def test_log_mel_frames_as_vggish_and_a_tone_lights_its_band():
    rate = 16000
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    values = log_mel(tone)
    assert values.shape == (1 + (rate - 400) // 160, 64) and values.dtype == np.float32
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic
    for j in (0, 7, 97):
        magnitude = np.abs(np.fft.rfft(tone[160 * j: 160 * j + 400] * hann, 512))
        np.testing.assert_allclose(values[j], np.log(magnitude @ mel_filterbank() + 0.01), rtol=1e-4, atol=1e-4)
    centres_hz = 700 * (np.exp(np.linspace(1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700), 66)[1:-1]
                               / 1127) - 1)
    assert values.mean(axis=0).argmax() == np.abs(centres_hz - 1000).argmin()
    assert np.all(log_mel(np.zeros(4000, np.float32)) == np.float32(SILENCE))


def test_decode_resamples_to_16k_averages_channels_and_clips(tmp_path):
    rate = 44100
    t = np.arange(3 * rate) / rate
    tone = np.sin(2 * np.pi * 200 * t)
    stereo = np.stack([0.6 * tone, 0.2 * tone])
    stereo[:, int(1.5 * rate)] = 0.95  # a click in both channels at 1.5 s
    path = write_wav(tmp_path / "stereo.wav", stereo, rate)
    whole = decode_audio(path)
    assert len(whole) == 48000 and whole.dtype == np.float32
    middle = whole[4000:20000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.02)  # (0.6 + 0.2) / 2
    assert abs(click_at(whole) - 24000) <= 2
    clip = decode_audio(path, start=1.25, end=2.25)  # a clip that starts 1.25 s into the recording (a seek)
    assert len(clip) == 16000 and abs(click_at(clip) - 4000) <= 2
    np.testing.assert_allclose(clip[:3000], whole[20000:23000], atol=1e-3)


def test_audio_inside_an_mp4_is_placed_on_the_video_clock(tmp_path):
    """The AAC track starts 0.5 s after the first video frame: its click at 1.0 s of sound plays at 1.5 s."""
    path = write_mp4(tmp_path / "late.mp4", 4.0, click(3.0, 1.0, channels=2), audio_start=0.5)
    signal = decode_audio(path)
    assert abs(int(np.argmax(np.abs(signal))) - 24000) <= 2
    assert np.abs(signal[:7000]).max() < 0.01  # nothing before the track starts


def test_a_window_hears_a_click_in_the_frames_at_its_time(tmp_path):
    at = 2.345
    signal = click(5.0, at)[0]
    values = log_mel(signal)
    loud = values.max(axis=1) > SILENCE + 1  # the frames whose 25 ms hear the click
    heard = np.flatnonzero(loud)
    assert heard.min() * 0.01 <= at < heard.max() * 0.01 + 0.025  # frame j hears [j / 100, j / 100 + 0.025)
    starts, ends = np.arange(5.0), np.arange(5.0) + 1  # cells [0, 1), ..., [4, 5)
    windows = cell_windows(values, 0.0, starts, ends, 0.96)
    assert windows.shape == (5, 96, 64)
    energy = windows.max(axis=2)
    assert [bool((e > SILENCE + 1).any()) for e in energy] == [False, False, True, False, False]
    rows = np.flatnonzero(energy[2] > SILENCE + 1)  # window of [2, 3) spans [2.02, 2.98): the click ~0.325 s in
    assert rows.min() <= 32.5 <= rows.max() + 2.5
    centred = windows_at(values, 0.0, [at], 0.96)[0].max(axis=1)
    assert np.flatnonzero(centred > SILENCE + 1).mean() == pytest.approx(47.5, abs=1.5)  # the window's middle
    early = windows_at(values, 0.0, [0.1], 0.96)[0]  # reaches 0.38 s before the signal: silence there
    assert (early[:36] == np.float32(SILENCE)).all()
    later = windows_at(values, 1.0, [at + 1.0], 0.96)[0].max(axis=1)  # the same signal starting at 1 s
    np.testing.assert_array_equal(later, centred)
    assert (windows_at(None, 0.0, [1.0, 2.0], 0.5) == np.float32(SILENCE)).all()  # no audio: silence


def test_the_cache_decodes_once_and_again_when_the_file_changes(tmp_path):
    path = write_wav(tmp_path / "a.wav", click(2.0, 1.0), 16000)
    cache = AudioCache(tmp_path / "cache")
    before = audio.decode_count()
    first = cache.load(path, 0.0, 2.0)
    assert cache.decoded == 1 and audio.decode_count() == before + 1
    again = AudioCache(tmp_path / "cache")  # a second run
    second = again.load(path, 0.0, 2.0)
    assert again.decoded == 0 and audio.decode_count() == before + 1
    np.testing.assert_array_equal(first, second)
    assert isinstance(second, np.memmap) and not list((tmp_path / "cache").glob(".*tmp*"))
    again.load(path, 0.5, 1.5)  # another time range is another entry
    assert again.decoded == 1
    os.utime(path, ns=(1, 1))  # an edited file is never served stale
    again.load(path, 0.0, 2.0)
    assert again.decoded == 2


def test_a_file_without_audio_is_named(tmp_path):
    silent = write_mp4(tmp_path / "silent.mp4", 1.0)
    with pytest.raises(AudioMissingError, match="silent.mp4: has no audio stream"):
        AudioCache(tmp_path / "cache").load(silent, 0.0, 1.0)
    with pytest.raises(AudioMissingError, match="nowhere.wav: audio file not found"):
        decode_audio(tmp_path / "nowhere.wav")
