import numpy as np
import pytest
from scipy.optimize import check_grad

from ensemble.align import AlignedVideo
from ensemble.stacking import Stacker, features, fit_stacker, objective


def group_and_which(videos: int, seed: int) -> tuple[list[AlignedVideo], list[np.ndarray]]:
    """Member 0 tells that one of two classes happens but not which (half each); member 1 tells which (0.7 on
    the right one) but cannot tell either from the background (0.34 always): neither alone labels a cell right
    more than half the time where an action is; together they label every cell."""
    rng = np.random.default_rng(seed)
    aligned, labels = [], []
    for v in range(videos):
        truth = rng.choice(3, size=40, p=[0.5, 0.25, 0.25])
        probs = np.zeros((2, 40, 3))
        probs[0, truth == 0] = [0.9, 0.05, 0.05]
        probs[0, truth > 0] = [0.1, 0.45, 0.45]
        which = np.where(truth == 2, 2, 1) if v % 2 else np.where(truth == 1, 1, 2)
        probs[1, :, 0] = 0.34
        probs[1, np.arange(40), which] = 0.66 * 0.7
        probs[1, np.arange(40), 3 - which] = 0.66 * 0.3
        starts = np.arange(40.0)
        aligned.append(AlignedVideo(f"v{v}", starts, starts + 1, probs.astype(np.float16), np.zeros((2, 0))))
        labels.append(truth)
    return aligned, labels


def accuracy(probs: list[np.ndarray], labels: list[np.ndarray]) -> float:
    return float(np.mean(np.concatenate([p.argmax(axis=1) == y for p, y in zip(probs, labels, strict=True)])))


def test_the_gradient_is_the_objectives():
    rng = np.random.default_rng(0)
    x, prior = rng.normal(size=(30, 6)), rng.normal(size=(6, 3))
    onehot = np.eye(3)[rng.integers(0, 3, size=30)]
    theta = rng.normal(size=6 * 3 + 3)
    assert check_grad(lambda t: objective(t, x, onehot, prior, 0.1)[0],
                      lambda t: objective(t, x, onehot, prior, 0.1)[1], theta) < 1e-5


def test_the_stacker_labels_what_only_both_members_together_tell():
    train, train_labels = group_and_which(8, seed=0)
    held, held_labels = group_and_which(4, seed=1)
    stacker = fit_stacker(train, train_labels, np.array([0, 1]))
    for member in (0, 1):
        assert accuracy([v.probs[member].astype(np.float32) for v in held], held_labels) < 0.8
    stacked = [stacker.probabilities(v.probs) for v in held]
    assert accuracy(stacked, held_labels) == 1.0
    assert all(p.dtype == np.float32 and p.sum(axis=1) == pytest.approx(np.ones(len(p)), abs=1e-5) for p in stacked)
    assert stacker.member_shares(3).tolist()[2] == 0 and stacker.member_shares(3).sum() == pytest.approx(1.0)


def test_without_evidence_the_stacker_is_the_best_single_member():
    train, labels = group_and_which(4, seed=0)
    stacker = fit_stacker(train, labels, np.array([1, 0]), l2=1e6)  # member 1 is the prior here
    prior = np.zeros((6, 3))
    prior[:3] = np.eye(3)
    assert stacker.coefficients == pytest.approx(prior, abs=1e-4)  # member 1's log-probabilities, as they are
    assert stacker.intercept == pytest.approx(np.zeros(3), abs=1e-4)
    own = train[0].probs[1].astype(np.float32)
    assert stacker.probabilities(train[0].probs) == pytest.approx(own / own.sum(axis=1, keepdims=True), abs=1e-3)
    fitted = fit_stacker(train, labels, np.array([1, 0]))  # the default pull: member 0's evidence moves it
    assert np.abs(fitted.coefficients[3:]).sum() > 1.0


def test_a_class_the_fitting_videos_lack_keeps_the_best_single_members_column():
    train, labels = group_and_which(8, seed=0)
    labels = [np.where(y == 2, 0, y) for y in labels]  # class 2 never happens here
    stacker = fit_stacker(train, labels, np.array([0, 1]))
    assert stacker.unseen.tolist() == [False, False, True]
    assert stacker.coefficients[:, 2] == pytest.approx(np.eye(3)[2].tolist() + [0, 0, 0]) and stacker.intercept[2] == 0
    held, _ = group_and_which(2, seed=1)
    found = stacker.probabilities(held[0].probs)
    own = held[0].probs[0].astype(np.float32)
    assert found[:, 2] == pytest.approx(own[:, 2] / own.sum(axis=1), abs=1e-6)  # the best single's, detectable
    assert found.sum(axis=1) == pytest.approx(np.ones(len(found)), abs=1e-5)
    assert stacker.to_json(["p", "q"], ("background", "a", "b"))["unseen"] == ["b"]


def test_a_reindexed_stacker_reads_the_same_members_at_their_new_places():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(3, 5))
    stacker = Stacker(np.array([2, 0]), rng.normal(size=(6, 3)), rng.normal(size=3), np.array([False, True, False]))
    moved = stacker.reindexed(np.array([1, 0]))
    assert moved.probabilities(probs[[0, 2]]) == pytest.approx(stacker.probabilities(probs))
    assert features(probs, np.array([2, 0]))[:, :3] == pytest.approx(np.log(probs[2]), abs=1e-6)
