"""How a model in training is scored: on the held-out checked planes, through the one
pipeline every other caller segments with (:func:`napari_unet.segment`).

The :class:`~napari_unet.training.train.Trainer` calls these after each epoch (to choose its
checkpoint and, for a semantic model, the hard negatives of the next epoch's crops) and at
the end (the quality gate against the parent, and the figures written into the card).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["false_positives", "heldout_scores", "segment_planes", "smallest_region_area", "validation_settings"]


def validation_settings(card: Any, device: Any, precision: str) -> Any:
    """The settings validation segments with: the card's, on the training device (fp32 on the
    CPU, where bf16 would only blur a small score difference)."""
    from napari_unet.objects.settings import Settings

    precision = "fp32" if device.type != "cuda" else precision
    return Settings.for_model(card, device=str(device), precision=precision)


def segment_planes(model: Any, planes: Sequence[Any], settings: Any) -> list[Any]:
    """``model``'s :class:`~napari_unet.objects.pipeline.Segmentation` of each plane (already
    normalised, ``CYX``)."""
    from napari_unet.objects.pipeline import segment

    model.eval()
    model.__dict__.pop("_napari_unet_prepared", None)
    try:
        return [segment(model, plane.image, axes="CYX", settings=settings, normalise=False) for plane in planes]
    finally:  # the weights change at the next step: never reuse a prepared copy of these
        model.__dict__.pop("_napari_unet_prepared", None)


def false_positives(model: Any, planes: Sequence[Any], settings: Any) -> list[tuple[int, np.ndarray]]:
    """Per plane, the flat indices of the checked background pixels ``model`` gives a class:
    the hard negatives the next epoch's crops centre on."""
    return [
        (k, np.flatnonzero((result.mask > 0) & (plane.labels == 0) & plane.region))
        for k, (plane, result) in enumerate(zip(planes, segment_planes(model, planes, settings)))
    ]


def heldout_scores(model: Any, planes: Sequence[Any], settings: Any) -> dict:
    """Held-out figures of ``model`` on the annotated region of ``planes``: Dice and object
    F1@0.5 of the foreground, and for a semantic model Dice, IoU, precision and recall of each
    class (pooled over the planes), whose foreground-class mean is ``dice``."""
    from napari_unet.objects.metrics import match_objects, pixel_scores

    card = model.card
    dices, tp, fp, fn = [], 0, 0, 0
    semantic = card.activation == "softmax"
    counts = np.zeros((card.out_channels, 3), np.int64)  # per class: intersection, predicted, true
    for plane, result in zip(planes, segment_planes(model, planes, settings)):
        region = plane.region
        if semantic:
            p, t = result.mask[region], plane.labels[region]
            for k in range(1, card.out_channels):
                counts[k] += ((p == k) & (t == k)).sum(), (p == k).sum(), (t == k).sum()
            continue
        dices.append(pixel_scores(result.mask[region] > 0, plane.labels[region] > 0)["dice"])
        # objects count where most of their true pixels lie inside the region
        truth = np.where(region, plane.labels, 0)
        m = match_objects(np.where(region, result.labels, 0), truth, threshold=0.5)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
    if semantic:
        classes = {}
        for k in range(1, card.out_channels):
            inter, npred, ntrue = (int(v) for v in counts[k])
            classes[str(k)] = {
                "name": card.classes[k],
                "dice": 2 * inter / (npred + ntrue) if npred + ntrue else 1.0,
                "iou": inter / (npred + ntrue - inter) if npred + ntrue else 1.0,
                "precision": inter / npred if npred else float(ntrue == 0),
                "recall": inter / ntrue if ntrue else float(npred == 0),
            }
        # the mean is over the classes the held-out data holds: one it lacks scores 1.0 for
        # finding nothing, and a model that finds nothing at all would look perfect
        present = [c["dice"] for k, c in classes.items() if counts[int(k)][2] > 0]
        return {"dice": float(np.mean(present)) if present else float("nan"), "f1": float("nan"),
                "classes": classes}  # fmt: skip
    f1 = 2 * tp / max(1, 2 * tp + fp + fn) if (tp + fp + fn) else float("nan")
    return {"dice": float(np.mean(dices)), "f1": float(f1)}


def smallest_region_area(planes: Sequence[Any], card: Any, full_size: tuple[int, int] | None = None) -> float:
    """A new semantic model drops predicted regions under a quarter of the smallest annotated
    region (at least 10 pixels): what a person drew sets the scale of a speck. For a
    whole-image model (``card.input_size``) the areas drawn on resized planes are scaled back
    to ``full_size``, the plane size its class maps come out at."""
    from scipy import ndimage as ndi

    smallest = None
    for plane in planes:
        labels = np.where(plane.region, plane.labels, 0)
        for k in np.unique(labels[labels > 0]):
            sizes = np.bincount(ndi.label(labels == k)[0].ravel())[1:]
            if len(sizes):
                smallest = min(smallest or sizes.min(), sizes.min())
    if smallest is None:
        return 10.0
    if card.input_size:
        h, w = full_size or (card.input_size, card.input_size)
        smallest = smallest * h * w / card.input_size**2
    return float(max(10.0, round(0.25 * smallest)))
