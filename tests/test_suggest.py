"""Which slice to check next (#30): per-pixel doubt from the model's own probabilities and from
mirrored predictions, slices and regions ranked by it, and the ``suggest`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.objects.suggest import combine, pixel_uncertainty, rank_regions, rank_slices, uncertainty_parts


class _Card:
    def __init__(self, activation="sigmoid", flips=True, classes=("foreground", "boundary")):
        self.activation, self.flips, self.classes, self.name = activation, flips, classes, "toy"


def test_pixel_doubt_is_the_chance_the_decision_is_wrong():
    sig = np.array([[[0.5, 0.9, 0.0]], [[0.7, 0.7, 0.7]]], np.float32)  # (K=2, 1, 3): only the first is a decision
    np.testing.assert_allclose(pixel_uncertainty(sig, _Card()), [[0.5, 0.1, 0.0]], atol=1e-6)
    soft = np.array([[[0.2, 1.0]], [[0.5, 0.0]], [[0.3, 0.0]]], np.float32)
    np.testing.assert_allclose(pixel_uncertainty(soft, _Card("softmax")), [[0.5, 0.0]], atol=1e-6)


def test_slices_rank_by_pixels_likely_to_change_and_checked_ones_are_left_out():
    u = np.zeros((5, 10, 10), np.float32)
    u[1] = 0.1  # 10 pixels' worth spread thin
    u[3, :2] = 1.0  # 20 pixels surely wrong
    u[4, 0, 0] = 0.5
    ranked = rank_slices(u, checked=[1])
    assert [s.z for s in ranked] == [3, 4, 0, 2]
    assert ranked[0].score == pytest.approx(20.0)
    with pytest.raises(ValueError, match="needs a stack"):
        rank_slices(u[0])


def test_one_image_ranks_its_regions_and_a_checked_region_counts_nothing():
    u = np.zeros((300, 520), np.float32)
    u[10:20, 300:310] = 1.0
    u[280:290, 0:10] = 0.5
    regions = rank_regions(u, size=256)
    assert (regions[0].y, regions[0].x, regions[0].height, regions[0].width) == (0, 256, 256, 256)
    assert (regions[1].y, regions[1].x, regions[1].height) == (256, 0, 44)
    checked = np.zeros(u.shape, bool)
    checked[:256, 256:512] = True
    assert rank_regions(u, size=256, checked=checked)[0].x == 0


class _Stub:
    def __init__(self, flips=True):
        self.card = _Card(flips=flips)


def test_mirrored_predictions_are_mirrored_back_and_disagree_where_position_decides(monkeypatch):
    """A model that answers from what it sees agrees with itself however the image faces (so
    each mirrored answer is put back where it belongs); one that answers from where a pixel is
    (not what it shows) disagrees wherever its answer is not mirror-symmetric."""
    import napari_unet.engine.predict as engine

    sees = {"content": True}

    def stub_predict(model, image, axes=None, **kwargs):
        img = np.asarray(image, np.float32)
        if sees["content"]:
            p = img
        else:
            p = np.zeros_like(img)
            p[..., :, : img.shape[-1] // 2] = 1.0  # the left half, whatever is there
        return np.stack([p, np.zeros_like(p)])

    monkeypatch.setattr(engine, "predict", stub_predict)
    image = np.zeros((3, 8, 8), np.float32)
    image[:, 1:3, 0:5] = 1.0  # lopsided in both directions
    mean, parts = uncertainty_parts(_Stub(), image, axes="ZYX")
    assert set(parts) == {"margin", "flips"}
    np.testing.assert_allclose(mean[0], image)
    assert parts["flips"].max() == 0.0
    sees["content"] = False
    _, parts = uncertainty_parts(_Stub(), image, axes="ZYX")
    assert parts["flips"].min() > 0.4  # left/right flipped answers contradict the others everywhere
    u, used = combine(parts, "flips")
    assert used == "flips" and u.shape == (3, 8, 8)
    _, parts = uncertainty_parts(_Stub(flips=False), image, axes="ZYX")  # left and right matter: no mirrors
    assert set(parts) == {"margin"} and combine(parts, "both")[1] == "margin"
    with pytest.raises(ValueError, match="unknown uncertainty method 'dropout'"):
        combine(parts, "dropout")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Bright disks on a few slices of a small stack, their labels, and the shipped nuclei model."""
    d = tmp_path_factory.mktemp("suggest")
    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, (4, 96, 96)).astype(np.float32)
    labels = np.zeros((4, 96, 96), np.int32)
    yy, xx = np.indices((96, 96))
    for z in (1, 2):
        for k, (cy, cx) in enumerate(((30, 30), (60, 64))):
            disk = (yy - cy) ** 2 + (xx - cx) ** 2 < 12**2
            image[z][disk] += 400
            labels[z][disk] = k + 1
    tifffile.imwrite(d / "stack.tif", image.astype(np.uint16), photometric="minisblack")
    tifffile.imwrite(d / "stack_labels.tif", labels, photometric="minisblack")
    return d


def test_the_command_ranks_every_unchecked_slice_into_json(stack, capsys):
    out = stack / "s.json"
    code = main(["suggest", str(stack / "stack.tif"), "--labels", str(stack / "stack_labels.tif"),
                 "--annotated", "1", "--n", "2", "--json", str(out), "--method", "margin"])  # fmt: skip
    assert code == 0
    payload = json.loads(out.read_text())
    zs = [s["z"] for s in payload["slices"]]
    assert sorted(zs) == [0, 2, 3]  # one entry per unchecked slice
    scores = [s["score"] for s in payload["slices"]]
    assert scores == sorted(scores, reverse=True) and all(isinstance(v, float) for v in scores)
    printed = capsys.readouterr().out
    assert printed.count("pixel(s) likely to change") == 2


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--annotated", "9"], r"slice\(s\) \[9\] do not exist; .* has slices 0 to 3"),
        (["--labels", "other"], r"have shape \(96, 48\) but the image has \(4, 96, 96\)"),
        (["--annotated", "0,1,2,3"], "every slice of .* is checked"),
    ],
)
def test_bad_suggest_inputs_are_one_sentence(stack, capsys, extra, said):
    if "other" in extra:
        tifffile.imwrite(stack / "other.tif", np.zeros((96, 48), np.int32))
        extra = ["--labels", str(stack / "other.tif")]
    assert main(["suggest", str(stack / "stack.tif"), "--method", "margin", *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert __import__("re").search(said, err), err


def test_annotated_slices_that_hold_nothing_are_warned_about(stack, capsys):
    assert main(["suggest", str(stack / "stack.tif"), "--labels", str(stack / "stack_labels.tif"),
                 "--annotated", "0,3", "--method", "margin"]) == 0  # fmt: skip
    assert "the --annotated slices [0, 3] hold no labels" in capsys.readouterr().err


def test_a_model_whose_classes_do_not_match_the_labels_is_refused():
    from napari_unet.objects.suggest import check_labels_fit

    card = _Card("softmax", classes=("background", "lesion"))
    with pytest.raises(ValueError, match=r"class value 3, but the model has 1 class\(es\) \(lesion, values 1 to 1\)"):
        check_labels_fit(np.array([[0, 3]], np.int32), card, (1, 2))
    with pytest.raises(ValueError, match="must be whole numbers"):
        check_labels_fit(np.zeros((1, 2), np.float32), card, (1, 2))
