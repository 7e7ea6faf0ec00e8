"""Filling between checked slices (#30, the command-line and core part): shape-based
interpolation that keeps the checked slices and what is already labelled, follows a label that
splits or merges, never overwrites another label, and refuses what it cannot do in one sentence."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.objects.interpolate import fill_between


def ellipsoid(shape=(21, 64, 64), centre=(10, 32, 30), radii=(10, 20, 16)):
    z, y, x = np.indices(shape)
    return (sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), centre, radii)) < 1).astype(np.int32)


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def test_a_blob_drawn_on_every_third_slice_is_filled_close_to_its_shape():
    truth = ellipsoid()
    checked = list(range(1, 21, 3))
    drawn = np.zeros_like(truth)
    drawn[checked] = truth[checked]
    filled, changed = fill_between(drawn, checked)
    between = [z for z in range(checked[0], checked[-1] + 1) if z not in checked]
    assert changed == [z for z in between if truth[z].any()]
    assert dice(filled[between] > 0, truth[between] > 0) > 0.9
    np.testing.assert_array_equal(filled[checked], drawn[checked])  # the checked slices as drawn
    assert not filled[: checked[0]].any() and not filled[checked[-1] + 1 :].any()  # nothing outside


def test_a_label_that_splits_is_followed_and_never_overwrites_another():
    stack = np.zeros((5, 40, 60), np.int32)
    stack[0, 10:30, 10:50] = 1  # one wide blob ...
    stack[4, 10:30, 5:20] = 1  # ... that splits into two
    stack[4, 10:30, 40:55] = 1
    stack[0, 32:38, 2:8] = 2  # another object, only on the first slice: it ends halfway
    stack[2, 15:25, 25:35] = 3  # a correction a person made on a slice between: kept
    filled, _ = fill_between(stack, [0, 4])
    assert (filled[2][15:25, 25:35] == 3).all()
    middle = filled[2] == 1
    assert middle[15:25, 10:20].any() and middle[15:25, 42:50].any()
    assert (filled[1] == 2).any() and not (filled[3] == 2).any()  # ends halfway to the slice checked without it
    assert set(np.unique(filled)) == {0, 1, 2, 3}


def test_touching_labels_share_a_slice_between_without_overlap():
    stack = np.zeros((3, 20, 20), np.int32)
    stack[0, 5:15, 2:10], stack[0, 5:15, 10:18] = 1, 2
    stack[2] = stack[0]
    filled, _ = fill_between(stack, [0, 2])
    np.testing.assert_array_equal(filled[1], stack[0])  # each pixel to one label, the boundary kept


@pytest.mark.parametrize(
    ("labels", "checked", "said"),
    [
        (np.zeros((4, 8, 8), np.int32), [1], "only one checked slice (1): filling needs two checked slices"),
        (np.zeros((4, 8, 8), np.int32), [0, 9], "slice(s) [9] are outside the stack, which has slices 0 to 3"),
        (np.zeros((4, 8, 8), np.int32), [0, 3], "hold no labels, so there is nothing to fill"),
        (np.zeros((8, 8), np.int32), [0, 3], "filling between slices needs a stack (Z, Y, X)"),
        (np.zeros((4, 8, 8), np.float32), [0, 3], "labels must be whole numbers"),
    ],
)
def test_what_cannot_be_filled_is_said_in_one_sentence(labels, checked, said):
    with pytest.raises(ValueError) as err:
        fill_between(labels, checked)
    assert said in str(err.value) and "\n" not in str(err.value)


def test_the_command_fills_a_file_and_keeps_its_pixel_size(tmp_path, capsys):
    from napari_unet.io import read_image, write_tiff

    truth = ellipsoid((12, 48, 48), (6, 24, 24), (6, 14, 12))
    drawn = np.zeros_like(truth)
    drawn[[2, 6, 10]] = truth[[2, 6, 10]]
    write_tiff(tmp_path / "drawn.tif", drawn.astype(np.uint8), axes="ZYX", scale=(2.0, 0.5, 0.5), units="um",
               labels=True)  # fmt: skip
    out = tmp_path / "filled.tif"
    assert main(["interpolate", str(tmp_path / "drawn.tif"), "--annotated", "2,6,10", "--out", str(out)]) == 0
    assert "filled 6 of the 6 slice(s) between the checked ones" in capsys.readouterr().out
    filled = read_image(out)
    assert filled.scale == (2.0, 0.5, 0.5) and filled.units[-1] == "micrometer"
    assert dice(np.asarray(filled.data)[[3, 4, 5, 7, 8, 9]] > 0, truth[[3, 4, 5, 7, 8, 9]] > 0) > 0.85
    # bad inputs: one line each, exit status 1, nothing written over
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    for argv, said in [
        (["--annotated", "2,6", "--out", str(out)], "exists; give --overwrite"),
        (["--annotated", "2", "--out", str(tmp_path / "a.tif")], "only one checked slice"),
        (["--annotated", "2,60", "--out", str(tmp_path / "b.tif")], "outside the stack"),
        (["--annotated", "2,6", "--out", str(tmp_path / "c.png")], "write the labels as .tif or .nii.gz"),
    ]:
        assert main(["interpolate", str(tmp_path / "drawn.tif"), *argv]) == 1
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, err
    assert main(["interpolate", str(tmp_path / "rgb.tif"), "--annotated", "0,1", "--out", str(tmp_path / "d.tif")]) == 1
    assert "not labels" in capsys.readouterr().err
    assert not (tmp_path / "a.tif").exists() and not (tmp_path / "d.tif").exists()


def test_a_models_probabilities_move_the_filled_edge_toward_the_true_shape():
    """Image-aware refinement: where the true shape between two drawn slices is not the blend
    of them (a bulge), a model that sees it pulls the filled edge toward it; where the model is
    unsure (0.5) nothing moves, and it never adds a shape where none was drawn."""
    truth = np.zeros((5, 64, 64), np.int32)
    yy, xx = np.indices((64, 64))
    for z, r in enumerate((10, 16, 20, 16, 10)):  # a bulge: the middle slices are wider than a blend
        truth[z][(yy - 32) ** 2 + (xx - 32) ** 2 < r * r] = 1
    truth[2, 2:8, 2:8] = 1  # something the model would see that nobody drew on a checked slice
    drawn = np.zeros_like(truth)
    drawn[[0, 4]] = truth[[0, 4]]
    plain, _ = fill_between(drawn, [0, 4])
    sure = np.where(truth > 0, 0.95, 0.05).astype(np.float32)
    refined, _ = fill_between(drawn, [0, 4], probability=sure)
    unsure, _ = fill_between(drawn, [0, 4], probability=np.full(truth.shape, 0.5, np.float32))
    between = [1, 2, 3]
    assert dice(refined[between] > 0, truth[between] > 0) > dice(plain[between] > 0, truth[between] > 0) + 0.05
    np.testing.assert_array_equal(unsure, plain)
    assert not refined[2, 2:8, 2:8].any()  # no shape nobody drew
    np.testing.assert_array_equal(refined[[0, 4]], drawn[[0, 4]])
    with pytest.raises(ValueError, match=r"probabilities have shape \(5, 32, 32\) but the labels \(5, 64, 64\)"):
        fill_between(drawn, [0, 4], probability=np.zeros((5, 32, 32), np.float32))
