"""How a model in training is scored on held-out planes (napari_unet.training.heldout): exact scenes
with a region model whose weights are set by hand, so every figure is known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.training import heldout
from napari_unet.training.data import _Plane

from .conftest import bright_region_model


def _plane(bright_cols: int = 32, drawn_cols: int = 16, size: int = 64, region=None) -> _Plane:
    """A plane bright on its first ``bright_cols`` columns, lesion drawn on the first ``drawn_cols``."""
    image = np.zeros((1, size, size), np.float32)
    image[:, :, :bright_cols] = 1.0
    labels = np.zeros((size, size), np.uint8)
    labels[:, :drawn_cols] = 1
    region = np.ones((size, size), bool) if region is None else region
    return _Plane(image, np.zeros((2, size, size), np.float32), region, labels, "test", semantic=True)


@pytest.fixture(scope="module")
def model():
    net, card = bright_region_model()
    net.card = card
    return net


def _settings(model):
    import torch

    return heldout.validation_settings(model.card, torch.device("cpu"), "bf16")


def test_validation_on_the_cpu_is_fp32(model):
    assert _settings(model).precision == "fp32"


def test_scores_per_class_are_the_hand_computed_ones(model):
    # the model marks 32 columns, the person drew 16 of them: Dice 2*16/48, IoU 1/2
    scores = heldout.heldout_scores(model, [_plane(), _plane()], _settings(model))
    lesion = scores["classes"]["1"]
    assert lesion["name"] == "lesion"
    assert lesion["dice"] == pytest.approx(2 / 3)
    assert lesion["iou"] == pytest.approx(0.5)
    assert lesion["precision"] == pytest.approx(0.5)
    assert lesion["recall"] == pytest.approx(1.0)
    assert scores["dice"] == pytest.approx(2 / 3)


def test_scores_count_only_the_checked_region(model):
    region = np.zeros((64, 64), bool)
    region[:, :16] = True  # only the drawn part is checked: the model is right everywhere there
    scores = heldout.heldout_scores(model, [_plane(region=region)], _settings(model))
    assert scores["classes"]["1"]["dice"] == pytest.approx(1.0)


def test_a_class_marked_nowhere_and_drawn_nowhere_scores_1_not_nan(model):
    scores = heldout.heldout_scores(model, [_plane(bright_cols=0, drawn_cols=0)], _settings(model))
    assert scores["classes"]["1"] == {"name": "lesion", "dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    # ... but held-out data with no lesion cannot choose a checkpoint: a model that finds nothing
    # would look perfect, so the overall Dice is not a number and training keeps its latest weights
    assert np.isnan(scores["dice"])
    marked = heldout.heldout_scores(model, [_plane(bright_cols=8, drawn_cols=0)], _settings(model))
    assert np.isnan(marked["dice"]) and marked["classes"]["1"]["dice"] == 0.0


def test_false_positives_are_the_checked_background_the_model_marks(model):
    plane = _plane()
    ((k, flat),) = heldout.false_positives(model, [plane], _settings(model))
    assert k == 0
    _rows, cols = np.unravel_index(flat, (64, 64))
    assert len(flat) == 64 * 16 and cols.min() == 16 and cols.max() == 31


def test_smallest_region_area_is_a_quarter_of_the_smallest_drawn_region(model):
    plane = _plane(drawn_cols=0)
    plane.labels[2:12, 2:12] = 1  # 100 px
    plane.labels[30:50, 30:50] = 1  # 400 px
    assert heldout.smallest_region_area([plane], model.card) == 25.0
    outside = np.ones((64, 64), bool)
    outside[:, :20] = False  # the 100 px region is not checked: the 400 px one sets the scale
    plane.region = outside
    assert heldout.smallest_region_area([plane], model.card) == 100.0
    # a region drawn at a whole-image model's 64^2 input, its class maps at 128^2: 4x the area
    whole = model.card.replace(input_size=64)
    assert heldout.smallest_region_area([plane], whole, full_size=(128, 128)) == 400.0


def test_smallest_region_area_has_a_floor_and_a_default(model):
    plane = _plane(drawn_cols=0)
    assert heldout.smallest_region_area([plane], model.card) == 10.0  # nothing drawn
    plane.labels[0:2, 0:4] = 1  # 8 px: a quarter is 2, the floor is 10
    assert heldout.smallest_region_area([plane], model.card) == 10.0
