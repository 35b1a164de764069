"""Tests for spikesim.metrics on hand-made sequences with known answers."""
import numpy as np
import pytest

from spikesim import metrics


def test_confusion_matrix_counts_and_skips_negative_labels():
    y = np.array([0, 0, 1, 2, 2, -1])
    p = np.array([0, 1, 1, 2, 0, 2])
    cm = metrics.confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert cm.sum() == 5
    with pytest.raises(ValueError):
        metrics.confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError):
        metrics.confusion_matrix([0, 1], [0], 3)


def test_per_sequence_accuracy_start_and_mask():
    labels = np.array([[0, 0, 1, 1, 1, 1],
                       [2, 2, 2, 2, 2, 2]])
    pred = np.array([[1, 1, 1, 1, 0, 0],      # from step 2: 2 of 4 right
                     [2, 2, 2, 2, 2, 1]])     # from step 2: 3 of 4 right
    np.testing.assert_allclose(metrics.per_sequence_accuracy(pred, labels, start=2), [0.5, 0.75])
    np.testing.assert_allclose(metrics.per_sequence_accuracy(pred, labels, start=0), [2 / 6, 5 / 6])
    mask = np.ones_like(labels, bool)
    mask[0, 4:] = False
    np.testing.assert_allclose(metrics.per_sequence_accuracy(pred, labels, 2, mask), [1.0, 0.75])
    lab = labels.copy()
    lab[1, 2:] = -1                            # nothing left to count: NaN
    acc = metrics.per_sequence_accuracy(pred, lab, start=2)
    assert acc[0] == 0.5 and np.isnan(acc[1])
    assert metrics.pooled_accuracy(pred, labels, start=2) == pytest.approx(5 / 8)
    # a single 1-D sequence works too
    assert metrics.per_sequence_accuracy(pred[0], labels[0], start=2).tolist() == [0.5]
    with pytest.raises(ValueError):
        metrics.per_sequence_accuracy(pred[:, :3], labels)
    with pytest.raises(TypeError):
        metrics.per_sequence_accuracy(pred.astype(float), labels)


def test_boundaries_are_label_changes():
    seq = np.array([0, 0, 1, 1, 1, 2, 2, 0, 0])
    t, c = metrics.boundaries(seq)
    assert t.tolist() == [2, 5, 7] and c.tolist() == [1, 2, 0]
    t, c = metrics.boundaries(seq, start=3)        # only changes at t > 3
    assert t.tolist() == [5, 7]
    t, c = metrics.boundaries(np.array([1, -1, -1, 2]))   # a change into "unlabelled" is no onset
    assert t.tolist() == [3] and c.tolist() == [2]


def test_match_boundaries_one_to_one():
    assert metrics.match_boundaries([10], [8, 9, 11], 2) == 1          # one true, three close
    assert metrics.match_boundaries([10, 12], [11], 2) == 1            # one predicted, two true
    assert metrics.match_boundaries([10, 20], [13, 19], 2) == 1        # 13 is too far from 10
    assert metrics.match_boundaries([10, 20], [13, 19], 3) == 2
    assert metrics.match_boundaries([5, 7], [8, 4], 1) == 2            # needs the right pairing
    assert metrics.match_boundaries([], [1, 2], 5) == 0


def test_boundary_detection_per_class():
    #             0  1  2  3  4  5  6  7  8  9 10 11
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0])   # onsets: 1@3, 2@6, 0@9
    p = np.array([0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 1])   # onsets: 1@2, 2@8, 1@11
    r = metrics.boundary_detection(p, y, 3, tolerance=1)
    assert r["tp"].tolist() == [0, 1, 0]     # 1@2 matches 1@3; 2@8 is 2 steps from 2@6
    assert r["fp"].tolist() == [0, 1, 1]     # 1@11, 2@8
    assert r["fn"].tolist() == [1, 0, 1]     # 0@9, 2@6
    r = metrics.boundary_detection(p, y, 3, tolerance=2)
    assert r["tp"].tolist() == [0, 1, 1]
    assert r["fp"].tolist() == [0, 1, 0]
    assert r["fn"].tolist() == [1, 0, 0]
    assert r["precision"][1] == pytest.approx(0.5) and r["recall"][1] == pytest.approx(1.0)
    assert np.isnan(r["precision"][0]) and r["recall"][0] == 0.0
    # perfect prediction: every onset found, nothing spurious; counts add over sequences
    r = metrics.boundary_detection(np.stack([y, y]), np.stack([y, y]), 3, tolerance=0)
    assert r["tp"].tolist() == [2, 2, 2] and r["fp"].sum() == 0 and r["fn"].sum() == 0
    # start: onsets at t <= start are ignored
    r = metrics.boundary_detection(p, y, 3, tolerance=2, start=5)
    assert (r["tp"].tolist() == [0, 0, 1] and r["fn"].tolist() == [1, 0, 0]
            and r["fp"].tolist() == [0, 1, 0])
    with pytest.raises(ValueError):
        metrics.boundary_detection(p, y, 3, tolerance=-1)


def test_match_nearest_is_the_official_greedy_count():
    assert metrics.match_nearest([10], [8, 9, 11], 2) == 1
    assert metrics.match_nearest([10, 20], [13, 19], 3) == 2
    # greedy: true 5 takes the nearer 6, so true 7 finds only 3 (too far): 1 match, where
    # the optimal matching pairs 5-3 and 7-6
    assert metrics.match_nearest([5, 7], [3, 6], 2) == 1
    assert metrics.match_boundaries([5, 7], [3, 6], 2) == 2
    # the nearest candidate beyond the tolerance is a miss even if it is the only one
    assert metrics.match_nearest([5], [9], 3) == 0 and metrics.match_nearest([], [1], 3) == 0
    y = np.array([0, 0, 1, 1, 1, 1, 1, 0, 1, 1])
    p = np.array([0, 0, 0, 1, 1, 1, 0, 1, 1, 1])
    r = metrics.boundary_detection(p, y, 2, tolerance=1.5, method="nearest")
    assert r["tp"].tolist() == [1, 2] and r["fp"].tolist() == [0, 0] and r["fn"].tolist() == [0, 0]
    with pytest.raises(ValueError):
        metrics.boundary_detection(p, y, 2, method="bogus")
