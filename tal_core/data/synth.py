"""Synthetic multi-view TAL data set written as real mp4 files (PyAV).

A 2:1 "world" is rendered per frame: a scene-specific textured background and,
during an action segment, a moving object. Views are cut from the world:
``panoramic`` (all of it), ``front`` (a centred third-person crop) and ``ego``
(a zoomed crop that follows the object with hand-held jitter).

``slide_left`` and ``slide_right`` draw the same square and differ only in the
direction of motion: a model without temporal modelling cannot tell them apart.
Each scene favours some actions (its prior), so the scene head carries signal.

Two presets: ``easy`` (the default above) and ``hard`` (``synth_hard.py``: eight actions in four pairs
that only temporal cues separate, views that miss actions, a distractor, noise, a shaking ego camera).

Every action class has a sound (``synth_audio.py``), drawn from a random stream of its own: the frames are the
same with sound (an AAC track in each mp4, or a declared ``audio.wav``) and without.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from tal_core.data.annotations import write_annotations
from tal_core.data.synth_audio import SoundTrack, render_sound, sound_rng, write_wav
from tal_core.data.synth_hard import (
    HARD_ACTIONS,
    draw_hard_action,
    hard_action_prior,
    lagged_gaze,
    plan_distractor,
)

ACTIONS = ("slide_left", "slide_right", "rise", "pulse", "blink")
DIRECTION_ONLY = ("slide_left", "slide_right")  # the same square; only the direction of motion differs
SCENES = ("kitchen", "office", "street", "garden")
VIEWS = ("panoramic", "front", "ego")
WORLD_H, WORLD_W = 96, 192


PRESETS = ("easy", "hard")


@dataclass(frozen=True)
class SynthSpec:
    videos: int = 24
    seed: int = 0
    fps: int = 8
    duration: tuple[float, float] = (16.0, 24.0)
    size: int = 64
    views: tuple[str, ...] = VIEWS
    val_share: float = 0.2
    test_share: float = 0.15
    preset: str = "easy"
    audio: str = "mp4"  # mp4 (an AAC track in every view's file) | wav (videos/<id>/audio.wav, declared) | none

    @classmethod
    def for_preset(cls, preset: str, **given) -> SynthSpec:
        """The preset's defaults, then ``given`` (None values are left to the preset)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown synth preset {preset!r} (choose from {PRESETS})")
        defaults = dict(PRESET_DEFAULTS[preset], preset=preset)
        defaults.update({k: v for k, v in given.items() if v is not None})
        return cls(**defaults)


# hard: 32 train / 16 val / 2 test videos of 20-30 s at 16 fps
PRESET_DEFAULTS = {"easy": {}, "hard": {"videos": 50, "fps": 16, "duration": (20.0, 30.0), "val_share": 0.32,
                                        "test_share": 0.04}}


@dataclass(frozen=True)
class Look:
    """How a preset draws and films its world."""

    actions: tuple[str, ...]
    length: tuple[float, float]  # action length range, seconds
    gap: tuple[float, float]  # background gap range between actions, seconds
    anchor_x: tuple[float, float]  # where objects sit across the world
    noise: int  # per-pixel noise amplitude
    shake: float  # ego camera shake (world pixels, per-frame step of a random walk)
    ego_lag_s: float  # 0: the ego view looks at the object at once; else its gaze lags by this time constant
    distractor: bool

    def draw(self, frame: np.ndarray, action: int, elapsed: float, colour: np.ndarray, anchor) -> tuple:
        drawer = draw_action if self.actions == ACTIONS else draw_hard_action
        return drawer(frame, action, elapsed, colour, anchor)



def scene_texture(scene_index: int) -> np.ndarray:
    """A distinct static background per scene: a base colour with oriented stripes."""
    rng = np.random.default_rng(1000 + scene_index)
    base = rng.integers(40, 200, size=3)
    yy, xx = np.mgrid[0:WORLD_H, 0:WORLD_W]
    angle = scene_index * np.pi / len(SCENES)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / (3 + 2 * scene_index))
    img = base[None, None, :] + 20 * stripes[..., None] * np.array([1, -1, 0.5])
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_action_prior(scene_index: int) -> np.ndarray:
    """Each scene favours two actions (3x as likely as the others)."""
    prior = np.ones(len(ACTIONS))
    prior[[scene_index % len(ACTIONS), (scene_index + 2) % len(ACTIONS)]] = 3.0
    return prior / prior.sum()


