"""Segmentation metrics: pixel overlap scores and object-level matching of instance labels.

No torch, no napari. Object matching follows the convention of the 2018 Data Science Bowl
and of StarDist/Cellpose papers: predicted and true objects are paired one-to-one by
maximum total IoU among pairs above an IoU threshold (Hungarian assignment); at a
threshold >= 0.5 such a pairing is unique anyway. ``AP`` at a threshold is
``TP / (TP + FP + FN)``.

>>> import numpy as np
>>> truth = np.array([[1, 1, 0, 2, 2]])
>>> pred = np.array([[1, 1, 0, 0, 3]])
>>> m = match_objects(pred, truth)
>>> m["tp"], m["fp"], m["fn"], m["f1"]
(1, 1, 1, 0.5)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["average_precision", "count_error", "iou_matrix", "match_objects", "object_scores", "pixel_scores"]


def pixel_scores(pred: Any, truth: Any) -> dict[str, float]:
    """Dice, IoU, precision, recall and accuracy of two binary masks (any shape).

    Two empty masks agree perfectly (Dice 1); an empty prediction of a non-empty truth
    scores 0.

    >>> pixel_scores(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))["dice"]
    0.6666666666666666
    """
    p = np.asarray(pred).astype(bool).ravel()
    t = np.asarray(truth).astype(bool).ravel()
    if p.shape != t.shape:
        raise ValueError(f"prediction has {p.size} pixels but the truth has {t.size}; they must be the same shape")
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = int(p.size - tp - fp - fn)
    both_empty = tp + fp + fn == 0
    return {
        "dice": 1.0 if both_empty else 2 * tp / (2 * tp + fp + fn),
        "iou": 1.0 if both_empty else tp / (tp + fp + fn),
        "precision": 1.0 if tp + fp == 0 else tp / (tp + fp),
        "recall": 1.0 if tp + fn == 0 else tp / (tp + fn),
        "accuracy": (tp + tn) / max(1, p.size),
    }


def iou_matrix(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every (true, predicted) object pair, ``(n_true, n_pred)``, and the two id lists.

    Label ids need not be consecutive; 0 is background.
    """
    p = np.asarray(pred).ravel()
    t = np.asarray(truth).ravel()
    if p.shape != t.shape:
        raise ValueError(f"prediction has {p.size} pixels but the truth has {t.size}; they must be the same shape")
    t_ids, t_inv = np.unique(t, return_inverse=True)
    p_ids, p_inv = np.unique(p, return_inverse=True)
    overlap = np.zeros((len(t_ids), len(p_ids)), np.int64)
    np.add.at(overlap, (t_inv.ravel(), p_inv.ravel()), 1)
    t_area = overlap.sum(1, keepdims=True)
    p_area = overlap.sum(0, keepdims=True)
    union = t_area + p_area - overlap
    iou = np.where(union > 0, overlap / np.maximum(union, 1), 0.0)
    keep_t, keep_p = t_ids != 0, p_ids != 0
    return iou[np.ix_(keep_t, keep_p)], t_ids[keep_t], p_ids[keep_p]


def match_objects(pred: Any, truth: Any, *, threshold: float = 0.5, iou: np.ndarray | None = None) -> dict[str, Any]:
    """One-to-one matching of instance labels at an IoU threshold.

    Returns ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``, ``ap``
    (``tp / (tp + fp + fn)``), ``mean_matched_iou`` and the counts ``n_pred``, ``n_true``.
    """
    from scipy.optimize import linear_sum_assignment

    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if iou is None:
        iou, _, _ = iou_matrix(pred, truth)
    n_true, n_pred = iou.shape
    tp, matched_iou = 0, 0.0
    if n_true and n_pred:
        candidate = iou > threshold if threshold <= 0.5 else iou >= threshold
        if candidate.any():
            cost = np.where(candidate, -iou, 0.0)
            rows, cols = linear_sum_assignment(cost)
            good = candidate[rows, cols]
            tp = int(good.sum())
            matched_iou = float(iou[rows[good], cols[good]].sum())
    fp, fn = n_pred - tp, n_true - tp
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_pred": n_pred,
        "n_true": n_true,
        "precision": 1.0 if n_pred == 0 else tp / n_pred,
        "recall": 1.0 if n_true == 0 else tp / n_true,
        "f1": 1.0 if n_pred + n_true == 0 else 2 * tp / (n_pred + n_true),
        "ap": 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn),
        "mean_matched_iou": matched_iou / tp if tp else 0.0,
    }


