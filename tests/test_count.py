from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_unet.networks.model import ModelCard
from napari_unet.objects.count import COLUMNS, contours, count_iter, count_per_slice, measure
from napari_unet.objects.instances import labels_from_probabilities, split_mask
from napari_unet.objects.label_cleanup import _split_disconnected, filter_objects


def disc(shape, center, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= r**2


def test_two_touching_discs_are_split():
    mask = disc((40, 60), (20, 18), 10) | disc((40, 60), (20, 37), 10)
    from scipy import ndimage as ndi

    assert ndi.label(mask)[1] == 1  # they touch
    labels = split_mask(mask)
    assert labels.max() == 2
    table = measure(labels)
    assert table["area"].sum() == mask.sum()
    assert sorted(np.round(table["centroid_col"]).astype(int)) == [18, 37]


def test_ring_is_one_object_with_its_hole_filled():
    ring = disc((30, 30), (15, 15), 10) & ~disc((30, 30), (15, 15), 5)
    labels = split_mask(ring)
    assert labels.max() == 1
    assert labels[15, 15] == 1  # the hole is filled
    assert measure(labels)["area"][0] == disc((30, 30), (15, 15), 10).sum()


def test_small_objects_dropped_and_border_objects_excluded():
    labels = np.zeros((20, 20), np.int32)
    labels[5, 5] = 3  # one pixel
    labels[8:14, 8:14] = 5
    labels[0:4, 10:15] = 9  # touches the top border
    out = filter_objects(labels, min_area=2)
    assert out.max() == 2 and (out[5, 5] == 0)
    out = filter_objects(labels, min_area=2, exclude_border=True)
    assert out.max() == 1 and out[10, 10] == 1
    out = filter_objects(labels, min_area=2, max_area=30)
    assert out.max() == 1 and out[1, 12] == 1  # the 36 px square is above max_area


def test_measure_known_areas_and_physical_units():
    labels = np.zeros((10, 12), np.uint16)
    labels[2:6, 2:5] = 4  # 12 px, gaps in ids are fine
    labels[7:9, 6:11] = 10  # 10 px
    intensity = np.arange(120, dtype=np.float32).reshape(10, 12)
    t = measure(labels, intensity)
    assert list(t.columns) == COLUMNS
    assert list(t["id"]) == [4, 10] and list(t["area"]) == [12, 10]
    assert t["unit"][0] == "px"
    assert t["mean_intensity"][0] == pytest.approx(intensity[2:6, 2:5].mean())
    assert t["max_intensity"][1] == intensity[8, 10] and t["min_intensity"][1] == intensity[7, 6]
    assert (t["bbox_min_row_px"][0], t["bbox_min_col_px"][0], t["bbox_max_row_px"][0], t["bbox_max_col_px"][0]) == (
        2,
        2,
        6,
        5,
    )
    um = measure(labels, scale=(0.5, 0.5), unit="um")
    assert list(um["area"]) == [3.0, 2.5] and um["unit"][0] == "um"
    assert um["perimeter"][0] == pytest.approx(t["perimeter"][0] * 0.5)
    assert um["centroid_row"][0] == pytest.approx(t["centroid_row"][0] * 0.5)
    assert 0 < t["circularity"][0] <= 1


def test_measure_accepts_any_dtype():
    base = np.zeros((6, 6), np.int64)
    base[1:3, 1:3] = 1
    for dtype in (np.uint8, np.int16, np.uint32, np.int64, np.float32, bool):
        assert measure(base.astype(dtype))["area"].tolist() == [4]


def test_empty_mask_gives_an_empty_table_with_columns():
    t = measure(split_mask(np.zeros((16, 16), bool)))
    assert len(t) == 0 and list(t.columns) == COLUMNS
    per = count_per_slice(t, 3)
    assert per["count"].tolist() == [0, 0, 0]
    assert contours(np.zeros((5, 5), np.int32)) == []


def test_all_foreground_mask_is_one_object():
    labels = split_mask(np.ones((20, 20), bool))
    assert labels.max() >= 1 and (labels > 0).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\] or whole numbers"):
        split_mask(np.array([[0.2, 1.7], [0, 0]]))
    with pytest.raises(ValueError, match=r"min_area .* larger than max_area"):
        split_mask(np.ones((8, 8), bool), min_area=50, max_area=10)
    with pytest.raises(ValueError, match="intensity image has shape"):
        measure(np.ones((4, 4), int), np.ones((4, 5)))
    with pytest.raises(ValueError, match="whole numbers"):
        measure(np.full((4, 4), 0.5))


