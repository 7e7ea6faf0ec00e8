"""Per-object geometry of a 2D label image, for all objects at once: no Python loop per object.

No torch, no napari. :func:`plane_properties` gives scikit-image ``regionprops``' centroid,
second moments, perimeter estimate and bounding box from a few passes over the plane (equal
within 1e-12), plus an exact convex-hull pixel count for solidity; :func:`outlines` traces
every object's outline through the midpoints of its pixel sides (where marching squares
puts the 0.5 level). :mod:`napari_unet.objects.count` builds its table and contours on them.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["outlines", "plane_properties"]

_SIDES = (
    ((-1, 0), (0, 0), (0, 1)),  # top: left to right
    ((0, 1), (0, 1), (1, 1)),  # right: down
    ((1, 0), (1, 1), (1, 0)),  # bottom: right to left
    ((0, -1), (1, 0), (0, 0)),  # left: up
)


def outlines(plane):
    """Longest outline of every object of one 2D label plane: ``{id: (N, 2) polygon}``.

    Every pixel side between an object and anything else is a directed edge (clockwise
    around the object); following each edge to the next one at its end corner traces
    each outline, for all objects at once. The polygon goes through the midpoints of
    those sides, which is where marching squares puts the 0.5 level of the object's
    mask; midpoints inside a straight run (along an axis or a diagonal) are dropped.
    Where two pixels of an object meet only at a corner, the outline goes on to the other
    pixel (one outline per 8-connected object).
    """
    h, w = plane.shape
    ids_in = None
    if int(plane.max()) > 2**31 - 1:  # keep owner * corners inside int64
        ids_in, plane = np.unique(plane, return_inverse=True)
        plane = plane.reshape(h, w)
    pad = np.pad(plane, 1)
    wc = w + 3  # corners per row of the padded grid
    starts, ends, owners, dirs = [], [], [], []
    flat = pad.ravel()
    fg = np.flatnonzero(flat)
    ids = flat[fg]
    for d, ((dy, dx), (sy, sx), (ey, ex)) in enumerate(_SIDES):
        sel = flat[fg + dy * (w + 2) + dx] != ids
        r, c = np.divmod(fg[sel], w + 2)  # padded coordinates
        starts.append((r + sy) * wc + c + sx)
        ends.append((r + ey) * wc + c + ex)
        owners.append(ids[sel].astype(np.int64))
        dirs.append(np.full(len(r), d, np.int8))
    start, end, owner, direction = (np.concatenate(a) for a in (starts, ends, owners, dirs))
    n = len(start)
    if n == 0:
        return {}
    nv = (h + 3) * wc
    skey = owner * nv + start
    order = np.argsort(skey, kind="stable")
    skey_sorted = skey[order]
    want = owner * nv + end
    pos = np.searchsorted(skey_sorted, want)
    first = order[pos]
    # a corner where two pixels of the object touch diagonally has two ways on:
    # take the left turn (on to the other pixel)
    two = (pos + 1 < n) & (skey_sorted[np.minimum(pos + 1, n - 1)] == want)
    second = order[np.minimum(pos + 1, n - 1)]
    vec = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)])  # heading of each side, (dy, dx)
    heading = vec[direction]
    turn1 = heading[:, 0] * vec[direction[first], 1] - heading[:, 1] * vec[direction[first], 0]
    nxt = np.where(two & (turn1 <= 0), second, first)
    # cycles: each edge learns its cycle's smallest edge index by pointer doubling
    rep = np.minimum(np.arange(n), nxt)
    jump = nxt.copy()
    for _ in range(int(np.ceil(np.log2(n))) + 1):
        rep = np.minimum(rep, rep[jump])
        jump = jump[jump]
        if (rep == rep[nxt]).all() and (rep[jump] == rep).all():
            break
    # position along the cycle: steps to the edge just before the representative
    tail = nxt == rep
    rank = np.where(tail, 0, 1)
    jump = np.where(tail, np.arange(n), nxt)
    while not tail[jump].all():
        rank = rank + rank[jump]
        jump = jump[jump]
    rank = rank + rank[jump]  # jump is a tail now (rank 0): no change, kept for clarity
    length = np.bincount(rep, minlength=n)
    # the longest outline of each object (ties: the first found)
    cyc = np.flatnonzero(rep == np.arange(n))
    best = {}
    for r in cyc[np.lexsort((-length[cyc], owner[cyc]))]:
        best.setdefault(int(owner[r]), r)
    chosen = np.zeros(n, bool)
    chosen[list(best.values())] = True
    sel = np.flatnonzero(chosen[rep])
    sel = sel[np.lexsort((-rank[sel], rep[sel]))]
    mid = (np.divmod(start[sel], wc) + np.array(np.divmod(end[sel], wc))) / 2.0 - 1.5
    pts = np.column_stack(mid)
    bounds = np.flatnonzero(np.r_[True, rep[sel][1:] != rep[sel][:-1], True])
    name = (lambda i: int(ids_in[i])) if ids_in is not None else int
    names = [name(owner[sel[a]]) for a in bounds[:-1]]
    pts, bounds = _drop_collinear(pts, bounds)
    return {i: pts[a:b] for i, (a, b) in zip(names, itertools.pairwise(bounds), strict=True)}


def _drop_collinear(pts, bounds):
    """Drop the vertices that lie inside a straight run (the staircase midpoints along a
    diagonal): the same polygons with about half the vertices, which napari triangulates
    and draws that much faster. ``bounds`` delimit the polygons in ``pts``."""
    idx = np.arange(len(pts))
    group = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    first, last = bounds[:-1][group], bounds[1:][group] - 1
    prev = np.where(idx == first, last, idx - 1)
    nxt = np.where(idx == last, first, idx + 1)
    d_in, d_out = pts - pts[prev], pts[nxt] - pts
    # coordinates are multiples of 0.5, so these products are exact
    straight = (d_in[:, 0] * d_out[:, 1] == d_in[:, 1] * d_out[:, 0]) & ((d_in * d_out).sum(1) > 0)
    keep = ~straight
    counts = np.bincount(group[keep], minlength=len(bounds) - 1)
    return pts[keep], np.r_[0, np.cumsum(counts)]


_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2


def plane_properties(lab, inten=None):
    """Vectorised region properties of one 2D label plane (ids >= 1), in pixels.

    The same definitions as scikit-image's ``regionprops`` (centroid, second moments,
    4-connected perimeter estimate, bbox), computed for all objects in a few passes over
    the plane instead of one Python loop per object. Solidity is area over the pixels
    whose centres lie inside the convex hull of the object's pixel centres (1.0 for any
    digitally convex object).
    """
    h, w = lab.shape
    flat = lab.ravel()
    nz = np.flatnonzero(flat)
    ids_px = flat[nz]
    scan_nz, scan_ids = nz, ids_px  # scan order: the neighbour look-ups below read memory in order
    order = _group_by_id(ids_px)  # pixels grouped by id, scan order inside
    nz, ids_px = nz[order], ids_px[order]
    counts = np.bincount(ids_px) if len(ids_px) and ids_px[-1] < 4 * max(len(ids_px), 1 << 16) else None
    if counts is None:  # ids far above the number of pixels
        ids, starts, area = np.unique(ids_px, return_index=True, return_counts=True)
    else:
        ids = np.flatnonzero(counts).astype(ids_px.dtype)
        area = counts[ids]
        starts = np.cumsum(area) - area
    k = np.repeat(np.arange(len(ids)), area)  # compact object index per pixel
    rows, cols = np.divmod(nz, w)
    r0, c0 = rows[starts], np.minimum.reduceat(cols, starts)
    r1, c1 = rows[starts + area - 1], np.maximum.reduceat(cols, starts)
    # second moments in coordinates local to each object (no cancellation far from the origin)
    lr, lc = (rows - r0[k]).astype(np.float64), (cols - c0[k]).astype(np.float64)
    mr, mc = np.bincount(k, lr) / area, np.bincount(k, lc) / area
    vrr = np.bincount(k, lr * lr) / area - mr**2
    vcc = np.bincount(k, lc * lc) / area - mc**2
    vrc = np.bincount(k, lr * lc) / area - mr * mc
    half = np.sqrt(((vrr - vcc) / 2) ** 2 + vrc**2)
    l1 = np.maximum((vrr + vcc) / 2 + half, 0)
    l2 = np.maximum((vrr + vcc) / 2 - half, 0)
    out = {
        "label": ids,
        "area": area.astype(np.float64),
        "centroid_row": r0 + mr,
        "centroid_col": c0 + mc,
        "major": 4 * np.sqrt(l1),
        "minor": 4 * np.sqrt(l2),
        "eccentricity": np.where(l1 > 0, np.sqrt(np.clip(1 - l2 / np.where(l1 > 0, l1, 1), 0, 1)), 0.0),
        "bbox": (r0, c0, r1 + 1, c1 + 1),
    }
    # border pixels: a 4-neighbour (or the outside) holds another id. Found in scan order
    # (sums over each object's border pixels do not depend on their order), where the
    # neighbours' look-ups walk the plane forward instead of jumping from object to object
    pad = np.pad(lab, 1)
    pw = w + 2
    pflat = pad.ravel()
    srows = scan_nz // w
    q = scan_nz + 2 * srows  # the pixel's top-left neighbour in the padded plane
    centre = pw + 1

    def at(a, off, idx):  # a[idx + centre + off], without the index array that sum makes
        return a[centre + off :][idx]

    interior = np.ones(len(q), bool)
    for off in (-pw, pw, -1, 1):
        interior &= at(pflat, off, q) == scan_ids
    border = ~interior
    bq, bid = q[border], scan_ids[border]
    if counts is None:  # id -> object index
        bk = np.searchsorted(ids, bid)
    else:
        compact = np.zeros(len(counts), np.intp)
        compact[ids] = np.arange(len(ids))
        bk = compact[bid]
    is_border = np.zeros(pad.size, bool)
    is_border[centre:][bq] = True
    code = np.ones(len(bq), np.int64)
    for off, weight in ((-pw, 2), (pw, 2), (-1, 2), (1, 2), (-pw - 1, 10), (-pw + 1, 10), (pw - 1, 10), (pw + 1, 10)):
        code += weight * ((at(pflat, off, bq) == bid) & at(is_border, off, bq))
    out["perimeter"] = np.bincount(bk, _PERIMETER_WEIGHTS[code], minlength=len(ids))
    brows = srows[border]
    out["solidity"] = area / _hull_pixels(bk, brows, scan_nz[border] - brows * w, h, len(ids))
    if inten is not None:
        vals = inten.ravel()[nz].astype(np.float64)
        out["mean"] = np.bincount(k, vals) / area
        out["max"] = np.maximum.reduceat(vals, starts)
        out["min"] = np.minimum.reduceat(vals, starts)
    return out


def _group_by_id(ids):
    """A stable order of ``ids`` (pixels grouped by id, scan order kept inside): a radix
    sort on 16 bits when the ids fit them, about twice as fast as a merge sort on 32."""
    if len(ids) and ids.min() >= 0 and ids.max() < 1 << 16:
        return np.argsort(ids.astype(np.uint16), kind="stable")
    return np.argsort(ids, kind="stable")


def _hull_pixels(k, rows, cols, h, n):
    """Pixels (lattice points) inside the convex hull of each object's points, exactly.

    Each object's hull is bounded by a convex left chain and a concave right chain over
    its rows; both are pruned from the per-row extremes all objects at once, then counted
    row by row with integer arithmetic.
    """
    key = k.astype(np.int64) * (h + 1) + rows
    order = np.lexsort((cols, key))
    key, cols = key[order], cols[order]
    first = np.r_[True, key[1:] != key[:-1]]
    last = np.r_[key[1:] != key[:-1], True]
    row_key = key[first]
    left, right = cols[first].astype(np.int64), cols[last].astype(np.int64)
    obj, row = np.divmod(row_key, h + 1)
    # every row of each object's span (rows without pixels still lie inside the hull)
    r_start = np.minimum.reduceat(row, np.r_[0, np.flatnonzero(obj[1:] != obj[:-1]) + 1])
    obj_ids = obj[np.r_[True, obj[1:] != obj[:-1]]]
    r_stop = np.maximum.reduceat(row, np.r_[0, np.flatnonzero(obj[1:] != obj[:-1]) + 1])
    span = r_stop - r_start + 1
    q_obj = np.repeat(obj_ids, span)
    q_row = np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span) + np.repeat(r_start, span)
    q_key = q_obj * (h + 1) + q_row
    lo = _envelope(obj, row, left, q_key, row_key, h, convex=True, ceil=True)
    hi = _envelope(obj, row, right, q_key, row_key, h, convex=False, ceil=False)
    return np.bincount(q_obj, hi - lo + 1, minlength=n)


def _envelope(obj, row, x, q_key, key, h, *, convex, ceil):
    keep = np.ones(len(x), bool)
    idx = np.arange(len(x))
    while True:
        i = idx[keep]
        o, r, v = obj[i], row[i], x[i]
        mid = np.zeros(len(i), bool)
        if len(i) > 2:
            inner = (o[:-2] == o[1:-1]) & (o[2:] == o[1:-1])
            # v[mid] against the chord of its neighbours, scaled by the row gap (exact integers)
            lhs = v[1:-1] * (r[2:] - r[:-2])
            rhs = v[:-2] * (r[2:] - r[1:-1]) + v[2:] * (r[1:-1] - r[:-2])
            bad = (lhs >= rhs) if convex else (lhs <= rhs)
            mid[1:-1] = inner & bad
        if not mid.any():
            break
        keep[i[mid]] = False
    i = idx[keep]
    vk, vr, vv = key[i], row[i], x[i]
    a = np.searchsorted(vk, q_key, side="right") - 1
    b = np.minimum(a + 1, len(i) - 1)
    same = (b != a) & (vk[b] // (h + 1) == vk[a] // (h + 1))
    b = np.where(same, b, a)
    q_row = q_key % (h + 1)
    den = np.where(b != a, vr[b] - vr[a], 1)
    num = vv[a] * den + (vv[b] - vv[a]) * (q_row - vr[a])
    return -((-num) // den) if ceil else num // den
