"""Stacking: one multinomial logistic regression over the members' log-probabilities, cell by cell.

Where members see different things (sight and sound), their errors differ class by class and even within a class:
one member tells that *something* of a group happens (a flash), another tells *which* (its rate). A weighted
sum of probabilities cannot combine those; a log-linear model of every member's whole probability vector can:
each output class's logit is a weighted sum of every member's log-probability of every class, plus a bias.

It is fitted on the cells of the videos it is given (their classes at the cell centres, ``calibrate.cell_labels``)
by L-BFGS on the mean cross-entropy plus ``l2`` times the squared distance of its coefficients from the best
single member as trained (its own log-probabilities, unchanged) and of its intercept from 0: with no evidence it
stays that member, so what it departs by is what the fitting videos pay for. A class absent from the fitting
videos keeps the best single's probability (the regression would learn it never happens). Inside cross-validation it is fitted on the training folds only.
It reads at most ``STACK_MEMBERS`` members (the best single first, then the others ``select.screen`` keeps), so
its size does not grow with the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import minimize

from .align import AlignedVideo

STACK_MEMBERS = 8  # members a stacker reads (select.screen: the best by mAP, then each class's best; as many as a weight search)
STACK_L2 = 1e-2  # weight of the squared distance from the best single member, beside the mean cross-entropy
STACK_ITERATIONS = 200  # L-BFGS iterations at most
LOG_FLOOR = 1e-4  # probabilities are clipped here before the log (float16 storage rounds small ones to 0)


@dataclass(frozen=True)
class Stacker:
    members: np.ndarray  # (n,) indices of the members it reads, the best single first
    coefficients: np.ndarray  # (n * (K + 1), K + 1): member m's log-probability of class j -> logit of class k
    intercept: np.ndarray  # (K + 1,)
    unseen: np.ndarray  # (K + 1,) bool: classes no fitting cell had; their probability is the best single's

    def probabilities(self, probs: np.ndarray) -> np.ndarray:
        """(cells, K + 1) float32 class probabilities from one video's stored (members, cells, K + 1): the
        regression's, except that an unseen class keeps the best single's probability and the seen classes share
        the rest in the regression's proportions."""
        logits = features(probs, self.members) @ self.coefficients.astype(np.float32) + self.intercept.astype(
            np.float32)
        found = softmax(logits)
        if self.unseen.any():
            best = probs[self.members[0]].astype(np.float32)
            best = best / best.sum(axis=1, keepdims=True)
            seen = found[:, ~self.unseen]
            found[:, ~self.unseen] = seen / seen.sum(axis=1, keepdims=True) * (1 - best[:, self.unseen].sum(axis=1,
                                                                                                          keepdims=True))
            found[:, self.unseen] = best[:, self.unseen]
        return found.astype(np.float32)

    def member_shares(self, members: int) -> np.ndarray:
        """(members,) each member's share of the coefficients' absolute sum (every stacked member above 0)."""
        blocks = np.abs(self.coefficients).reshape(len(self.members), -1).sum(axis=1)
        shares = np.zeros(members)
        shares[self.members] = np.maximum(blocks, 1e-12)
        return shares / shares.sum()

    def reindexed(self, members: np.ndarray) -> Stacker:
        """The same stacker reading ``members`` (its members' new indices, in its order)."""
        return replace(self, members=np.asarray(members, dtype=np.int64))

    def to_json(self, run_ids: list[str], columns: tuple[str, ...]) -> dict:
        return {"members": [run_ids[int(m)] for m in self.members], "columns": list(columns),
                "coefficients": np.round(self.coefficients, 6).tolist(),
                "intercept": np.round(self.intercept, 6).tolist(),
                "unseen": [column for column, unseen in zip(columns, self.unseen, strict=True) if unseen]}


def features(probs: np.ndarray, members: np.ndarray) -> np.ndarray:
    """(cells, n * (K + 1)) float32: the members' log-probabilities side by side, member by member."""
    chosen = np.log(np.clip(probs[members].astype(np.float32), LOG_FLOOR, 1.0))
    return chosen.transpose(1, 0, 2).reshape(chosen.shape[1], -1)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_stacker(videos: list[AlignedVideo], labels: list[np.ndarray], members: np.ndarray,
                l2: float = STACK_L2, iterations: int = STACK_ITERATIONS) -> Stacker:
    """The stacker over ``members`` (the first: the best single, its prior) fitted on these videos' cells, whose
    classes are ``labels`` (0 = background). A class no cell here has keeps the best single's probability
    (``Stacker.unseen``): there is no evidence to move it by; its coefficients stay the prior's."""
    members = np.asarray(members, dtype=np.int64)
    x = np.concatenate([features(v.probs, members) for v in videos]).astype(np.float64)
    y = np.concatenate(labels)
    classes = videos[0].probs.shape[2]
    prior = np.zeros((len(members) * classes, classes))
    prior[:classes] = np.eye(classes)
    seen = np.bincount(y, minlength=classes) > 0
    free = np.concatenate([np.broadcast_to(seen, prior.shape).ravel(), seen]).astype(np.float64)
    start = np.concatenate([prior.ravel(), np.zeros(classes)])
    found = minimize(objective, start, args=(x, np.eye(classes)[y], prior, l2, free), jac=True, method="L-BFGS-B",
                     options={"maxiter": iterations})
    return Stacker(members, found.x[:prior.size].reshape(prior.shape), found.x[prior.size:], ~seen)


def objective(theta: np.ndarray, x: np.ndarray, onehot: np.ndarray, prior: np.ndarray, l2: float,
              free: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of the cells' classes plus ``l2`` x the squared distance of the coefficients from
    ``prior`` and of the intercept from 0, and its gradient; ``theta``: the coefficients (flat, ``prior``'s
    shape) then the intercept. ``free`` (``theta``'s shape, 0 or 1): the gradient of a 0 entry is 0, so the
    optimizer leaves it where it starts."""
    coefficients, intercept = theta[:prior.size].reshape(prior.shape), theta[prior.size:]
    logits = x @ coefficients + intercept
    top = logits.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    away = coefficients - prior
    loss = float(np.mean(log_norm - (logits * onehot).sum(axis=1)) + l2 * (np.sum(away ** 2) + np.sum(intercept ** 2)))
    residual = (np.exp(logits - log_norm[:, None]) - onehot) / len(x)
    gradient = np.concatenate([(x.T @ residual + 2 * l2 * away).ravel(), residual.sum(axis=0) + 2 * l2 * intercept])
    return loss, gradient if free is None else gradient * free