def test_stack_slice_by_slice_with_unique_ids():
    stack = np.zeros((3, 30, 30), bool)
    stack[0] = disc((30, 30), (10, 10), 5)
    stack[2] = disc((30, 30), (10, 10), 5) | disc((30, 30), (22, 22), 5)
    labels = split_mask(stack)
    assert labels.max() == 3 and set(np.unique(labels[2])) == {0, 2, 3}
    t = measure(labels)
    assert t["slice"].tolist() == [0, 2, 2]
    assert count_per_slice(t, 3)["count"].tolist() == [1, 0, 2]
    polys = contours(labels)
    assert len(polys) == 3 and polys[2][1].shape[1] == 3 and (polys[2][1][:, 0] == 2).all()


def test_contour_follows_the_object():
    labels = np.zeros((20, 20), np.int32)
    labels[5:15, 4:10] = 1
    ((i, poly),) = contours(labels)
    assert i == 1
    assert poly[:, 0].min() == pytest.approx(4.5) and poly[:, 0].max() == pytest.approx(14.5)
    assert poly[:, 1].min() == pytest.approx(3.5) and poly[:, 1].max() == pytest.approx(9.5)


def test_boundary_channel_splits_touching_objects():
    card = ModelCard("x", classes=("foreground", "boundary"))
    a, b = disc((40, 60), (20, 18), 10), disc((40, 60), (20, 37), 10)
    fg = (a | b).astype(np.float32)
    from skimage.segmentation import find_boundaries

    lab = a.astype(int) + 2 * (b & ~a)
    bd = find_boundaries(lab, mode="inner").astype(np.float32)
    labels = labels_from_probabilities(np.stack([fg, bd]), card)
    assert labels.max() == 2


def test_count_iter_returns_labels_and_table():
    stack = np.zeros((2, 30, 30), np.uint8)
    stack[1] = disc((30, 30), (15, 15), 6)
    gen = count_iter(stack, kind="mask", scale=(1.0, 0.5, 0.5), unit="um")
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            labels, table = stop.value
            break
    assert [e.done for e in events] == [1, 2]
    assert labels.max() == 1 and isinstance(table, pd.DataFrame) and table["unit"][0] == "um"


def whole_image_fill(labels):
    """The recipe filter_objects used before: one distance transform of the whole image."""
    from scipy import ndimage as ndi

    holes = ndi.binary_fill_holes(labels > 0) & (labels == 0)
    if not holes.any():
        return labels
    _, (iy, ix) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    out = labels.copy()
    out[holes] = labels[iy[holes], ix[holes]]
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.uint64])
def test_holes_are_filled_locally_exactly_as_by_a_whole_image_distance_transform(dtype):
    from skimage.segmentation import relabel_sequential

    rng = np.random.default_rng(7)
    for _ in range(60):
        labels = (rng.integers(0, 6, (30, 40)) * rng.integers(0, 2, (30, 40))).astype(dtype)
        # (an id scattered in pieces is one object per piece first: see the test below)
        pieces = _split_disconnected(labels.astype(np.int64))
        expected, _, _ = relabel_sequential(whole_image_fill(pieces))
        np.testing.assert_array_equal(filter_objects(labels), expected)


def test_huge_or_gapped_ids_are_counted_without_a_huge_table():
    labels = np.zeros((20, 20), np.uint64)
    labels[2:6, 2:6] = 10**15
    labels[10:14, 10:14] = 7
    out = filter_objects(labels, min_area=4)
    assert out.dtype == np.int32 and out.max() == 2 and out[3, 3] == 2 and out[11, 11] == 1


