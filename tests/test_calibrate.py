import numpy as np

from ensemble.align import AlignedVideo
from ensemble.calibrate import TEMPERATURES, apply_temperatures, cell_labels, fit_temperatures, tempered
from tal_core.scoring.metrics import Segments


def video(probs_by_member, labels):
    cells = len(labels)
    return AlignedVideo("v", np.arange(cells, dtype=float), np.arange(1, cells + 1, dtype=float),
                        np.asarray(probs_by_member, np.float32), np.zeros((len(probs_by_member), 0)))


def test_cell_labels_come_from_the_truth_at_cell_centres():
    v = AlignedVideo("v", np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0]),
                     np.zeros((1, 4, 3), np.float32), np.zeros((1, 0)))
    truth = Segments.from_rows([("v", "b", 0.8, 2.2, 1.0), ("w", "a", 0.0, 4.0, 1.0)])
    assert cell_labels([v], truth, ("a", "b"))[0].tolist() == [0, 2, 0, 0]  # centres 0.5 1.5 2.5 3.5


def test_an_overconfident_member_is_cooled_and_a_timid_one_sharpened():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=400)
    right = rng.random(400) < 0.7  # the argmax is right 70% of the time for both members
    argmax = np.where(right, labels, (labels + 1) % 3)
    overconfident = np.full((400, 3), 0.005)
    overconfident[np.arange(400), argmax] = 0.99
    timid = np.full((400, 3), 0.3)
    timid[np.arange(400), argmax] = 0.4
    temps = fit_temperatures([video([overconfident, timid], labels)], [labels])
    assert temps[0] > 1.5 and temps[1] < 0.5
    assert set(temps) <= set(TEMPERATURES)


def test_tempering_keeps_the_ranking_and_sums_to_one():
    p = np.array([[0.7, 0.2, 0.1]])
    for t in (0.5, 2.0):
        q = tempered(p, t)
        assert np.allclose(q.sum(axis=1), 1) and (np.argsort(q) == np.argsort(p)).all()
    assert tempered(p, 2.0)[0, 0] < 0.7 < tempered(p, 0.5)[0, 0]
    same = apply_temperatures([video([p], [0])], np.array([1.0]))[0].probs
    assert np.allclose(same, p, atol=1e-6)