def plan_segments(rng: np.random.Generator, duration: float, prior: np.ndarray,
                  length: tuple[float, float] = (2.0, 4.5), gap: tuple[float, float] = (1.0, 3.0)
                  ) -> list[tuple[float, float, int]]:
    """Non-overlapping action segments (start, end, action) separated by background gaps."""
    segments, t = [], float(np.round(rng.uniform(0.5, 2.5) * 4) / 4)
    while True:
        span = float(np.round(rng.uniform(*length) * 4) / 4)
        if t + span > duration - 0.5:
            return segments
        segments.append((t, t + span, int(rng.choice(len(prior), p=prior))))
        t = float(np.round((t + span + rng.uniform(*gap)) * 4) / 4)


def _draw_box(frame: np.ndarray, cy: float, cx: float, h: float, w: float, colour: np.ndarray) -> None:
    y0, y1 = int(max(cy - h / 2, 0)), int(min(cy + h / 2, WORLD_H))
    x0, x1 = int(max(cx - w / 2, 0)), int(min(cx + w / 2, WORLD_W))
    if y1 > y0 and x1 > x0:
        frame[y0:y1, x0:x1] = colour


SLIDE_SPEED = 40.0  # world pixels per second; slides wrap around a window of SLIDE_SPAN
SLIDE_SPAN = 80.0


def draw_action(frame: np.ndarray, action: int, elapsed: float, colour: np.ndarray, anchor: tuple[float, float]):
    """Draw the object of ``action`` ``elapsed`` seconds into its segment; returns its centre (y, x)."""
    cy, cx = anchor
    name = ACTIONS[action]
    if name in ("slide_left", "slide_right"):
        sign = -1 if name == "slide_left" else 1
        cx = cx + sign * ((elapsed * SLIDE_SPEED) % SLIDE_SPAN - SLIDE_SPAN / 2)
        _draw_box(frame, cy, cx, 22, 22, colour)
    elif name == "rise":
        cy = cy + 20 - (elapsed * 12) % 40
        _draw_box(frame, cy, cx, 10, 40, colour)
    elif name == "pulse":
        size = 10 + 22 * abs(np.sin(elapsed * 2 * np.pi))
        _draw_box(frame, cy, cx, size, size, colour)
    elif name == "blink":
        if int(elapsed * 6) % 2 == 0:
            _draw_box(frame, cy, cx, 36, 10, colour)
    return cy, cx


LOOKS = {"easy": Look(ACTIONS, (2.0, 4.5), (1.0, 3.0), (70, 122), 4, 1.5, 0.0, False),
         "hard": Look(HARD_ACTIONS, (1.5, 6.0), (0.5, 2.0), (20, 172), 8, 3.5, 0.8, True)}


def _resize_nearest(img: np.ndarray, height: int, width: int) -> np.ndarray:
    ys = (np.arange(height) * img.shape[0] / height).astype(int)
    xs = (np.arange(width) * img.shape[1] / width).astype(int)
    return img[ys][:, xs]


def cut_view(world: np.ndarray, view: str, focus: tuple[float, float], jitter: np.ndarray, size: int) -> np.ndarray:
    if view == "panoramic":
        return _resize_nearest(world, size, size * 2)
    if view == "front":
        h, w = WORLD_H, WORLD_H
        y0, x0 = 0, (WORLD_W - w) // 2
    else:  # ego: zoomed, follows the focus point, shaky
        h = w = int(WORLD_H * 0.7)
        y0 = int(np.clip(focus[0] - h / 2 + jitter[0], 0, WORLD_H - h))
        x0 = int(np.clip(focus[1] - w / 2 + jitter[1], 0, WORLD_W - w))
    return _resize_nearest(world[y0 : y0 + h, x0 : x0 + w], size, size)


