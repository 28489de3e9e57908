"""Per-member temperature calibration before probability fusion.

Members differ in confidence (interval vs frame heads, views, training length): averaged as they are, the most
confident member dominates whether or not it is right more often. Each member gets the temperature T (from a
fixed grid) that minimises the negative log-likelihood of the true class at every cell centre of the videos it
is fitted on; its probabilities become p^(1/T), renormalised. Inside cross-validation the temperatures are
fitted on the training folds only and applied unchanged to the held-out fold.
"""

from __future__ import annotations

import numpy as np

from .align import AlignedVideo

TEMPERATURES = np.geomspace(0.25, 4.0, 17)
EPS = 1e-6


def cell_labels(videos: list[AlignedVideo], truth, actions: tuple[str, ...]) -> list[np.ndarray]:
    """Class index (0 = background, k = actions[k - 1]) at each cell centre of each video."""
    index = {name: k + 1 for k, name in enumerate(actions)}
    labels = []
    for v in videos:
        mine = truth.video == v.video_id
        centres = (v.starts + v.ends) / 2
        cells = np.zeros(len(centres), dtype=np.int64)
        for label, start, end in zip(truth.label[mine], truth.start[mine], truth.end[mine], strict=True):
            cells[(centres >= start) & (centres < end) & (cells == 0)] = index.get(label, 0)
        labels.append(cells)
    return labels


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """p^(1/T), renormalised over the last axis."""
    logp = np.log(np.clip(probs, EPS, 1.0)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=-1, keepdims=True)


def fit_temperatures(videos: list[AlignedVideo], labels: list[np.ndarray], members=None) -> np.ndarray:
    """Per member (of ``members``, default all), the grid temperature with the lowest mean NLL of the cells'
    true classes. Reads one video's probabilities of those members at a time, in float32 (no copy of the
    stored array)."""
    members = np.arange(videos[0].probs.shape[0]) if members is None else np.asarray(members, dtype=np.int64)
    inverse = (1 / TEMPERATURES).astype(np.float32)[:, None, None, None]
    nll = np.zeros((len(TEMPERATURES), len(members)))
    for v, lab in zip(videos, labels, strict=True):
        logp = np.log(np.clip(v.probs[members].astype(np.float32), EPS, 1.0))  # (members, cells, K + 1)
        true = np.take_along_axis(logp, lab[None, :, None], axis=2)[..., 0]  # (members, cells)
        scaled = logp[None] * inverse  # (temperatures, members, cells, K + 1)
        top = scaled.max(axis=3)
        normaliser = top + np.log(np.exp(scaled - top[..., None]).sum(axis=3))
        nll -= (true[None] * inverse[..., 0] - normaliser).sum(axis=2, dtype=np.float64)
    return TEMPERATURES[np.argmin(nll, axis=0)]


def apply_temperatures(videos: list[AlignedVideo], temperatures: np.ndarray) -> list[AlignedVideo]:
    return [AlignedVideo(v.video_id, v.starts, v.ends,
                         np.stack([tempered(p, t) for p, t in zip(v.probs, temperatures, strict=True)])
                         .astype(np.float32), v.scene_probs) for v in videos]
