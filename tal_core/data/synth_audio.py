"""The sound of the synthetic data sets (``talsearch synth``): every action class has a sound.

Sound is drawn from a random stream of its own (``sound_rng``), never from the one the frames are drawn from, so
a data set's frames are the same with sound and without. Written at 16 kHz mono: an AAC track in every view's
mp4 (``--audio mp4``, the default) or ``videos/<id>/audio.wav`` declared as the entry's ``"audio"`` (``wav``).

``easy``: each action its own sound, on exactly while the action lasts: ``slide_left`` a 440 Hz tone and
``slide_right`` a 660 Hz tone (sound separates the pair only motion tells apart), ``rise`` rising chirps,
``pulse`` noise swelling with the square, ``blink`` a tick at every blink; a faint hum per scene.

``hard``: sight and sound complement each other:
- ``drift_left`` / ``drift_right`` make one whoosh (band noise): sound finds a drift, only sight tells its way;
- ``spin_cw`` / ``spin_ccw`` make one whirr (a pulsing 900 Hz tone): sound finds a spin, only sight its way;
- ``flash_slow`` / ``flash_fast`` tick at every flash, 2 or 5 times a second: sound separates the rates that
  video decoded at 8 fps aliases;
- ``grow`` / ``shrink`` are silent: only sight finds them;
- every sound starts and stops up to ``ONSET_JITTER_S`` away from its action's edges, at a random level;
- distractors (beeps, noise bursts, knocks) about once every ``DISTRACTOR_EVERY_S`` seconds, unrelated to actions;
- a sound bed per scene: kitchen hum, office hiss, street rumble, garden birdsong.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

RATE = 16_000
SOUND_STREAM = 0x50D  # the sound's random stream: np.random.default_rng([seed, video, SOUND_STREAM])
ONSET_JITTER_S = 0.3
DISTRACTOR_EVERY_S = 6.0
FADE_S = 0.01
HARD_SOUNDS = {"drift_left": "whoosh", "drift_right": "whoosh", "spin_cw": "whirr", "spin_ccw": "whirr",
               "flash_slow": "ticks", "flash_fast": "ticks", "grow": None, "shrink": None}
EASY_SOUNDS = {"slide_left": "tone440", "slide_right": "tone660", "rise": "chirps", "pulse": "swell",
               "blink": "ticks"}
TICK_HZ = {"flash_slow": 2.0, "flash_fast": 5.0, "blink": 3.0}  # ticks per second (the easy blink: 3 onsets/s)


def sound_rng(seed: int, video: int) -> np.random.Generator:
    return np.random.default_rng([seed, video, SOUND_STREAM])


def _times(n: int) -> np.ndarray:
    return np.arange(n) / RATE


def band_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """White noise kept between ``low`` and ``high`` Hz, unit RMS."""
    if n == 0:
        return np.zeros(0)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    hz = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(hz < low) | (hz > high)] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-9)


def ticks(n: int, every: float, hz: float = 2000.0, length_s: float = 0.015) -> np.ndarray:
    """A short decaying tone burst every ``every`` seconds from sample 0."""
    out = np.zeros(n)
    burst_t = _times(int(length_s * RATE))
    burst = np.sin(2 * np.pi * hz * burst_t) * np.exp(-burst_t / (length_s / 4))
    for start in (np.arange(0, n / RATE, every) * RATE).astype(int):
        piece = burst[: n - start]
        out[start : start + len(piece)] += piece
    return out


def action_sound(kind: str, rng: np.random.Generator, n: int, elapsed0: float, name: str) -> np.ndarray:
    """``n`` samples of an action's sound whose first sample lies ``elapsed0`` seconds into the action
    (negative: before it starts), unit-ish level."""
    t = _times(n) + elapsed0
    if kind == "whoosh":
        return band_noise(rng, n, 250, 700) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
    if kind == "whirr":
        return np.sin(2 * np.pi * 900 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 1.2 * t))
    if kind == "ticks":  # in step with the flashes (or blinks): one at every onset, elapsed = k / rate
        every = 1 / TICK_HZ[name]
        first = (-elapsed0) % every  # the first onset at or after this piece's start
        shifted = ticks(max(0, n - int(round(first * RATE))), every)
        return np.concatenate([np.zeros(n - len(shifted)), shifted]) * 2.0
    if kind.startswith("tone"):
        return np.sin(2 * np.pi * float(kind[4:]) * t)
    if kind == "chirps":  # 1 s sweeps from 300 to 1500 Hz
        phase = 2 * np.pi * (300 * (t % 1.0) + 600 * (t % 1.0) ** 2) + 2 * np.pi * 900 * np.floor(t)
        return np.sin(phase)
    if kind == "swell":
        return band_noise(rng, n, 200, 4000) * np.abs(np.sin(2 * np.pi * t)) * 0.8
    raise ValueError(f"unknown sound {kind!r}")


def _fade(piece: np.ndarray) -> np.ndarray:
    ramp = min(len(piece) // 2, int(FADE_S * RATE))
    if ramp:
        window = np.linspace(0, 1, ramp)
        piece[:ramp] *= window
        piece[-ramp:] *= window[::-1]
    return piece


def _add(track: np.ndarray, start_s: float, piece: np.ndarray) -> None:
    begin = int(round(start_s * RATE))
    lo, hi = max(begin, 0), min(begin + len(piece), len(track))
    if hi > lo:
        track[lo:hi] += piece[lo - begin : hi - begin]


def scene_bed(rng: np.random.Generator, n: int, scene: int, preset: str) -> np.ndarray:
    t = _times(n)
    if preset == "easy":
        return 0.01 * np.sin(2 * np.pi * (80 + 30 * scene) * t)
    if scene == 0:  # kitchen: a fridge's hum
        return 0.02 * np.sin(2 * np.pi * 100 * t) + 0.01 * np.sin(2 * np.pi * 200 * t)
    if scene == 1:  # office: air-conditioning hiss
        return 0.015 * band_noise(rng, n, 2000, 6000)
    if scene == 2:  # street: traffic rumble, slowly swelling
        return 0.04 * band_noise(rng, n, 40, 200) * (0.7 + 0.3 * np.sin(2 * np.pi * 0.1 * t))
    bed = np.zeros(n)  # garden: birdsong, short chirps at random
    for at in np.sort(rng.uniform(0, n / RATE, rng.poisson(1.5 * n / RATE))):
        chirp_t = _times(int(0.08 * RATE))
        chirp = np.sin(2 * np.pi * (3000 * chirp_t + 6000 * chirp_t**2)) * np.hanning(len(chirp_t))
        _add(bed, at, 0.05 * chirp)
    return bed


def distractors(rng: np.random.Generator, track: np.ndarray) -> None:
    """Beeps, noise bursts and knocks at random times, mixed into ``track``."""
    seconds = len(track) / RATE
    for at in rng.uniform(0, seconds, rng.poisson(seconds / DISTRACTOR_EVERY_S)):
        kind, level = rng.integers(3), rng.uniform(0.1, 0.3)
        if kind == 0:  # a beep
            piece = np.sin(2 * np.pi * 1300 * _times(int(rng.uniform(0.15, 0.5) * RATE)))
        elif kind == 1:  # a noise burst
            piece = band_noise(rng, int(rng.uniform(0.1, 0.3) * RATE), 100, 7000) * 0.5
        else:  # a knock: two or three low ticks
            piece = ticks(int(0.8 * RATE), 0.25, hz=400.0, length_s=0.03)[: int((rng.integers(2, 4) * 0.25) * RATE)]
        _add(track, float(at), level * _fade(piece))


def plan_sounds(rng: np.random.Generator, duration: float, segments, actions: tuple[str, ...], preset: str):
    """(begin, stop, kind, level, action name, action start) of every action's sound: in ``hard`` it starts and
    stops up to ``ONSET_JITTER_S`` away from its action's edges, at a random level; silent actions have none."""
    sounds = EASY_SOUNDS if preset == "easy" else HARD_SOUNDS
    plan = []
    for start, end, action in segments:
        name = actions[action]
        kind = sounds[name]
        if kind is None:  # a silent action draws nothing: the rest of the sound is as without it
            continue
        jitter = rng.uniform(-ONSET_JITTER_S, ONSET_JITTER_S, 2) if preset == "hard" else np.zeros(2)
        level = rng.uniform(0.15, 0.35) if preset == "hard" else 0.25
        begin, stop = max(0.0, start + float(jitter[0])), min(duration, end + float(jitter[1]))
        if stop - begin > 2 * FADE_S:
            plan.append((begin, stop, kind, float(level), name, start))
    return plan