def object_colour(rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
    """A random saturated colour far from the scene's mean colour."""
    mean = texture.reshape(-1, 3).mean(axis=0)
    while True:
        colour = rng.choice([0, 255], size=3) * 0.8 + rng.uniform(0, 50, size=3)
        if np.abs(colour - mean).sum() > 180:
            return colour.astype(np.uint8)


def render_video(rng: np.random.Generator, duration: float, fps: int, scene: int, segments, views, size,
                 look: Look = LOOKS["easy"]):
    """Yield per frame a dict view -> HxWx3 uint8 image."""
    texture = scene_texture(scene)
    colours = [object_colour(rng, texture) for _ in segments]
    anchors = [(rng.uniform(38, 58), rng.uniform(*look.anchor_x)) for _ in segments]
    jitter = np.cumsum(rng.normal(0, look.shake, size=(int(duration * fps) + 1, 2)), axis=0) * 0.5
    still = plan_distractor(rng, duration) if look.distractor else None
    still_colour = object_colour(rng, texture) if still is not None else None
    focus = (WORLD_H / 2, WORLD_W / 2)
    gaze = np.array(focus)
    span = 4 * look.shake  # the shake's random walk is wrapped into [-span, span) pixels
    for i in range(int(round(duration * fps))):
        t = (i + 0.5) / fps
        world = texture.copy()
        if still is not None and still[0] <= t < still[1]:
            _draw_box(world, still[2], still[3], 14, 14, still_colour)
        for k, (start, end, action) in enumerate(segments):
            if start <= t < end:
                focus = look.draw(world, action, t - start, colours[k], anchors[k])
        noise = rng.integers(-look.noise, look.noise + 1, size=world.shape)
        world = np.clip(world.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        gaze = lagged_gaze(gaze, focus, fps, look.ego_lag_s) if look.ego_lag_s else np.array(focus)
        shake = jitter[i] % (2 * span) - span
        yield {view: cut_view(world, view, tuple(gaze), shake, size) for view in views}


AUDIO_CHOICES = ("mp4", "wav", "none")


def write_mp4s(paths: dict[str, Path], frames, fps: int, sound: np.ndarray | None = None) -> None:
    """One mp4 per view; ``sound`` (16 kHz mono), when given, as an AAC track in each, fed in step with the frames."""
    containers, streams, tracks = {}, {}, {}
    try:
        for view, path in paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            containers[view] = av.open(str(path), mode="w")
        for index, frame_views in enumerate(frames):
            for view, image in frame_views.items():
                if view not in streams:
                    stream = containers[view].add_stream("libx264", rate=fps)
                    stream.height, stream.width = image.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "18", "preset": "veryfast", "threads": "1"}
                    streams[view] = stream
                    if sound is not None:
                        tracks[view] = SoundTrack(containers[view], sound, fps)
                for packet in streams[view].encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    containers[view].mux(packet)
                if view in tracks:
                    tracks[view].until_frame(index + 1)
        for view, stream in streams.items():
            for packet in stream.encode():
                containers[view].mux(packet)
            if view in tracks:
                tracks[view].finish()
    finally:
        for container in containers.values():
            container.close()


def assign_subsets(count: int, spec: SynthSpec) -> list[str]:
    n_val = max(1, round(count * spec.val_share))
    n_test = max(1, round(count * spec.test_share)) if count >= 3 else 0
    n_train = max(1, count - n_val - n_test)
    return (["train"] * n_train + ["val"] * n_val + ["test"] * n_test)[:count]


def synthesize(out: str | Path, spec: SynthSpec = SynthSpec(), progress=None) -> Path:
    """Write ``spec.videos`` videos and ``annotations.json`` under ``out``; deterministic by seed."""
    out = Path(out)
    look = LOOKS[spec.preset]
    if spec.audio not in AUDIO_CHOICES:
        raise ValueError(f"unknown synth audio {spec.audio!r} (choose from {AUDIO_CHOICES})")
    database = {}
    subsets = assign_subsets(spec.videos, spec)
    for index in range(spec.videos):
        rng = np.random.default_rng([spec.seed, index])
        video_id = f"vid{index:04d}"
        scene = index % len(SCENES)
        duration = float(np.round(rng.uniform(*spec.duration) * 4) / 4)
        prior = synthetic_action_prior(scene) if spec.preset == "easy" else hard_action_prior(scene)
        segments = plan_segments(rng, duration, prior, look.length, look.gap)
        views = {v: f"videos/{video_id}/{v}.mp4" for v in spec.views}
        frames = render_video(rng, duration, spec.fps, scene, segments, spec.views, spec.size, look)
        sound = None if spec.audio == "none" else render_sound(sound_rng(spec.seed, index), duration, scene,
                                                                segments, look.actions, spec.preset)
        write_mp4s({v: out / rel for v, rel in views.items()}, frames, spec.fps,
                   sound if spec.audio == "mp4" else None)
        entry = {"subset": subsets[index], "duration": duration, "scene": SCENES[scene], "views": views}
        if spec.audio == "wav":
            entry["audio"] = f"videos/{video_id}/audio.wav"
            write_wav(out / entry["audio"], sound)
        if subsets[index] != "test":
            entry["annotations"] = [{"segment": [s, e], "label": look.actions[a]} for s, e, a in segments]
        database[video_id] = entry
        if progress:
            progress(index + 1, spec.videos)
    taxonomy = {"actions": list(look.actions), "scenes": list(SCENES), "views": list(spec.views)}
    return write_annotations({"taxonomy": taxonomy, "database": database}, out)
