"""Objects from masks and probabilities: touching objects split, holes filled, sizes filtered.

No torch, no napari. With the model's distance channel, its peaks seed one object each; with
its boundary channel, foreground minus boundary does; a plain binary mask is split by the
distance transform, h-maxima seeds and a watershed, one connected component at a time.
Stacks go slice by slice with ids unique across the stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_unet.objects.label_cleanup import _check_area, _fill_holes_locally, filter_objects

__all__ = ["filter_objects", "labels_from_probabilities", "split_mask"]


def _planes(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, *a.shape[-2:])


def _fill_holes(plane: np.ndarray) -> np.ndarray:
    """Background regions that do not reach the image edge become foreground."""
    from scipy import ndimage as ndi

    bg, n = ndi.label(~plane)
    if n == 0:
        return plane
    edge = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
    hole = np.ones(n + 1, bool)
    hole[edge] = False
    hole[0] = False
    return plane | hole[bg]


def _pack(sizes: list[tuple[int, int]], gap: int, side: int = 512) -> list[tuple[list, tuple[int, int]]]:
    """Shelf-pack boxes ``(height, width)`` into canvases of about ``side`` x ``side``.

    Returns ``[(placements, canvas_shape)]`` with ``placements = [(box_index, (y, x))]``.
    Small canvases keep the distance transform and watershed in cache: per pixel, scipy's
    transform ran ~3x faster on 512^2 than on 2048^2 here.
    """
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][0])
    width = max(side, max(w for _, w in sizes) + 2 * gap)
    canvases: list[tuple[list, tuple[int, int]]] = []
    placed: list = []
    y = x = shelf = 0
    for i in order:
        h, w = sizes[i]
        if x + w + gap > width:  # next shelf; a new canvas when this one is full
            y, x, shelf = y + shelf, 0, 0
            if y + h + gap > side and placed:
                canvases.append((placed, (y + gap, width)))
                placed, y = [], 0
        placed.append((i, (y + gap, x + gap)))
        x += w + gap
        shelf = max(shelf, h + gap)
    canvases.append((placed, (y + shelf + gap, width)))
    return canvases


def _split_plane(plane: np.ndarray, h: float, smooth: float) -> np.ndarray:
    """Watershed split of one 2D binary plane, each connected component on its own.

    The components' boxes are copied into a few packed canvases (with background between
    them), so the distance transform, smoothing, peak search and watershed run once per
    canvas instead of once per component in Python. The h-maxima seeds come from the
    peaks' dynamics (how far each peak sinks before it meets a higher one, found by
    merging the peaks' basins in order of their saddles) rather than from a greyscale
    reconstruction per component. On a 4096^2 mask with 4,412 nuclei both together took
    the split from 4.6 s to about 1.5 s, with the same objects (F1 0.999 between them).
    Working per component also keeps one object's smoothed distance map from reaching its
    neighbours across a narrow gap.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    comps, n = ndi.label(_fill_holes(plane))
    if n == 0:
        return comps.astype(np.int32)
    pad = 2  # background around each box; with the gap, 5 px between any two boxes' objects
    boxes = ndi.find_objects(comps)
    sizes = [(b[0].stop - b[0].start + 2 * pad, b[1].stop - b[1].start + 2 * pad) for b in boxes]
    lut = np.zeros(n + 1, np.int32)  # component -> object id, for components not split
    parts = []  # (component, canvas window, object id per basin) for split ones
    next_id = 1
    for placed, shape in _pack(sizes, gap=1):
        owner = np.zeros(shape, np.int32)
        for i, (y, x) in placed:
            b, k = boxes[i], i + 1
            sub = comps[b] == k
            owner[y + pad : y + pad + sub.shape[0], x + pad : x + pad + sub.shape[1]][sub] = k
        obj = owner > 0
        dist = ndi.distance_transform_edt(obj)
        if smooth:  # the kernel (radius 4 sigma) never reaches the next box's object
            dist = ndi.gaussian_filter(dist, smooth) * obj
        # a component can only split where it has two peak regions: the highest one always
        # seeds, any other must rise h above a saddle, so above h itself
        peaks = (ndi.maximum_filter(dist, size=3) == dist) & obj
        high, n_high = ndi.label(peaks & (dist > h), structure=np.ones((3, 3)))
        pairs = np.unique(owner[high > 0].astype(np.int64) * (n_high + 1) + high[high > 0])
        multi = np.bincount(pairs // (n_high + 1), minlength=n + 1) > 1
        for i, _ in placed:
            if not multi[i + 1]:
                lut[i + 1] = next_id
                next_id += 1
        if not multi.any():
            continue
        area = multi[owner]
        markers, n_markers = ndi.label(peaks & area, structure=np.ones((3, 3)))
        basins = watershed(-dist, markers, mask=area)
        objects = _merge_basins(basins, dist, markers, n_markers, h)
        for i, (y, x) in placed:
            if multi[i + 1]:
                b = boxes[i]
                window = basins[y + pad : y + pad + b[0].stop - b[0].start, x + pad : x + pad + b[1].stop - b[1].start]
                parts.append((i, window, objects))
    out = lut[comps]
    for i, window, objects in parts:
        ids = np.unique(objects[window[window > 0]])
        renumber = np.zeros(int(objects.max()) + 1, np.int32)
        renumber[ids] = np.arange(next_id, next_id + len(ids))
        next_id += len(ids)
        sel = window > 0
        out[boxes[i]][sel] = renumber[objects[window[sel]]]
    return out


def _merge_basins(basins: np.ndarray, dist: np.ndarray, markers: np.ndarray, n: int, h: float) -> np.ndarray:
    """Object id (from 1) for every basin id of a watershed from all distance peaks.

    A peak seeds its own object when its dynamic is at least ``h``: it must sink ``h``
    below its height before it meets a higher peak (the h-maxima of the distance map, the
    seeds the classic watershed split uses). Basins of the other peaks go to the seeded
    object they meet first while flooding from the top, as a watershed seeded only at the
    h-maxima would give them.
    """
    top = np.full(n + 1, -np.inf)
    np.maximum.at(top, markers[markers > 0], dist[markers > 0])
    # saddle between two touching basins: the highest level at which they connect
    edges = []
    # (8-connected, as h_maxima's reconstruction is)
    for a, b, da, db in (
        (basins[:, :-1], basins[:, 1:], dist[:, :-1], dist[:, 1:]),
        (basins[:-1], basins[1:], dist[:-1], dist[1:]),
        (basins[:-1, :-1], basins[1:, 1:], dist[:-1, :-1], dist[1:, 1:]),
        (basins[:-1, 1:], basins[1:, :-1], dist[:-1, 1:], dist[1:, :-1]),
    ):
        sel = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[sel], b[sel]).astype(np.int64), np.maximum(a[sel], b[sel]).astype(np.int64)
        edges.append((lo * (n + 1) + hi, np.minimum(da[sel], db[sel])))
    key = np.concatenate([e[0] for e in edges])
    level = np.concatenate([e[1] for e in edges])
    if len(key):
        order = np.lexsort((-level, key))
        key, level = key[order], level[order]
        first = np.r_[True, key[1:] != key[:-1]]
        key, level = key[first], level[first]  # highest saddle per pair
        order = np.argsort(-level, kind="stable")
        key, level = key[order], level[order]
    us, vs, levels = (key // (n + 1)).tolist(), (key % (n + 1)).tolist(), level.tolist()
    heights = top.tolist()

    def find(parent: list[int], i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # 1) dynamics: merge in order of falling saddles; the peaks of the lower set are seeded
    #    when they have sunk at least h by then. Equal peaks do not sink each other (as in
    #    scikit-image's h_maxima, where all global maxima are kept).
    parent = list(range(n + 1))
    tops: list[list[int]] = [[i] for i in range(n + 1)]  # the highest peaks of each set
    seeded = [False] * (n + 1)
    for u, v, s in zip(us, vs, levels):
        ru, rv = find(parent, u), find(parent, v)
        if ru == rv:
            continue
        hu, hv = heights[tops[ru][0]], heights[tops[rv][0]]
        if hu < hv:
            ru, rv, hu, hv = rv, ru, hv, hu
        if hu == hv:
            tops[ru] = tops[ru] + tops[rv]
        elif hv - s >= h:
            for t in tops[rv]:
                seeded[t] = True
        parent[rv] = ru
    for i in range(1, n + 1):
        if find(parent, i) == i:
            for t in tops[i]:
                seeded[t] = True  # each component's highest peaks
    # 2) flooding from the seeds only: an unseeded set joins the first seeded set it meets
    parent = list(range(n + 1))
    seed = [i if seeded[i] else 0 for i in range(n + 1)]
    for u, v in zip(us, vs):
        ru, rv = find(parent, u), find(parent, v)
        if ru == rv or (seed[ru] and seed[rv]):
            continue
        parent[rv] = ru
        seed[ru] = seed[ru] or seed[rv]
    ids = np.zeros(n + 1, np.int64)
    seeds = sorted({seed[find(parent, i)] for i in range(1, n + 1)})
    number = {s: j for j, s in enumerate(seeds, start=1)}
    for i in range(1, n + 1):
        ids[i] = number[seed[find(parent, i)]]
    return ids


def split_mask(
    mask: np.ndarray,
    *,
    h: float = 2.0,
    smooth: float = 1.0,
    min_area: float = 10,
    max_area: float | None = None,
    exclude_border: bool = False,
    refill: bool = False,
    min_relative_area: float = 0.0,
) -> np.ndarray:
    """Instance labels from a binary mask (2D, or a stack slice by slice): touching objects
    are split by a watershed on the distance transform, seeded at its h-maxima.

    Parameters
    ----------
    mask : array
        Anything > 0 (or > 0.5 for floats in [0, 1]) is foreground.
    h : float
        A distance peak must rise ``h`` pixels above the saddle to its neighbour to seed
        its own object; larger values split less. The default 2.0 was chosen on mnfinder's
        training split (benchmarks/bench_count.py).
    smooth : float
        Gaussian sigma applied to the distance map first (0 = none).
    min_relative_area : float
        Drop objects under this share of the plane's median object (see
        :func:`~napari_unet.objects.label_cleanup.filter_objects`; 0 = off).
    """
    mask = _as_mask(mask)
    _check_area(min_area, max_area)
    out = np.zeros(mask.shape, np.int32)
    offset = 0
    for z, plane in enumerate(_planes(mask)):
        if not plane.any():
            continue
        lab = _split_plane(plane, h, smooth)
        lab = filter_objects(lab, min_area=min_area, max_area=max_area, exclude_border=exclude_border, fill_holes=False,
                             min_relative_area=min_relative_area)  # fmt: skip
        if refill:  # holes left by dropped objects go to the object around them
            lab = _fill_holes_locally(lab)
        _planes(out)[z] = np.where(lab > 0, lab + offset, 0)
        offset += int(lab.max())
    return out


def _as_mask(mask: Any) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind == "f":
        if not np.isfinite(mask).all():
            raise ValueError("the mask holds NaN or infinite values; clean it first")
        if mask.min() < 0 or mask.max() > 1:
            if not np.all(mask == np.round(mask)):
                raise ValueError(
                    f"a float mask must hold probabilities in [0, 1] or whole numbers, found values from "
                    f"{mask.min():.3g} to {mask.max():.3g}"
                )
            return mask > 0
        return mask > 0.5
    if mask.dtype.kind in "iu":
        return mask > 0
    raise ValueError(f"cannot read a mask of pixel type {mask.dtype}")


def labels_from_probabilities(
    probabilities: np.ndarray,
    card: Any = None,
    *,
    threshold: float | None = None,
    boundary_threshold: float | None = None,
    min_area: float | None = None,
    max_area: float | None = None,
    exclude_border: bool = False,
    seed_threshold: float | None = None,
    min_relative_area: float | None = None,
) -> np.ndarray:
    """Instance labels from model output ``(K, *spatial)``.

    With a ``distance`` channel (each object's distance to its own edge over its largest: 1
    at its centre, 0 at its edge), the foreground pixels above ``seed_threshold`` there give
    one seed per object and a watershed on the distance grows them back to the foreground.
    With a ``boundary`` channel, the foreground minus the boundary gives the seeds. Without
    either, the thresholded foreground is split by :func:`split_mask`. Objects under
    ``min_area`` pixels, or under ``min_relative_area`` of the plane's median object, are
    dropped (None: the card's ``postprocess``).
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    prob = np.asarray(probabilities, np.float32)
    classes = tuple(card.classes) if card is not None else ("foreground",)
    if min_area is None:  # the model's own choice (made on validation data), else 10 px
        min_area = float((card.postprocess if card is not None else {}).get("min_area", 10))
    if min_relative_area is None:
        min_relative_area = float((card.postprocess if card is not None else {}).get("min_relative_area", 0.0))
    if card is not None and card.activation == "softmax":
        raise ValueError("instance counting needs a foreground model; for class maps, count each class mask separately")
    thr = float(threshold if threshold is not None else card.threshold if card is not None else 0.5)
    fg = prob[0] > thr
    post = card.postprocess if card is not None else {}
    if "distance" in classes:  # seeds where the distance to the edge is high; the watershed runs down it
        if seed_threshold is None:
            seed_threshold = float(post.get("seed_threshold", 0.5))
        dist = _planes(prob[classes.index("distance")])

        def seed_and_relief(z: int) -> tuple[np.ndarray, np.ndarray]:
            return dist[z] > seed_threshold, -dist[z]
    elif "boundary" in classes:  # seeds away from the boundary; the watershed climbs it
        if boundary_threshold is None:
            boundary_threshold = float(post.get("boundary_threshold", 0.5))
        bd, fg_prob = _planes(prob[classes.index("boundary")]), _planes(prob[0])

        def seed_and_relief(z: int) -> tuple[np.ndarray, np.ndarray]:
            return bd[z] < boundary_threshold, bd[z] - fg_prob[z]
    else:
        return split_mask(fg, min_area=min_area, max_area=max_area, exclude_border=exclude_border, refill=True,
                          min_relative_area=min_relative_area)  # fmt: skip
    _check_area(min_area, max_area)
    out = np.zeros(fg.shape, np.int32)
    offset = 0
    for z, f in enumerate(_planes(fg)):
        f = ndi.binary_fill_holes(f)
        if not f.any():
            continue
        seed, relief = seed_and_relief(z)
        seeds, _ = ndi.label(f & seed)
        # drop seed specks; objects left without a seed fall back to their own component
        if seeds.max():
            sizes = np.bincount(seeds.ravel())
            tiny = sizes < 4
            tiny[0] = False
            seeds = np.where(tiny[seeds], 0, seeds)
        comps, n = ndi.label(f)
        missing = np.setdiff1d(np.arange(1, n + 1), np.unique(comps[seeds > 0]))
        if len(missing):
            seeds = np.where(np.isin(comps, missing), comps + seeds.max(), seeds)
        lab = watershed(relief, seeds, mask=f)
        lab = filter_objects(lab, min_area=min_area, max_area=max_area, exclude_border=exclude_border, fill_holes=False,
                             min_relative_area=min_relative_area)  # fmt: skip
        # a hole left where a small object was dropped inside another goes to the object around
        # it (nuclei have no holes), so that counting these labels again gives the same objects
        lab = _fill_holes_locally(lab)
        _planes(out)[z] = np.where(lab > 0, lab + offset, 0)
        offset += int(lab.max())
    return out
