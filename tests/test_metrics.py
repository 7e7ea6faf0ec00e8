from __future__ import annotations

import numpy as np
import pytest

from napari_unet.objects.metrics import average_precision, count_error, match_objects, object_scores, pixel_scores


@pytest.fixture
def truth():
    t = np.zeros((10, 20), np.int32)
    t[1:5, 1:5] = 1  # 16 px
    t[1:5, 8:12] = 2
    t[6:9, 14:19] = 3  # 15 px
    return t


def test_perfect_match_with_other_ids(truth):
    pred = np.where(truth > 0, truth + 40, 0)  # ids need not agree, nor be consecutive
    m = match_objects(pred, truth)
    assert (m["tp"], m["fp"], m["fn"], m["f1"], m["ap"]) == (3, 0, 0, 1.0, 1.0)
    assert average_precision(pred, truth)["mAP"] == 1.0
    assert pixel_scores(pred > 0, truth > 0)["dice"] == 1.0


def test_one_missed_object(truth):
    pred = np.where(truth == 3, 0, truth)
    m = match_objects(pred, truth)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 0, 1)
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(0.8)
    assert m["ap"] == pytest.approx(2 / 3)
    assert count_error(pred, truth) == {"n_pred": 2, "n_true": 3, "diff": -1, "rel_error": pytest.approx(1 / 3)}


def test_one_object_split_in_two(truth):
    pred = truth.copy()
    pred[1:5, 1:3] = 7  # object 1 split into halves of 8 px: IoU 0.5 each, not > 0.5
    m = match_objects(pred, truth)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 2, 1)


def test_two_objects_merged(truth):
    pred = truth.copy()
    pred[1:5, 5:8] = 1
    pred[pred == 2] = 1  # 1 and 2 merged into one object of 44 px
    m = match_objects(pred, truth)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 2)  # only object 3 matches: IoU with either half is 16/44
    assert match_objects(pred, truth, threshold=0.3)["tp"] == 2  # 16/44 = 0.36 > 0.3: one half now matches


def test_empty_prediction_and_empty_truth(truth):
    empty = np.zeros_like(truth)
    m = match_objects(empty, truth)
    assert (m["tp"], m["fp"], m["fn"], m["f1"], m["precision"], m["recall"]) == (0, 0, 3, 0.0, 1.0, 0.0)
    m = match_objects(truth, empty)
    assert (m["tp"], m["fp"], m["fn"], m["f1"]) == (0, 3, 0, 0.0)
    both = match_objects(empty, empty)
    assert both["f1"] == 1.0 and pixel_scores(empty, empty)["dice"] == 1.0
    assert pixel_scores(empty, truth)["dice"] == 0.0


def test_pixel_scores_known_values():
    pred = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    true = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    s = pixel_scores(pred, true)
    assert s["dice"] == pytest.approx(2 * 2 / (3 + 3))
    assert s["iou"] == pytest.approx(2 / 4)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["accuracy"] == pytest.approx(6 / 8)


def test_ap_drops_at_strict_thresholds(truth):
    pred = truth.copy()
    pred[1, 1:5] = 0  # object 1 loses a row: IoU 12/16 = 0.75
    ap = average_precision(pred, truth)["ap"]
    assert ap[0.5] == 1.0 and ap[0.75] == 1.0 and ap[0.8] == pytest.approx(2 / 4)


def test_object_scores_keys(truth):
    s = object_scores(truth, truth)
    for key in (
        "dice",
        "iou",
        "precision",
        "recall",
        "accuracy",
        "f1_50",
        "ap_50",
        "mAP",
        "n_pred",
        "n_true",
        "count_rel_error",
    ):
        assert key in s
    assert s["f1_50"] == 1.0 and s["count_rel_error"] == 0.0


def test_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        pixel_scores(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="same shape"):
        match_objects(np.zeros((2, 2), int), np.zeros((2, 3), int))