def average_precision(pred: Any, truth: Any, thresholds: Any = None) -> dict[str, Any]:
    """AP at each IoU threshold (default 0.5:0.95 by 0.05) and their mean (``mAP``)."""
    thresholds = np.round(np.arange(0.5, 1.0, 0.05), 2) if thresholds is None else np.asarray(thresholds, float)
    iou, _, _ = iou_matrix(pred, truth)
    aps = {float(t): match_objects(None, None, threshold=float(t), iou=iou)["ap"] for t in thresholds}
    return {"ap": aps, "mAP": float(np.mean(list(aps.values())))}


def count_error(pred: Any, truth: Any) -> dict[str, float]:
    """Predicted vs true object count, the difference, and the relative error (|diff| / true)."""
    n_pred = len(np.unique(np.asarray(pred))) - int((np.asarray(pred) == 0).any())
    n_true = len(np.unique(np.asarray(truth))) - int((np.asarray(truth) == 0).any())
    return {
        "n_pred": n_pred,
        "n_true": n_true,
        "diff": n_pred - n_true,
        "rel_error": abs(n_pred - n_true) / n_true if n_true else float(n_pred > 0),
    }


def object_scores(pred: Any, truth: Any) -> dict[str, float]:
    """Everything the accuracy benchmark reports for one image, pixel and object level."""
    pixel = pixel_scores(np.asarray(pred) > 0, np.asarray(truth) > 0)
    iou, _, _ = iou_matrix(pred, truth)
    m50 = match_objects(None, None, threshold=0.5, iou=iou)
    ap = {t: match_objects(None, None, threshold=t, iou=iou)["ap"] for t in np.round(np.arange(0.5, 1.0, 0.05), 2)}
    counts = count_error(pred, truth)
    return {
        **pixel,
        "obj_precision": m50["precision"],
        "obj_recall": m50["recall"],
        "f1_50": m50["f1"],
        "tp_50": m50["tp"],
        "fp_50": m50["fp"],
        "fn_50": m50["fn"],
        "ap_50": m50["ap"],
        "mAP": float(np.mean(list(ap.values()))),
        "n_pred": counts["n_pred"],
        "n_true": counts["n_true"],
        "count_rel_error": counts["rel_error"],
    }


def class_scores(pred: Any, truth: Any, classes: Any = None) -> dict[str, dict[str, float]]:
    """Dice, IoU, precision and recall of each class of two class maps (0 = background),
    keyed by class id as text; ``classes`` lists the ids to score (default: every id > 0
    in either map). A class swapped for another scores as the error it is.

    >>> a = np.array([[1, 1, 2, 2]]); b = np.array([[2, 2, 1, 1]])
    >>> class_scores(a, a)["1"]["dice"], class_scores(a, b)["1"]["dice"]
    (1.0, 0.0)
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if classes is None:
        classes = sorted(set(np.unique(pred).tolist()) | set(np.unique(truth).tolist()) - {0})
    out = {}
    for k in classes:
        scores = pixel_scores(pred == k, truth == k)
        out[str(int(k))] = {name: scores[name] for name in ("dice", "iou", "precision", "recall")}
    return out


def pixel_accuracy(pred: Any, truth: Any) -> float:
    """Share of pixels whose class (or foreground/background, for instance labels) agrees."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    return float((pred == truth).mean()) if pred.size else 1.0
