"""Follow what a person drew through a stack: of the regions a model predicts on the slices
nobody checked, keep those that continue, slice to slice, a region drawn on a checked slice.

A lesion drawn on three slices of a CT continues on the slices between and beside them; a
first model trained on those few slices also marks vessels and bright tissue on slices unlike
them, which are not joined to the drawing. Pure numpy + scipy."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["keep_continuing"]


def keep_continuing(
    class_map: np.ndarray, drawn: np.ndarray, checked: Iterable[int]
) -> tuple[np.ndarray, dict[int, int]]:
    """The predicted ``class_map`` of a stack ``(Z, Y, X)`` (class ids, 0 = background) with
    its checked slices replaced by what was ``drawn`` there, and, on every other slice, only
    the regions of each class that are joined (face to face, across slices) to that class as
    drawn on a checked slice. A class drawn on no checked slice is kept as predicted: there
    is nothing to follow. Returns the new class map and, per class, how many regions were
    left out.

    >>> pred = np.zeros((4, 5, 5), np.uint8); pred[0:3, 1:3, 1:3] = 1; pred[3, 4, 4] = 1
    >>> drawn = np.zeros_like(pred); drawn[1, 1:3, 1:3] = 1
    >>> out, left_out = keep_continuing(pred, drawn, [1])
    >>> int(out[0].sum()), int(out[2].sum()), int(out[3].sum()), left_out
    (4, 4, 0, {1: 1})
    """
    from scipy import ndimage as ndi

    class_map, drawn = np.asarray(class_map), np.asarray(drawn)
    if class_map.ndim != 3:
        raise ValueError(
            f"following drawn regions needs a stack of slices (Z, Y, X); this prediction has shape {class_map.shape}"
        )
    if drawn.shape != class_map.shape:
        raise ValueError(f"the drawn labels have shape {drawn.shape} but the prediction {class_map.shape}")
    if drawn.dtype.kind not in "biu":
        raise ValueError(f"the drawn labels must be integer class ids (0 = background), got {drawn.dtype}")
    checked = sorted({int(z) for z in checked})
    if not checked:
        raise ValueError("no checked slices: mark the slices you drew (and those you checked empty)")
    outside = [z for z in checked if not 0 <= z < len(class_map)]
    if outside:
        raise ValueError(
            f"checked slice(s) {outside} outside the stack's {len(class_map)} slices (0-{len(class_map) - 1})"
        )
    out = class_map.copy()
    out[checked] = drawn[checked]
    on_checked = np.zeros(len(out), bool)
    on_checked[checked] = True
    face = ndi.generate_binary_structure(3, 1)
    left_out: dict[int, int] = {}
    for c in np.unique(out[out > 0]).tolist():
        seeds = drawn[checked] == c
        if not seeds.any():
            continue  # never drawn: nothing to follow
        regions, n = ndi.label(out == c, structure=face)
        joined = np.unique(regions[checked][seeds])
        keep = np.zeros(n + 1, bool)
        keep[joined] = True
        keep[0] = False
        dropped = (~keep[regions]) & (regions > 0) & ~on_checked[:, None, None]
        left_out[int(c)] = int(n - keep.sum())
        out[dropped] = 0
    return out, left_out