def test_an_id_painted_in_two_places_counts_as_two_objects():
    """A correction that reuses an id far away (pasted, or painted with the wrong label)
    is two nuclei, each measured and outlined: not one object with a contour around one."""
    from napari_unet.jobs import run_to_end
    from napari_unet.objects.count import contours, count_iter

    labels = np.zeros((80, 80), np.int32)
    labels[5:15, 5:15] = 3
    labels[50:62, 50:60] = 3  # the same id, elsewhere
    labels[20:30, 30:40] = 7
    out, table = run_to_end(count_iter(labels, kind="labels", min_area=10))
    assert len(table) == 3 and len(contours(out)) == 3
    assert sorted(table["area"].round().astype(int)) == [100, 100, 120]
    many = np.zeros((200, 200), np.int32)  # many reused ids: the whole-image path
    for k in range(60):
        y, x = divmod(k, 10)
        many[y * 20 + 2 : y * 20 + 8, x * 20 + 2 : x * 20 + 8] = 1 + k % 30
    _, table = run_to_end(count_iter(many, kind="labels", min_area=1))
    assert len(table) == 60


def test_counting_with_contours_gives_the_same_table_and_outlines(rng):
    """The Count button measures and outlines at once (the outlines on a second thread):
    the same table and the same polygons as the two made one after the other, for a
    plane and a stack, and labels that are not the caller's own array."""
    from scipy import ndimage as ndi

    from napari_unet.jobs import run_to_end
    from napari_unet.objects.count import contours, count_iter, measure_with_contours
    from napari_unet.objects.instances import split_mask

    image = ndi.gaussian_filter(rng.random((3, 160, 200)), 4)
    mask = image > np.percentile(image, 60)
    stack = split_mask(mask, h=1)
    for labels, intensity in ((stack[0], image[0]), (stack, image)):
        table, polys = measure_with_contours(labels, intensity, scale=(0.5, 0.5), unit="um")
        pd.testing.assert_frame_equal(table, measure(labels, intensity, scale=(0.5, 0.5), unit="um"))
        alone = contours(labels)
        assert [i for i, _ in polys] == [i for i, _ in alone] and len(polys) == len(table) > 10
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(polys, alone))
    plane = stack[0].copy()
    out, table, polys = run_to_end(count_iter(plane, kind="labels", min_area=1, with_contours=True))
    assert len(table) == len(polys) and not np.shares_memory(out, plane)  # the caller's array is not handed back
    out[:] = 0
    assert plane.any()
    assert run_to_end(count_iter(plane, kind="labels", min_area=1))[0].max() == len(table)


def test_filled_hole_pixels_count_toward_the_area_limits():
    """A 3x3 object with its centre missing has 8 pixels; filled, 9: min_area=9 keeps it
    (the areas are updated with the filled pixels, not taken from before the fill)."""
    labels = np.zeros((7, 7), np.int32)
    labels[2:5, 2:5] = 4
    labels[3, 3] = 0
    out = filter_objects(labels, min_area=9)
    assert out[3, 3] == 1 and (out == 1).sum() == 9
    assert not filter_objects(labels, min_area=9, fill_holes=False).any()


def test_a_persons_labels_keep_their_small_objects_whatever_the_models_settings():
    """Count passes the settings Predict used; a model's relative size filter is for its own
    objects, not for labels a person drew or corrected (it dropped 2 of 1,124 in a benchmark)."""
    from napari_unet.jobs import run_to_end
    from napari_unet.objects.settings import Settings

    labels = np.zeros((60, 60), np.int32)
    for k, (y, x) in enumerate([(5, 5), (5, 30), (30, 5), (30, 30), (45, 45)], start=1):
        labels[y : y + 12, x : x + 12] = k
    labels[55:58, 55:58] = 6  # a small one a person drew on purpose
    model_settings = Settings(min_relative_area=0.3, min_area=5)
    found, table = run_to_end(count_iter(labels, kind="labels", settings=model_settings, min_area=5))
    assert len(table) == 6 and (found == 6).sum() == 9
