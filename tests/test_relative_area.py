"""Objects smaller than a share of their image's median object are dropped (``min_relative_area``):
fragments and specks beside nuclei of any size, where a pixel limit fits one magnification."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.io import write_tiff
from napari_unet.jobs import run_to_end
from napari_unet.networks.model import ModelCard
from napari_unet.objects.count import count_iter
from napari_unet.objects.instances import labels_from_probabilities
from napari_unet.objects.label_cleanup import RELATIVE_MIN_OBJECTS, filter_objects
from napari_unet.objects.pipeline import Settings, objects
from napari_unet.training.data import distance_target


def scene(n_big: int = 6, side: int = 12, speck: int = 3) -> np.ndarray:
    """``n_big`` square nuclei of ``side`` px, a ``speck`` px square fragment between them,
    and a fragment of the same size cut by the left border."""
    labels = np.zeros((60, 20 + 16 * n_big), np.int32)
    for i in range(n_big):
        labels[10 : 10 + side, 10 + 16 * i : 10 + 16 * i + side] = i + 1
    labels[40 : 40 + speck, 30 : 30 + speck] = n_big + 1  # inside the image
    labels[40 : 40 + speck, 0:speck] = n_big + 2  # on the border
    return labels


def kept_sizes(labels: np.ndarray) -> list[int]:
    return sorted(np.bincount(labels.ravel())[1:].tolist())


def test_a_fragment_under_the_share_of_the_median_is_dropped_but_not_one_cut_by_the_border():
    labels = scene()
    out = filter_objects(labels, min_relative_area=0.2)  # the median nucleus is 144 px: 9 px < 28.8
    assert kept_sizes(out) == [9] + [144] * 6
    assert out[41, 1] > 0 and out[41, 31] == 0  # the border one stays, the inner one goes
    assert kept_sizes(filter_objects(labels, min_relative_area=0.05)) == [9, 9] + [144] * 6  # 9 >= 7.2
    assert kept_sizes(filter_objects(labels)) == [9, 9] + [144] * 6  # off by default


def test_the_share_scales_with_the_nuclei_where_a_pixel_limit_does_not():
    small = scene(side=6, speck=2)  # the same scene at half the magnification
    assert kept_sizes(filter_objects(small, min_relative_area=0.2)) == [4] + [36] * 6
    assert kept_sizes(filter_objects(small, min_area=9)) == [36] * 6  # a 9-px limit drops the border cut too


def test_too_few_objects_for_a_median_keep_everything():
    labels = scene(n_big=RELATIVE_MIN_OBJECTS - 3)  # with the two specks: one object short
    assert len(kept_sizes(labels)) == RELATIVE_MIN_OBJECTS - 1
    assert kept_sizes(filter_objects(labels, min_relative_area=0.3)) == kept_sizes(labels)


def test_the_model_card_sets_it_and_a_setting_overrides_it():
    truth = scene()
    fg = (truth > 0).astype(np.float32)
    probs = np.stack([fg, distance_target(truth), np.zeros_like(fg)])
    card = ModelCard("rel", classes=("foreground", "distance", "micronuclei"),
                     postprocess={"min_area": 4, "seed_threshold": 0.5, "min_relative_area": 0.2})  # fmt: skip
    assert Settings.for_model(card).min_relative_area == 0.2
    assert kept_sizes(objects(probs, card)) == [9] + [144] * 6
    assert kept_sizes(labels_from_probabilities(probs, card)) == [9] + [144] * 6
    assert kept_sizes(objects(probs, card, Settings.for_model(card, min_relative_area=0.0))) == [9, 9] + [144] * 6
    old = ModelCard("old", classes=card.classes, postprocess={"min_area": 4, "seed_threshold": 0.5})
    assert Settings.for_model(old).min_relative_area == 0.0  # an older card: off
    assert kept_sizes(objects(probs, old)) == [9, 9] + [144] * 6


def test_a_persons_labels_are_counted_whole_unless_it_is_asked():
    labels = scene()
    _, table = run_to_end(count_iter(labels, kind="labels", min_area=0))
    assert len(table) == 8
    _, table = run_to_end(count_iter(labels, kind="labels", min_area=0, min_relative_area=0.2))
    assert len(table) == 7


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, float("nan"), "a", True])
def test_bad_shares_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="min_relative_area"):
        Settings(min_relative_area=bad)
    if isinstance(bad, float) and np.isfinite(bad):
        with pytest.raises(ValueError, match="min_relative_area"):
            filter_objects(scene(), min_relative_area=bad)


def test_the_cli_takes_it_and_names_a_bad_one(tmp_path, capsys):
    write_tiff(tmp_path / "m_mask.tif", (scene() > 0).astype(np.uint8))
    out = tmp_path / "o"
    assert main(["count", str(tmp_path / "m_mask.tif"), "--out", str(out), "--min-relative-area", "1.5"]) == 1
    err = capsys.readouterr().err
    assert "min_relative_area" in err and "Traceback" not in err
    assert main(["count", str(tmp_path / "m_mask.tif"), "--out", str(out), "--min-area", "0",
                 "--min-relative-area", "0.2"]) == 0  # fmt: skip
    import pandas as pd

    table = pd.read_csv(next(out.glob("*objects*.csv")))
    assert len(table) == 7  # the inner speck dropped, the border one kept
