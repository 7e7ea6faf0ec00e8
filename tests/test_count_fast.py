"""The vectorised counting code against the plain per-object algorithms it replaced.

``split_mask``, ``measure`` and ``contours`` work on all objects of a slice at once; these
tests hold them to straightforward references (scikit-image's regionprops, find_contours,
h_maxima + watershed one component at a time, a brute-force convex hull) on random shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.objects.count import contours, measure
from napari_unet.objects.instances import split_mask
from napari_unet.objects.metrics import match_objects


def nuclei(shape, n, seed, margin=15):
    """n ellipses of radius 6-12 px, many touching, as one binary mask.

    Away from the image edge by default: where an object is cut by the edge, the packed
    split sees background beyond it and the per-component reference does not.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ys, xs = rng.uniform(margin, shape[0] - margin, n), rng.uniform(margin, shape[1] - margin, n)
    for y, x, r in zip(ys, xs, rng.uniform(6, 12, n)):
        mask |= (yy - y) ** 2 / r**2 + (xx - x) ** 2 / (0.8 * r) ** 2 <= 1
    return mask


def reference_split(mask, h=2.0):
    """The classic recipe, one component at a time: fill, distance, smooth, h-maxima, watershed."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    comps, _ = ndi.label(mask)
    out = np.zeros(mask.shape, np.int32)
    nxt = 1
    for k, box in enumerate(ndi.find_objects(comps), start=1):
        box = tuple(slice(max(0, s.start - 5), s.stop + 5) for s in box)
        obj = ndi.binary_fill_holes(comps[box] == k)
        d = ndi.gaussian_filter(ndi.distance_transform_edt(obj), 1.0) * obj
        markers, m = ndi.label(h_maxima(d, h) & obj)
        lab = watershed(-d, markers, mask=obj) if m > 1 else obj.astype(np.int32)
        out[box][lab > 0] = lab[lab > 0] + nxt - 1
        nxt += max(m, 1)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_matches_the_per_component_h_maxima_watershed(seed):
    mask = nuclei((256, 256), 160, seed)
    ours, ref = split_mask(mask, min_area=0), reference_split(mask)
    assert ours.max() == ref.max() > 50  # same number of objects, and many of them
    assert match_objects(ours, ref, threshold=0.9)["f1"] == 1.0


def test_split_keeps_a_shallow_neck_whole_and_parts_equal_twins():
    yy, xx = np.mgrid[:40, :70]
    twins = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 100) | ((yy - 20) ** 2 + (xx - 39) ** 2 <= 100)
    assert split_mask(twins).max() == 2  # equal peaks: both seed (as h_maxima keeps all global maxima)
    peanut = ((yy - 20) ** 2 + (xx - 30) ** 2 <= 100) | ((yy - 20) ** 2 + (xx - 36) ** 2 <= 81)
    assert split_mask(peanut).max() == 1  # the second bump is not h = 2 px deep


def test_measure_equals_regionprops():
    from skimage.measure import regionprops_table

    labels = ndi.label(nuclei((200, 180), 80, 7, margin=0))[0] * 3  # gaps in the ids
    labels[labels == 9] = 12  # one object in two pieces
    intensity = np.random.default_rng(5).random(labels.shape).astype(np.float32)
    ours = measure(labels, intensity)
    ref = regionprops_table(labels, intensity, properties=["label", "centroid", "area", "perimeter", "axis_major_length",
                            "axis_minor_length", "eccentricity", "bbox", "intensity_mean", "intensity_max", "intensity_min"])  # fmt: skip
    assert ours["id"].tolist() == ref["label"].tolist()
    for col, key in [("centroid_row", "centroid-0"), ("centroid_col", "centroid-1"), ("area", "area"),
                     ("perimeter", "perimeter"), ("major_axis", "axis_major_length"), ("minor_axis", "axis_minor_length"),
                     ("eccentricity", "eccentricity"), ("bbox_min_row_px", "bbox-0"), ("bbox_max_col_px", "bbox-3"),
                     ("mean_intensity", "intensity_mean"), ("max_intensity", "intensity_max"),
                     ("min_intensity", "intensity_min")]:  # fmt: skip
        np.testing.assert_allclose(ours[col].to_numpy(float), ref[key], rtol=1e-6, atol=1e-9, err_msg=col)


def hull_pixels(points):
    """Lattice points in the closed convex hull of the points, by brute force."""
    from scipy.spatial import ConvexHull, QhullError

    lo, hi = points.min(0), points.max(0)
    grid = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 2)
    try:
        hull = ConvexHull(points.astype(float))
    except QhullError:  # on one line: the lattice points of the segment between its ends
        a, b = points[np.lexsort(points.T[::-1])][[0, -1]]
        return int(np.gcd(*np.abs(b - a))) + 1
    return int(np.all(grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9, axis=1).sum())


def test_solidity_is_area_over_the_pixels_of_the_convex_hull():
    rng = np.random.default_rng(3)
    for _ in range(60):
        labels = (rng.random((14, 17)) < 0.35) * rng.integers(1, 4, (14, 17))
        t = measure(labels)
        for i, s in zip(t["id"], t["solidity"]):
            pts = np.argwhere(labels == i)
            assert s == pytest.approx(len(pts) / hull_pixels(pts), abs=1e-12)
    square_and_disc = np.zeros((40, 40), int)
    square_and_disc[2:10, 2:12] = 1
    yy, xx = np.mgrid[:40, :40]
    square_and_disc[(yy - 25) ** 2 + (xx - 25) ** 2 <= 81] = 2
    assert measure(square_and_disc)["solidity"].tolist() == [1.0, 1.0]


def test_contours_enclose_what_find_contours_encloses():
    from skimage.measure import find_contours

    def area(p):
        return 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))

    labels = ndi.label(nuclei((120, 140), 40, 11, margin=0))[0]
    polys = dict(contours(labels))
    assert sorted(polys) == list(range(1, labels.max() + 1))
    for i, poly in polys.items():
        ref = max(find_contours(np.pad(labels == i, 1).astype(float), 0.5), key=len) - 1
        assert area(poly) == pytest.approx(area(ref), abs=1e-9)
        assert np.isin(poly.round(3), ref.round(3)).all(axis=1).all()  # its points lie on the reference outline


def test_contour_goes_round_pixels_that_meet_at_a_corner():
    labels = np.zeros((6, 6), int)
    labels[1, 1] = labels[2, 2] = 4  # one 8-connected object
    ((i, poly),) = contours(labels)
    # one outline round both pixels, not two: through the midpoints of their 8 outer sides,
    # the 4 that lie inside the straight diagonal runs dropped
    assert i == 4
    assert sorted(map(tuple, poly)) == [(0.5, 1.0), (1.0, 0.5), (2.0, 2.5), (2.5, 2.0)]


def test_contours_drop_only_vertices_inside_straight_runs():
    labels = np.zeros((40, 40), int)
    rr, cc = np.mgrid[:40, :40]
    labels[(rr - 20) ** 2 + (cc - 20) ** 2 < 15**2] = 1
    labels[np.abs(rr - cc) < 4] = 2  # a diagonal band: long 45-degree staircases
    for i, poly in contours(labels):
        d_in, d_out = poly - np.roll(poly, 1, axis=0), np.roll(poly, -1, axis=0) - poly
        turn = d_in[:, 0] * d_out[:, 1] - d_in[:, 1] * d_out[:, 0]
        assert (turn != 0).all(), i  # every vertex left is a corner