def render_sound(rng: np.random.Generator, duration: float, scene: int, segments, actions: tuple[str, ...],
                 preset: str) -> np.ndarray:
    """The video's soundtrack: float32 mono samples at 16 kHz, ``round(duration * 16000)`` of them."""
    n = int(round(duration * RATE))
    track = scene_bed(rng, n, scene, preset)
    for begin, stop, kind, level, name, start in plan_sounds(rng, duration, segments, actions, preset):
        piece = action_sound(kind, rng, int(round((stop - begin) * RATE)), begin - start, name)
        _add(track, begin, level * _fade(piece))
    if preset == "hard":
        distractors(rng, track)
    return np.clip(track, -1, 1).astype(np.float32)


def write_wav(path: Path, sound: np.ndarray) -> None:
    """16-bit PCM mono at 16 kHz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray((sound * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


class SoundTrack:
    """An AAC track of ``sound`` in an mp4 being written, fed in step with its video frames."""

    def __init__(self, container, sound: np.ndarray, fps: int):
        self.container, self.sound, self.fps = container, sound, fps
        self.stream = container.add_stream("aac", rate=RATE, layout="mono")
        self.stream.options = {"aac_coder": "fast"}  # ffmpeg's default (twoloop) takes twice as long
        self.written = 0

    def until_frame(self, frames: int) -> None:
        """Encode the sound up to the end of video frame ``frames`` (all of it once ``frames`` is None)."""
        stop = len(self.sound) if frames is None else min(len(self.sound), int(round(frames * RATE / self.fps)))
        if stop > self.written:
            piece = self.sound[self.written : stop].astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, self.written, fractions.Fraction(1, RATE)
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            self.written = stop

    def finish(self) -> None:
        self.until_frame(None)
        for packet in self.stream.encode():
            self.container.mux(packet)
