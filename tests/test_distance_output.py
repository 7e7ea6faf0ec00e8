"""A ``distance`` output (each nucleus's distance to its own edge, over its largest) that
seeds one object per peak: its target, the objects made from it, and its setting."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.networks.model import ModelCard
from napari_unet.objects.instances import labels_from_probabilities
from napari_unet.objects.metrics import match_objects
from napari_unet.objects.pipeline import Settings, objects
from napari_unet.training.data import distance_target, make_targets

CARD = ModelCard(
    "dist",
    classes=("foreground", "distance", "micronuclei"),
    postprocess={"min_area": 10, "seed_threshold": 0.5},
)


def disc(shape, centre, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r**2


def touching(shape=(60, 90)):
    """A large and a small nucleus pressed together, and a third apart: the pair's
    outline has a waist where they meet but no gap."""
    labels = np.zeros(shape, np.int32)
    labels[disc(shape, (30, 30), 14)] = 1
    labels[disc(shape, (30, 52), 9) & (labels == 0)] = 2
    labels[disc(shape, (30, 78), 6)] = 3
    return labels


def test_the_target_is_one_at_each_centre_falling_to_zero_at_the_edge_and_outside():
    labels = touching()
    d = distance_target(labels)
    assert d.dtype == np.float32 and d.shape == labels.shape
    assert (d[labels == 0] == 0).all()
    for k in (1, 2, 3):  # every nucleus peaks at 1 whatever its size...
        inside = labels == k
        assert d[inside].max() == pytest.approx(1.0)
        assert 0 < d[inside].min() < 0.3  # ... and is low along its own edge
    # where the two meet, each side's value is that of an edge pixel: a valley between two peaks
    meet = (labels == 1) & (np.roll(labels, -1, axis=1) == 2)  # nucleus 1's pixels beside nucleus 2
    assert meet.any() and d[meet].max() < 0.15 and d[np.roll(meet, 1, axis=1)].max() < 0.2
    card = CARD
    t = make_targets(labels, card)
    assert t.shape == (3, *labels.shape)
    np.testing.assert_array_equal(t[1], d)
    assert np.isnan(t[2]).all()  # micronuclei not drawn: not known


def test_an_object_cut_by_the_image_border_keeps_its_centre_inside():
    labels = np.zeros((20, 40), np.int32)
    labels[:10, 5:25] = 1  # a box cut by the top border
    d = distance_target(labels)
    row_of_peak = np.unravel_index(np.argmax(d), d.shape)[0]
    assert row_of_peak == 0  # the top border is not an edge: the centre is where the cut was


def test_perfect_distance_output_parts_touching_nuclei_of_unequal_size():
    labels = touching()
    prob = np.stack([(labels > 0).astype(np.float32), distance_target(labels), np.zeros(labels.shape, np.float32)])
    found = labels_from_probabilities(prob, CARD)
    m = match_objects(found, labels, threshold=0.75)
    assert m["n_pred"] == 3 and m["tp"] == 3
    # one big seed threshold too high for the small nucleus would lose it; the default keeps both
    merged = labels_from_probabilities(prob, CARD, seed_threshold=0.05)
    assert merged.max() == 2  # a seed region that reaches across the waist joins the pair


def test_the_seed_threshold_comes_from_the_card_and_can_be_overridden():
    labels = touching()
    prob = np.stack([(labels > 0).astype(np.float32), distance_target(labels), np.zeros(labels.shape, np.float32)])
    assert Settings.for_model(CARD).seed_threshold == 0.5
    low = CARD.replace(postprocess={"min_area": 10, "seed_threshold": 0.05})
    assert objects(prob, low, Settings.for_model(low)).max() == 2
    assert objects(prob, low, Settings.for_model(low, seed_threshold=0.5)).max() == 3


@pytest.mark.parametrize("bad", [0, 1, -0.2, 1.5, float("nan"), "high", True])
def test_a_bad_seed_threshold_is_refused_with_its_name(bad):
    with pytest.raises(ValueError, match="seed_threshold"):
        Settings.for_model(CARD, seed_threshold=bad)


def test_an_output_nobody_knows_is_refused_naming_the_ones_known():
    card = ModelCard("odd", classes=("foreground", "distance", "wobble"))
    with pytest.raises(ValueError, match=r"'wobble'.*'distance'"):
        make_targets(touching(), card)


def test_a_distance_card_round_trips_and_its_seed_threshold_is_used(tmp_path):
    """Saved and loaded, a distance model's card keeps its outputs and seed threshold, and
    ``segment`` makes its objects with them; a boundary model's card still loads as before."""
    import napari_unet
    from napari_unet.networks.architectures import build_model
    from napari_unet.networks.model import load_model, save_model

    card = CARD.replace(architecture="unet", arch_args={"features": [4, 8], "upsample": "transpose"}, tile=64)
    save_model(build_model(card), tmp_path / "dist.safetensors", card)
    loaded = load_model(str(tmp_path / "dist.safetensors"))
    assert loaded.card.classes == ("foreground", "distance", "micronuclei")
    assert loaded.card.postprocess["seed_threshold"] == 0.5
    image = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    result = napari_unet.segment(loaded, image, device="cpu", threshold=0.01)
    assert result.settings.seed_threshold == 0.5
    expected = labels_from_probabilities(result.probabilities, loaded.card, threshold=0.01)
    np.testing.assert_array_equal(result.labels, expected)
    old = card.replace(classes=("foreground", "boundary"), postprocess={"min_area": 10, "boundary_threshold": 0.4})
    save_model(build_model(old), tmp_path / "old.safetensors", old)
    assert load_model(str(tmp_path / "old.safetensors")).card.postprocess["boundary_threshold"] == 0.4
