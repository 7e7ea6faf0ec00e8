"""Following what a person drew through a stack (``keep_continuing``, ``predict --follow``):
the predicted regions joined across slices to a drawn region are kept, the others left out."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.io import read_image, write_tiff
from napari_unet.networks.model import save_model
from napari_unet.objects.continuation import keep_continuing
from tests.conftest import bright_region_model


def stack_scene():
    """A lesion through slices 2-6 (drawn on 3 and 5), a bright vessel alone on slice 9, a
    false mark on checked-empty slice 0, and a second class drawn nowhere."""
    pred = np.zeros((11, 20, 20), np.uint8)
    pred[2:7, 5:10, 5:10] = 1  # the lesion, predicted on every slice it spans
    pred[9, 12:15, 12:15] = 1  # not joined to it
    pred[0, 1:3, 1:3] = 1  # on a slice checked empty
    pred[6:8, 15:18, 1:4] = 2  # a class nobody drew: nothing to follow
    drawn = np.zeros_like(pred)
    drawn[3, 5:9, 5:9] = 1  # drawn a little smaller than predicted
    drawn[5, 5:10, 5:10] = 1
    return pred, drawn, [0, 3, 5]


def test_the_regions_joined_to_the_drawing_stay_and_the_others_go():
    pred, drawn, checked = stack_scene()
    out, left_out = keep_continuing(pred, drawn, checked)
    assert np.array_equal(out[checked], drawn[checked])  # checked slices are what was drawn
    for z in (2, 4, 6):  # the lesion continues through the slices nobody checked
        assert (out[z, 5:10, 5:10] == 1).all()
    assert not out[9].any() and not out[0].any()  # the lone vessel and the mark on an empty slice go
    assert (out[6:8, 15:18, 1:4] == 2).all()  # a class never drawn is kept as predicted
    assert left_out == {1: 1}  # the lesion's one region kept, the vessel left out


def test_a_region_touching_only_by_a_corner_is_not_joined():
    pred = np.zeros((3, 8, 8), np.uint8)
    pred[1, 2:4, 2:4] = 1
    pred[2, 4:6, 4:6] = 1  # meets the drawn square at a corner, one slice up
    drawn = np.zeros_like(pred)
    drawn[1, 2:4, 2:4] = 1
    out, _ = keep_continuing(pred, drawn, [1])
    assert not out[2].any()


@pytest.mark.parametrize(
    ("pred", "drawn", "checked", "message"),
    [
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), [0], "stack of slices"),
        (np.zeros((3, 8, 8), np.uint8), np.zeros((3, 8, 9), np.uint8), [0], "shape"),
        (np.zeros((3, 8, 8), np.uint8), np.zeros((3, 8, 8), np.float32), [0], "integer class ids"),
        (np.zeros((3, 8, 8), np.uint8), np.zeros((3, 8, 8), np.uint8), [], "no checked slices"),
        (np.zeros((3, 8, 8), np.uint8), np.zeros((3, 8, 8), np.uint8), [1, 3], "outside the stack"),
    ],
)
def test_bad_inputs_are_named(pred, drawn, checked, message):
    with pytest.raises(ValueError, match=message):
        keep_continuing(pred, drawn, checked)


@pytest.fixture()
def region_model(tmp_path):
    net, card = bright_region_model()
    return save_model(net, tmp_path / "regions", card)


def bright_stack() -> np.ndarray:
    """A bright square through every slice (where a lesion is drawn on two), and a second
    one on the last slice only."""
    image = np.full((6, 48, 48), 10.0, np.float32)
    image[:, 20:30, 20:30] = 200.0
    image[5, 35:45, 5:15] = 200.0
    return image


def test_predict_follow_keeps_what_continues_the_drawing(tmp_path, region_model, capsys):
    write_tiff(tmp_path / "ct.tif", bright_stack(), axes="ZYX")
    plain, followed = tmp_path / "plain", tmp_path / "followed"
    assert main(["predict", str(tmp_path / "ct.tif"), "--model", str(region_model), "--out", str(plain),
                 "--device", "cpu"]) == 0  # fmt: skip
    pred = np.asarray(read_image(plain / "ct_mask.tif").data)
    assert (pred[:, 20:30, 20:30] == 1).all() and (pred[5, 35:45, 5:15] == 1).all() and pred.sum() == 700
    drawn = np.zeros(pred.shape, np.uint8)
    drawn[2, 21:29, 21:29] = 1  # drawn a little inside the bright square
    write_tiff(tmp_path / "drawn.tif", drawn, axes="ZYX", labels=True)
    assert main(["predict", str(tmp_path / "ct.tif"), "--model", str(region_model), "--out", str(followed),
                 "--device", "cpu", "--follow", str(tmp_path / "drawn.tif"), "--annotated", "2,4"]) == 0  # fmt: skip
    got = np.asarray(read_image(followed / "ct_mask.tif").data)
    assert np.array_equal(got[2], drawn[2]) and not got[4].any()  # the checked slices: as drawn (4: checked empty)
    assert (got[[0, 1, 3], 20:30, 20:30] == 1).all()  # the square continues from slice 2 down to 0 and up to 3
    assert not got[5].any()  # beyond slice 4, checked empty, nothing joins the drawing
    assert "left out the predicted regions not joined to a drawn one (2 of lesion)" in capsys.readouterr().out


def test_predict_follow_refuses_what_it_cannot_do(tmp_path, region_model, capsys):
    from napari_unet.networks.model import ModelCard, build_model

    card = ModelCard("objects", "unet", {"features": (4, 8)}, classes=("foreground", "boundary"), tile=64)
    objects_model = save_model(build_model(card), tmp_path / "objects", card)
    write_tiff(tmp_path / "ct.tif", bright_stack()[:4], axes="ZYX")
    write_tiff(tmp_path / "drawn.tif", np.zeros((4, 48, 49), np.uint8), axes="ZYX", labels=True)
    args = ["predict", str(tmp_path / "ct.tif"), "--out", str(tmp_path / "o"), "--device", "cpu",
            "--follow", str(tmp_path / "drawn.tif")]  # fmt: skip
    assert main([*args, "--model", str(region_model), "--annotated", "1"]) == 1
    assert "shape" in capsys.readouterr().err
    assert main([*args, "--model", str(region_model), "--annotated", "one"]) == 1
    assert "slice numbers" in capsys.readouterr().err
    write_tiff(tmp_path / "drawn.tif", np.zeros((4, 48, 48), np.uint8), axes="ZYX", labels=True)
    assert main([*args, "--model", str(objects_model), "--annotated", "1"]) == 1  # an objects model
    err = capsys.readouterr().err
    assert "region model" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "ct_mask.tif").exists()  # refused before any prediction
    assert main([*args[:-2], "--model", str(region_model), "--annotated", "1"]) == 1  # --annotated alone
    assert "goes with --follow" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "nowhere.tif"), "--model", str(region_model)]) == 1
    assert "no such file or folder (given as --follow)" in capsys.readouterr().err
