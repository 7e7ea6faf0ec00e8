"""Fill the slices between checked slices of a stack's labels by shape-based interpolation.

Each label value drawn on two checked slices is interpolated through the slices between them
by its signed distance (positive inside, negative outside; Raya and Udupa's shape-based
interpolation), the two distance maps first moved to where the shape's centre lies on the slice
between: a blob that moves, grows, splits or merges between the two slices changes smoothly. A value drawn on only one of two neighbouring checked slices ends halfway to the
other, since the person checked that it is absent there. Where two values would claim one
pixel, the one deeper inside its shape has it. What is already labelled on a slice between
(a correction, another object) is never overwritten, and the checked slices are never
changed. numpy and scipy only.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["fill_between"]


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Positive inside ``mask`` (distance to the outside), negative outside (to the inside)."""
    from scipy import ndimage as ndi

    inside = ndi.distance_transform_edt(mask)
    outside = ndi.distance_transform_edt(~mask)
    return np.where(mask, inside - 0.5, 0.5 - outside).astype(np.float32)


#: how far (a share of the filled shape's depth, its largest distance to its own edge) a
#: model's probabilities may move an interpolated edge: all the way where it is sure
REFINE_REACH = 0.5


def fill_between(
    labels: np.ndarray,
    annotated: Sequence[int],
    *,
    align: bool = True,
    probability: Any = None,
) -> tuple[np.ndarray, list[int]]:
    """Labels ``(Z, Y, X)`` with the slices between consecutive ``annotated`` slices filled.

    Returns the new labels (a copy) and the slices that received pixels. Slices before the
    first and after the last annotated one are left as they are. ``align=False`` blends the
    distance maps where they are (plain shape-based interpolation, for comparison).

    ``probability``: a model's probability of each label value on the stack, ``(Z, Y, X)``
    for every value or ``{value: (Z, Y, X)}``. The interpolated edge then moves toward where
    the model puts it, by up to :data:`REFINE_REACH` of the shape's depth where the model is
    sure and not at all where it is unsure (0.5); the interpolation still decides whether a
    shape is on a slice at all, so the model cannot add a shape nobody drew.

    >>> stack = np.zeros((5, 9, 9), np.int32)
    >>> stack[0, 2:7, 2:7] = 1; stack[4, 3:6, 3:6] = 1
    >>> filled, changed = fill_between(stack, [0, 4])
    >>> changed, [int(filled[z].sum()) for z in range(5)]
    ([1, 2, 3], [25, 25, 9, 9, 9])
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(
            f"the labels are {labels.ndim}D (shape {labels.shape}); filling between slices needs a stack (Z, Y, X)"
        )
    if labels.dtype.kind not in "biu":
        raise ValueError(f"labels must be whole numbers (0 = background), got pixel type {labels.dtype}")
    maps = probability.values() if isinstance(probability, dict) else [] if probability is None else [probability]
    for source in maps:
        if tuple(np.shape(source)) != labels.shape:
            raise ValueError(
                f"the model's probabilities have shape {tuple(np.shape(source))} but the labels {labels.shape}; "
                "predict this image with the model first"
            )
    depth = labels.shape[0]
    slices = sorted({int(z) for z in annotated})
    outside = [z for z in slices if not 0 <= z < depth]
    if outside:
        raise ValueError(f"slice(s) {outside} are outside the stack, which has slices 0 to {depth - 1}")
    if len(slices) < 2:
        raise ValueError(
            f"only one checked slice ({slices[0] if slices else 'none'}): filling needs two checked slices to fill "
            "between; check another slice"
        )
    if not any(labels[z].any() for z in slices):
        raise ValueError(f"the checked slices {slices} hold no labels, so there is nothing to fill between them")
    out = labels.copy()
    changed: set[int] = set()
    for za, zb in itertools.pairwise(slices):
        if zb - za < 2:
            continue
        values = sorted((set(np.unique(labels[za]).tolist()) | set(np.unique(labels[zb]).tolist())) - {0})
        if not values:
            continue
        best = np.full((zb - za - 1, *labels.shape[1:]), 0.0, np.float32)  # the deepest claim so far
        claim = np.zeros(best.shape, labels.dtype)
        for v in values:
            a, b = labels[za] == v, labels[zb] == v
            shift = np.zeros(2)
            if a.any() and b.any():
                da, db = _signed_distance(a), _signed_distance(b)
                if align:  # a shape that moves is followed: both maps go to where its centre is between
                    shift = np.array(ndi.center_of_mass(b)) - np.array(ndi.center_of_mass(a))
            else:  # drawn on one side only: it ends halfway to the slice checked without it
                present = _signed_distance(a if a.any() else b)
                gone = np.full_like(present, -2.0 * float(present.max()) - 1.0)
                da, db = (present, gone) if a.any() else (gone, present)
            for k, z in enumerate(range(za + 1, zb)):
                t = (z - za) / (zb - za)
                if shift.any():
                    at_a, at_b = (ndi.shift(d, s * shift, order=1, mode="nearest") for d, s in ((da, t), (db, t - 1)))
                else:
                    at_a, at_b = da, db
                depth_in = (1 - t) * at_a + t * at_b
                p = _probability_of(probability, v, z)
                if p is not None and depth_in.max() > 0:
                    reach = max(1.0, REFINE_REACH * float(depth_in.max()))
                    depth_in = depth_in + reach * (2.0 * p - 1.0) * (depth_in > -reach)
                take = depth_in > best[k]
                best[k][take] = depth_in[take]
                claim[k][take] = v
        for k, z in enumerate(range(za + 1, zb)):
            free = (out[z] == 0) & (claim[k] != 0)  # never over what is labelled already
            if free.any():
                out[z][free] = claim[k][free]
                changed.add(z)
    return out, sorted(changed)


def _probability_of(probability: Any, value: int, z: int) -> np.ndarray | None:
    if probability is None:
        return None
    source = probability.get(value) if isinstance(probability, dict) else probability
    return None if source is None else np.asarray(source[z], np.float32)
