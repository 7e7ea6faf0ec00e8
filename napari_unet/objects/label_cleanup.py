"""Clean-up of a labels image, whoever made it (the pipeline, a person's corrections, a
file): one object per connected place of an id, holes filled, objects outside the area
limits or on the border dropped, ids renumbered 1..N. Pure numpy + scipy."""

from __future__ import annotations

import numpy as np

__all__ = ["filter_objects", "pixel_counts"]


def pixel_counts(labels: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Pixels per id (``np.bincount`` of a non-negative labels image), a chunk at a time:
    the same counts without the image-sized int64 copy ``bincount`` makes of an int32
    image (134 MB for 4096^2, whose first touch alone took 0.15 s).

    >>> pixel_counts(np.array([[0, 2], [2, 2]], np.int32)).tolist()
    [1, 0, 3]
    """
    flat = labels.ravel()
    if flat.dtype == np.intp or flat.size <= chunk:
        return np.bincount(flat)
    counts = np.zeros(int(flat.max()) + 1, np.int64)
    for i in range(0, flat.size, chunk):
        counts += np.bincount(flat[i : i + chunk], minlength=len(counts))
    return counts


def _check_area(min_area: float, max_area: float | None) -> None:
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0, got {min_area}")
    if max_area is not None and max_area < min_area:
        raise ValueError(f"min_area ({min_area}) is larger than max_area ({max_area}); no object could be kept")


#: the relative size filter needs this many objects in a plane for their median to mean anything
RELATIVE_MIN_OBJECTS = 5


def filter_objects(
    labels: np.ndarray,
    *,
    min_area: float = 0,
    max_area: float | None = None,
    exclude_border: bool = False,
    fill_holes: bool = True,
    min_relative_area: float = 0.0,
) -> np.ndarray:
    """Part an id painted in separate places into one object per place, fill holes, drop
    objects outside ``[min_area, max_area]`` (pixels) or touching the border, and renumber
    1..N. Works on one 2D label image.

    ``min_relative_area`` (0 = off) also drops objects smaller than that share of the
    median object of the image, where it has at least :data:`RELATIVE_MIN_OBJECTS`; an
    object cut by the image border is kept whatever its size. A fixed pixel limit cannot
    tell a fragment or a speck from a nucleus at every magnification; this one scales with
    the image's own nuclei.

    >>> lab = np.zeros((40, 60), np.int32)
    >>> for i in range(5): lab[5:15, 2 + 11 * i : 12 + 11 * i] = i + 1  # five 10x10 objects
    >>> lab[25:28, 20:23] = 6; lab[37:40, 0:3] = 7  # a 3x3 speck inside, another on the border
    >>> int(filter_objects(lab, min_relative_area=0.2).max())
    6
    """
    from skimage.segmentation import clear_border

    _check_area(min_area, max_area)
    if not 0 <= min_relative_area < 1:
        raise ValueError(f"min_relative_area must be in [0, 1), got {min_relative_area}")
    labels = _compact(np.asarray(labels))
    if not labels.any():
        return _relabel_sequential(labels, np.zeros(1, np.int64))
    areas = pixel_counts(labels)
    parted = _split_disconnected(labels, areas)
    if parted is not labels:  # new ids: count again
        labels, areas = parted, pixel_counts(parted)
    if fill_holes:
        labels = _fill_holes_locally(labels, areas)
    if exclude_border:
        labels = clear_border(labels)
        areas = pixel_counts(labels) if labels.any() else np.zeros(1, np.int64)
    if min_area > 0 or max_area is not None:
        drop = areas < min_area
        if max_area is not None:
            drop |= areas > max_area
        drop[0] = False
        if drop.any():
            labels = np.where(drop[labels], 0, labels)
            areas = np.where(drop, 0, areas)
    if min_relative_area > 0:
        labels, areas = _drop_small_for_image(labels, areas, min_relative_area)
    return _relabel_sequential(labels, areas)


def _drop_small_for_image(labels: np.ndarray, areas: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Objects under ``share`` of the median object's area dropped (see :func:`filter_objects`)."""
    present = np.flatnonzero(areas)
    present = present[present > 0]
    if len(present) < RELATIVE_MIN_OBJECTS:
        return labels, areas
    drop = np.zeros(len(areas), bool)
    drop[present] = areas[present] < share * float(np.median(areas[present]))
    edges = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    drop[np.unique(edges)] = False  # cut by the border: its size says nothing
    drop[0] = False
    if not drop.any():
        return labels, areas
    return np.where(drop[labels], 0, labels), np.where(drop, 0, areas)


#: an id whose pixels fill less than this share of its bounding box is checked for separate pieces
SPARSE_BOX = 0.5


def _split_disconnected(labels: np.ndarray, areas: np.ndarray | None = None) -> np.ndarray:
    """One object per connected piece (8-connected) of each id: an id painted twice by hand
    in two places, or a pasted correction that reuses an id, is two objects, not one.

    Only ids whose pixels fill less than :data:`SPARSE_BOX` of their bounding box are
    checked (a nucleus fills about three quarters of its box; two pieces far apart fill
    little), so that labels without such ids cost a bincount and ``find_objects``; when
    many ids are sparse the whole image is labelled at once. The largest piece keeps the
    id; the others get new ids after the largest. Labels without such ids come back as
    they are (the same array). ``areas``: the labels' pixel counts, when already made.

    >>> lab = np.zeros((6, 9), np.int32); lab[1:3, 1:3] = 5; lab[3:5, 6:8] = 5
    >>> np.unique(_split_disconnected(lab)).tolist()
    [0, 5, 6]
    """
    from scipy import ndimage as ndi

    if not labels.any():
        return labels
    areas = pixel_counts(labels) if areas is None else areas
    boxes = ndi.find_objects(labels)
    sparse = []
    for i, box in enumerate(boxes, start=1):
        if box is not None and areas[i] < SPARSE_BOX * (box[0].stop - box[0].start) * (box[1].stop - box[1].start):
            sparse.append(i)
    if not sparse:
        return labels
    eight = np.ones((3, 3), bool)
    next_id = int(labels.max()) + 1
    out = labels.astype(np.int64 if next_id + len(sparse) * 64 > np.iinfo(np.int32).max else np.int32)  # (a copy)
    if len(sparse) > max(50, len(boxes) // 10):  # many: label the whole image once
        from skimage.measure import label

        pieces = label(labels, connectivity=2, background=0)
        for i in sparse:  # (only the sparse ids: the others are one piece by their box)
            ids, counts = np.unique(pieces[labels == i], return_counts=True)
            for piece in ids[np.argsort(-counts)][1:]:
                out[pieces == piece] = next_id
                next_id += 1
        return out
    for i in sparse:
        box = boxes[i - 1]
        parts, n = ndi.label(labels[box] == i, structure=eight)
        if n < 2:
            continue
        sizes = np.bincount(parts.ravel())[1:]
        region = out[box]
        for piece in np.argsort(-sizes)[1:] + 1:
            region[parts == piece] = next_id
            next_id += 1
    return out


def _fill_holes_locally(labels: np.ndarray, areas: np.ndarray | None = None) -> np.ndarray:
    """Each hole of a labels image (background not connected to the image edge, 4-connected
    as ``binary_fill_holes`` sees it) takes the id of the nearest labelled pixel, as a
    distance transform of the whole image gives it, computed within the hole's box plus
    one pixel: the pixels around a hole are labelled, so its nearest one lies there.
    ``areas`` (pixels per id), when given, is updated in place with the filled pixels.
    The holes are found by one labelling of the background; their boxes come from their
    own pixels (benchmarks/bench_count.py times the whole count)."""
    from scipy import ndimage as ndi

    background, n = ndi.label(labels == 0)
    if n == 0:
        return labels
    h, w = labels.shape
    is_hole = np.ones(n + 1, bool)
    is_hole[0] = False
    is_hole[np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])] = False
    if not is_hole.any():
        return labels
    # the holes' pixels and boxes from the few pixels they have (not a pass of find_objects)
    where = np.flatnonzero(is_hole[background])
    hole_ids = background.ravel()[where]
    order = np.argsort(hole_ids, kind="stable")
    where, hole_ids = where[order], hole_ids[order]
    starts = np.flatnonzero(np.r_[True, hole_ids[1:] != hole_ids[:-1]])
    rows, cols = np.divmod(where, w)
    out = labels.copy()
    for k, y0, y1, x0, x1 in zip(
        hole_ids[starts],
        np.minimum.reduceat(rows, starts),
        np.maximum.reduceat(rows, starts) + 1,
        np.minimum.reduceat(cols, starts),
        np.maximum.reduceat(cols, starts) + 1,
    ):
        y0, y1, x0, x1 = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
        crop = labels[y0:y1, x0:x1]
        hole = background[y0:y1, x0:x1] == k
        _, (iy, ix) = ndi.distance_transform_edt(crop == 0, return_indices=True)
        filled = crop[iy[hole], ix[hole]]
        out[y0:y1, x0:x1][hole] = filled
        if areas is not None:
            np.add.at(areas, filled, 1)
    return out


def _compact(labels: np.ndarray) -> np.ndarray:
    """Labels as a signed integer array whose largest id is no larger than needed to count
    areas with a bincount: ids far above the number of pixels (hashes, uint64) are ranked
    first, keeping their order."""
    if labels.dtype.kind == "b":
        return labels.astype(np.int32)
    if (labels.dtype.kind == "u" and labels.dtype.itemsize >= 8) or labels.dtype.kind not in "iu":
        labels = labels.astype(np.int64)
    if labels.size and int(labels.max()) > max(1 << 24, 4 * labels.size):
        ids, inverse = np.unique(labels.ravel(), return_inverse=True)
        return (inverse + (0 if ids[0] == 0 else 1)).reshape(labels.shape).astype(np.int32)
    return labels


def _relabel_sequential(labels: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """Ids 1..N in the order of the old ids (as skimage's ``relabel_sequential``), int32;
    no pass over the image when they already are."""
    labels = labels.astype(np.int32, copy=False)
    counts = pixel_counts(labels) if counts is None else counts
    present = counts > 0
    present[0] = False
    if present[1:].all():
        return labels
    lut = np.zeros(len(counts), np.int32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    return lut[labels]
