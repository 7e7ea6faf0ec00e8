"""The shipped nuclei model on real, hand-annotated images (CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet import load_model, segment
from napari_unet._sample_data import sample_paths
from napari_unet.io import read_image
from napari_unet.metrics import match_objects, pixel_scores


@pytest.fixture(scope="module")
def model():
    return load_model()  # the default: the shipped nuclei model


def test_default_model_is_the_shipped_nuclei_model(model):
    card = model.card
    assert card.name == "nuclei" and card.classes == ("foreground", "boundary")
    assert card.metrics["validation_f1_50"] >= 0.9
    assert "never read" in card.training["test_split"]
    assert not model.training


@pytest.mark.parametrize(("key", "dice_floor", "f1_floor"), [("misc", 0.93, 0.4), ("u2os", 0.93, 0.88)])
def test_segments_real_sample_images(model, key, dice_floor, f1_floor):
    # floors sit a little below what was measured (benchmarks/accuracy.py): Dice 0.975 / 0.973,
    # object F1@0.5 0.615 / 0.953 (misc has a few large touching nuclei that merge)
    image_path, labels_path = sample_paths(key)
    image, truth = read_image(image_path).data, read_image(labels_path).data
    result = segment(model, image, device="cpu")
    assert result.probabilities.shape == (2, *image.shape) and result.probabilities.dtype == np.float32
    assert pixel_scores(result.mask > 0, truth > 0)["dice"] >= dice_floor
    assert match_objects(result.labels, truth)["f1"] >= f1_floor
