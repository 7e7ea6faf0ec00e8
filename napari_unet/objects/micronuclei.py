"""Micronuclei: found by a model's ``micronuclei`` output, counted per nucleus.

A micronucleus is a small body of DNA outside the nucleus, the mark of a chromosome lost in
division; counting them per cell is what mnfinder's annotations were made for. A nuclei
model with a ``micronuclei`` output (beside ``foreground`` and ``boundary``) marks them as
neither nucleus nor background, so they are not counted as nuclei; here they become objects
of their own, and each is given to the nearest nucleus within reach (its cell's, as far as
an image of the DNA alone can tell).

No torch, no napari.

>>> import numpy as np
>>> nuclei = np.zeros((20, 40), np.int32)
>>> nuclei[5:15, 5:15], nuclei[5:15, 25:35] = 1, 2
>>> mn = np.zeros_like(nuclei)
>>> mn[9:11, 17:19], mn[1:3, 37:39] = 1, 2  # beside nucleus 1; near the corner of nucleus 2
>>> per_nucleus(nuclei, mn)
{1: 1, 2: 1}
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MICRONUCLEI", "add_to_table", "has_micronuclei", "micronuclei_labels", "nearest_nucleus", "per_nucleus"]

#: the name of the output that marks micronuclei
MICRONUCLEI = "micronuclei"


def has_micronuclei(card: Any) -> bool:
    """Whether a model marks micronuclei (a sigmoid model with a ``micronuclei`` output)."""
    return card is not None and card.activation != "softmax" and MICRONUCLEI in tuple(card.classes)


def micronuclei_labels(
    probabilities: Any,
    card: Any,
    nuclei: np.ndarray,
    *,
    threshold: float | None = None,
    min_area: float | None = None,
) -> np.ndarray:
    """Micronuclei as objects (int32 ids, unique across a stack, 0 = none) from a model's
    output ``(K, *spatial)``: the connected regions of the ``micronuclei`` output above
    ``threshold`` that lie outside every nucleus in ``nuclei`` and hold at least ``min_area``
    pixels (defaults: the card's ``micronucleus_threshold`` and ``micronucleus_min_area``,
    else 0.5 and 4)."""
    from scipy import ndimage as ndi

    if not has_micronuclei(card):
        raise ValueError(f"model {getattr(card, 'name', '?')!r} has no '{MICRONUCLEI}' output")
    post = card.postprocess or {}
    thr = float(threshold if threshold is not None else post.get("micronucleus_threshold", 0.5))
    area = float(min_area if min_area is not None else post.get("micronucleus_min_area", 4))
    nuclei = np.asarray(nuclei)
    channel = card.classes.index(MICRONUCLEI)
    out = np.zeros(nuclei.shape, np.int32)
    flat_out, flat_nuclei = out.reshape(-1, *out.shape[-2:]), nuclei.reshape(-1, *nuclei.shape[-2:])
    prob = np.asarray(probabilities[channel]).reshape(flat_out.shape)
    offset = 0
    for z in range(flat_out.shape[0]):
        lab, n = ndi.label((prob[z] > thr) & (flat_nuclei[z] == 0))
        if n == 0:
            continue
        keep = np.bincount(lab.ravel(), minlength=n + 1) >= area
        keep[0] = False
        ids = np.zeros(n + 1, np.int32)
        ids[keep] = np.arange(1, int(keep.sum()) + 1) + offset
        flat_out[z] = ids[lab]
        offset += int(keep.sum())
    return out


def nearest_nucleus(nuclei: np.ndarray, micronuclei: np.ndarray, max_distance: float | None = None) -> dict[int, int]:
    """``{micronucleus id: nucleus id}`` for a 2D plane: each micronucleus goes to the nucleus
    whose nearest pixel is closest to the micronucleus's centre, within ``max_distance``
    pixels (default: the median nucleus's equivalent diameter, about a cell's reach); one
    further than that from every nucleus gets 0 (counted in the image, given to no nucleus)."""
    from scipy import ndimage as ndi
    from scipy.spatial import cKDTree

    nuclei, micronuclei = np.asarray(nuclei), np.asarray(micronuclei)
    if nuclei.shape != micronuclei.shape or nuclei.ndim != 2:
        raise ValueError(f"nuclei {nuclei.shape} and micronuclei {micronuclei.shape} must be the same 2D shape")
    mn_ids = np.unique(micronuclei[micronuclei > 0])
    if not len(mn_ids):
        return {}
    if not nuclei.any():
        return {int(i): 0 for i in mn_ids}
    if max_distance is None:
        areas = np.bincount(nuclei.ravel())[1:]
        max_distance = float(np.sqrt(4 * np.median(areas[areas > 0]) / np.pi))
    # the nuclei's edge pixels are enough: the nearest pixel of an object seen from outside is on its edge
    edge = (nuclei > 0) & (ndi.grey_erosion(nuclei, size=3, mode="nearest") != nuclei)
    rows, cols = np.nonzero(edge)
    centres = np.array(ndi.center_of_mass(np.ones_like(micronuclei), micronuclei, mn_ids)).reshape(-1, 2)
    dist, idx = cKDTree(np.column_stack([rows, cols])).query(centres)
    owner = nuclei[rows[idx], cols[idx]]
    return {int(m): int(o) if d <= max_distance else 0 for m, o, d in zip(mn_ids, owner, dist)}


def per_nucleus(nuclei: np.ndarray, micronuclei: np.ndarray, max_distance: float | None = None) -> dict[int, int]:
    """``{nucleus id: micronuclei given to it}`` for every nucleus of a 2D plane or a stack
    (slice by slice), 0 for those with none."""
    nuclei, micronuclei = np.asarray(nuclei), np.asarray(micronuclei)
    if nuclei.shape != micronuclei.shape:
        raise ValueError(f"nuclei {nuclei.shape} and micronuclei {micronuclei.shape} must have the same shape")
    counts = {int(i): 0 for i in np.unique(nuclei[nuclei > 0])}
    for nu, mn in zip(nuclei.reshape(-1, *nuclei.shape[-2:]), micronuclei.reshape(-1, *nuclei.shape[-2:])):
        for owner in nearest_nucleus(nu, mn, max_distance).values():
            if owner:
                counts[owner] += 1
    return counts


def add_to_table(table: Any, nuclei: np.ndarray, micronuclei: np.ndarray, max_distance: float | None = None) -> Any:
    """The measurement table of ``nuclei`` with a ``micronuclei`` column (how many were given
    to each nucleus, before ``unit``). ``table.attrs`` keeps what the column cannot:
    ``micronuclei_per_slice``, every slice's total, those given to no nucleus included (for
    :func:`napari_unet.objects.count.count_per_slice`), and ``micronuclei_centres``, the centre of
    each in pixel coordinates ``(n, ndim)`` (for the dock's points)."""
    from scipy import ndimage as ndi

    micronuclei = np.asarray(micronuclei)
    counts = per_nucleus(nuclei, micronuclei, max_distance)
    column = [counts.get(int(i), 0) for i in table["id"]] if len(table) else []
    table.insert(list(table.columns).index("unit") if "unit" in table else len(table.columns), MICRONUCLEI, column)
    flat = micronuclei.reshape(-1, *micronuclei.shape[-2:])
    table.attrs["micronuclei_per_slice"] = [len(np.unique(p[p > 0])) for p in flat]
    ids = np.unique(micronuclei[micronuclei > 0])
    centres = ndi.center_of_mass(np.ones(micronuclei.shape, np.uint8), micronuclei, ids) if len(ids) else []
    table.attrs["micronuclei_centres"] = np.array(centres, float).reshape(len(ids), micronuclei.ndim)
    return table
