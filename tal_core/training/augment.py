"""Train-time augmentation on the batch, on the training device (the TSM/TSN recipe).

Every frame of a clip gets the same spatial crop, flip and colour change (the clip stays one continuous view,
so motion between its frames is untouched); clips differ. One ``grid_sample`` does crop, resize and flip for
the whole batch. A horizontal flip turns a leftward motion into a rightward one, so it swaps the labels of
the declared ``data.flip_pairs`` (interval and per-frame labels alike).

Sound (``augment_sound``, the ``audio`` section): per clip, a gain, a time shift of its windows and SpecAugment's
time and frequency masks, the same for every window of the clip; what is shifted in or masked is silence.
Without frames (audio alone) nothing is flipped: a flip's label swap needs the picture it mirrors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from tal_core.config import AudioConfig, AugmentConfig, ConfigError
from tal_core.data.audio import FRAMES_PER_SECOND, LOG_OFFSET, SILENCE

ASPECT_RANGE = (3 / 4, 4 / 3)


def flip_permutation(actions: Sequence[str], pairs) -> torch.Tensor:
    """Label map of a horizontal flip over classes (0 = background, 1.. = ``actions``); names are checked."""
    perm = torch.arange(len(actions) + 1)
    for left, right in pairs or ():
        for name in (left, right):
            if name not in actions:
                raise ConfigError(f"data.flip_pairs: '{name}' is not an action of the data set ({list(actions)})")
        a, b = actions.index(left) + 1, actions.index(right) + 1
        perm[a], perm[b] = b, a
    return perm


def active(cfg: AugmentConfig) -> bool:
    return cfg.crop_min_area < 1 or cfg.colour > 0 or cfg.flip > 0


def _crop_theta(n: int, cfg: AugmentConfig, flips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Affine maps (n, 2, 3) from output to input coordinates in [-1, 1]: a random crop, maybe mirrored."""
    area = cfg.crop_min_area + (1 - cfg.crop_min_area) * torch.rand(n, generator=generator)
    log_aspect = torch.empty(n).uniform_(math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1]), generator=generator)
    aspect = torch.exp(log_aspect) if cfg.crop_min_area < 1 else torch.ones(n)  # a flip alone keeps the frame
    width, height = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    centre_x = (1 - width) * (2 * torch.rand(n, generator=generator) - 1)
    centre_y = (1 - height) * (2 * torch.rand(n, generator=generator) - 1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.where(flips, -width, width)
    theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = centre_x, height, centre_y
    return theta


def _colour(frames: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation of each clip scaled by factors in [1 - strength, 1 + strength]."""
    n = frames.shape[0]
    factors = 1 + strength * (2 * torch.rand(3, n, generator=generator) - 1)
    brightness, contrast, saturation = (f.to(frames.device).view(n, 1, 1, 1, 1) for f in factors)
    frames = frames * brightness
    grey = (0.299 * frames[:, :, 0:1] + 0.587 * frames[:, :, 1:2] + 0.114 * frames[:, :, 2:3])
    level = grey.mean(dim=(1, 2, 3, 4), keepdim=True)
    frames = (frames - level) * contrast + level
    grey = (0.299 * frames[:, :, 0:1] + 0.587 * frames[:, :, 1:2] + 0.114 * frames[:, :, 2:3])
    return (grey + (frames - grey) * saturation).clamp(0, 255)


def augment_batch(clips: torch.Tensor, action: torch.Tensor, frame_labels: torch.Tensor, cfg: AugmentConfig,
                  flip_perm: torch.Tensor | None, generator: torch.Generator):
    """clips (N, T, 3, H, W) uint8 -> float clips in [0, 255] and the labels after any flips."""
    if not active(cfg):
        return clips, action, frame_labels
    n, t, c, h, w = clips.shape
    frames = clips.float()
    flips = torch.rand(n, generator=generator) < cfg.flip
    if cfg.crop_min_area < 1 or flips.any():
        theta = _crop_theta(n, cfg, flips, generator).to(clips.device)
        grid = F.affine_grid(theta.repeat_interleave(t, dim=0), [n * t, c, h, w], align_corners=False)
        frames = F.grid_sample(frames.flatten(0, 1), grid, mode="bilinear", padding_mode="border",
                               align_corners=False).view(n, t, c, h, w)
    if cfg.colour > 0:
        frames = _colour(frames, cfg.colour, generator)
    if flips.any() and flip_perm is not None:
        perm, flipped = flip_perm.to(action.device), flips.to(action.device)
        action = torch.where(flipped, perm[action], action)
        frame_labels = torch.where(flipped[:, None], perm[frame_labels], frame_labels)
    return frames, action, frame_labels


def audio_active(cfg: AudioConfig) -> bool:
    return cfg.gain_db > 0 or cfg.time_shift_seconds > 0 or cfg.time_masks > 0 or cfg.freq_masks > 0


def _spans(n: int, length: int, longest: int, generator: torch.Generator) -> torch.Tensor:
    """(n, length) bool: per row one random stretch of 0..``longest`` positions."""
    widths = torch.randint(0, longest + 1, (n,), generator=generator)
    starts = (torch.rand(n, generator=generator) * (length - widths + 1).clamp(min=1)).long()
    positions = torch.arange(length)[None]
    return (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])


def augment_sound(windows: torch.Tensor, cfg: AudioConfig, generator: torch.Generator) -> torch.Tensor:
    """windows (N, T, W, B) log-mel -> the same after each clip's gain (exact: the mel magnitudes are scaled,
    ``log(g (exp(x) - 0.01) + 0.01)``), time shift and masks."""
    n, t, w, b = windows.shape
    device = windows.device
    out = windows.float()
    if cfg.gain_db > 0:
        decibels = cfg.gain_db * (2 * torch.rand(n, generator=generator) - 1)
        gain = (10 ** (decibels / 20)).to(device).view(n, 1, 1, 1)
        out = torch.log((out.exp() - LOG_OFFSET).clamp(min=0) * gain + LOG_OFFSET)
    if cfg.time_shift_seconds > 0:
        most = int(round(cfg.time_shift_seconds * FRAMES_PER_SECOND))
        shifts = torch.randint(-most, most + 1, (n,), generator=generator)
        source = torch.arange(w)[None] - shifts[:, None]  # output frame f hears input frame f - shift
        inside = ((source >= 0) & (source < w)).to(device).view(n, 1, w, 1)
        index = source.clamp(0, w - 1).to(device).view(n, 1, w, 1).expand(n, t, w, b)
        out = torch.where(inside, out.gather(2, index), torch.full_like(out, SILENCE))
    for _ in range(cfg.time_masks):
        longest = int(round(cfg.time_mask_seconds * FRAMES_PER_SECOND))
        out = out.masked_fill(_spans(n, w, longest, generator).to(device).view(n, 1, w, 1), SILENCE)
    for _ in range(cfg.freq_masks):
        out = out.masked_fill(_spans(n, b, cfg.freq_mask_bands, generator).to(device).view(n, 1, 1, b), SILENCE)
    return out


def augment_inputs(inputs, action: torch.Tensor, frame_labels: torch.Tensor, cfg: AugmentConfig,
                   flip_perm: torch.Tensor | None, generator: torch.Generator, audio: AudioConfig | None = None):
    """``augment_batch`` for clips, or for a dict of "video" clips (augmented as clips) and "audio" windows
    (``augment_sound``); returns (inputs, action, frame_labels)."""
    if not isinstance(inputs, dict):
        return augment_batch(inputs, action, frame_labels, cfg, flip_perm, generator)
    out = dict(inputs)
    if "video" in out:
        out["video"], action, frame_labels = augment_batch(out["video"], action, frame_labels, cfg, flip_perm,
                                                           generator)
    if "audio" in out and audio is not None and audio_active(audio):
        out["audio"] = augment_sound(out["audio"], audio, generator)
    return out, action, frame_labels
