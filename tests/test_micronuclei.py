"""Micronuclei as a model output: targets, loss, objects, and the count table's column."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.jobs import run_to_end
from napari_unet.networks.architectures import build_model
from napari_unet.networks.model import ModelCard, load_model, save_model
from napari_unet.objects.count import count_iter, count_per_slice, measure
from napari_unet.objects.micronuclei import add_to_table, micronuclei_labels, nearest_nucleus, per_nucleus
from napari_unet.training.train import make_targets, masked_loss

MN_CARD = ModelCard(
    "mn",
    architecture="unet",
    arch_args={"features": [4, 8], "upsample": "transpose"},
    classes=("foreground", "boundary", "micronuclei"),
    activation="sigmoid",
    postprocess={"min_area": 10, "boundary_threshold": 0.5},
)


def two_nuclei() -> tuple[np.ndarray, np.ndarray]:
    nuclei = np.zeros((40, 60), np.int32)
    nuclei[10:25, 5:20] = 1
    nuclei[10:25, 35:50] = 2
    mn = np.zeros_like(nuclei)
    mn[15:18, 22:25] = 1  # beside nucleus 1 (2 px from its edge)
    mn[16:19, 52:55] = 2  # beside nucleus 2
    mn[30:33, 40:43] = 3  # below nucleus 2
    return nuclei, mn


def test_the_micronuclei_target_is_micronuclei_outside_nuclei_and_unknown_when_not_drawn():
    nuclei, mn = two_nuclei()
    mn[12, 12] = 4  # a stray micronucleus pixel inside a nucleus is the nucleus's
    target = make_targets(nuclei, MN_CARD, mn)
    assert target.shape == (3, *nuclei.shape)
    np.testing.assert_array_equal(target[2], (mn > 0) & (nuclei == 0))
    unknown = make_targets(nuclei, MN_CARD)
    assert np.isnan(unknown[2]).all() and not np.isnan(unknown[:2]).any()
    with pytest.raises(ValueError, match="same pixels"):
        make_targets(nuclei, MN_CARD, mn[:, :10])


def test_an_output_with_no_annotation_is_left_alone_by_the_loss():
    """Fine-tuning on corrected nuclei (no micronuclei drawn) neither teaches micronuclei nor
    teaches that there are none: the loss is that of the outputs that are known, and no
    gradient reaches the micronuclei output."""
    nuclei, _ = two_nuclei()
    target = torch.from_numpy(make_targets(nuclei, MN_CARD))[None]
    logits = torch.randn(1, 3, *nuclei.shape, requires_grad=True)
    mask = torch.ones(1, 1, *nuclei.shape)
    for loss in ("dice_ce", "focal", "dice"):
        both = masked_loss(logits, target, mask, loss=loss)
        known = masked_loss(logits[:, :2], target[:, :2], mask, loss=loss)
        assert float(both.detach()) == pytest.approx(float(known.detach()), rel=1e-6)
    (grad,) = torch.autograd.grad(masked_loss(logits, target, mask), logits)
    assert grad[:, 2].abs().max() == 0 and grad[:, :2].abs().max() > 0
    drawn = torch.from_numpy(make_targets(nuclei, MN_CARD, two_nuclei()[1]))[None]
    (grad,) = torch.autograd.grad(masked_loss(logits, drawn, mask), logits)
    assert grad[:, 2].abs().max() > 0


def test_micronuclei_are_objects_outside_the_nuclei_above_the_threshold_and_area():
    nuclei, mn = two_nuclei()
    prob = np.zeros((3, *nuclei.shape), np.float32)
    prob[0] = nuclei > 0
    prob[2][mn > 0] = 0.8
    prob[2][12:14, 8:10] = 0.9  # inside nucleus 1: part of the nucleus, not a micronucleus
    prob[2][2, 2] = 0.9  # a one-pixel speck: under the minimum area
    prob[2][36:39, 2:5] = 0.4  # under the threshold
    found = micronuclei_labels(prob, MN_CARD, nuclei)
    assert found.dtype == np.int32 and found.max() == 3
    assert ((found > 0) == (mn > 0)).all()
    assert micronuclei_labels(prob, MN_CARD, nuclei, threshold=0.3).max() == 4
    assert micronuclei_labels(prob, MN_CARD, nuclei, min_area=10).max() == 0
    stack = micronuclei_labels(np.stack([prob, prob], 1), MN_CARD, np.stack([nuclei, nuclei]))
    assert stack.max() == 6 and len(np.unique(stack[1][stack[1] > 0])) == 3  # ids unique over the stack
    with pytest.raises(ValueError, match="no 'micronuclei' output"):
        micronuclei_labels(prob[:2], MN_CARD.replace(classes=("foreground", "boundary")), nuclei)


def test_each_micronucleus_goes_to_the_nearest_nucleus_within_reach():
    nuclei, mn = two_nuclei()
    assert nearest_nucleus(nuclei, mn) == {1: 1, 2: 2, 3: 2}
    assert per_nucleus(nuclei, mn) == {1: 1, 2: 2}
    far = mn.copy()
    far[37:40, 25:28] = 4  # 13 px below nucleus 1's corner, beyond a 5-px reach
    assert nearest_nucleus(nuclei, far, max_distance=5.0)[4] == 0
    assert nearest_nucleus(np.zeros_like(nuclei), mn) == {1: 0, 2: 0, 3: 0}
    assert nearest_nucleus(nuclei, np.zeros_like(mn)) == {}
    stack = per_nucleus(np.stack([nuclei, np.where(nuclei, nuclei + 2, 0)]), np.stack([mn, np.zeros_like(mn)]))
    assert stack == {1: 1, 2: 2, 3: 0, 4: 0}


def test_the_count_table_has_a_micronuclei_column_and_the_slices_their_totals():
    nuclei, mn = two_nuclei()
    far = mn.copy()
    far[0:3, 57:60] = 4  # near no nucleus: in the slice's total, given to none
    table = add_to_table(measure(nuclei), nuclei, far, max_distance=8.0)
    assert list(table["micronuclei"]) == [1, 2]
    assert list(table.columns)[-2:] == ["micronuclei", "unit"]
    per = count_per_slice(table, 1)
    assert list(per["micronuclei"]) == [4]
    np.testing.assert_allclose(table.attrs["micronuclei_centres"], [[16, 23], [17, 53], [31, 41], [1, 58]])
    assert "micronuclei" not in count_per_slice(measure(nuclei), 1)


def test_counting_a_micronuclei_models_output_fills_the_column():
    nuclei, mn = two_nuclei()
    prob = np.zeros((3, *nuclei.shape), np.float32)
    prob[0] = nuclei > 0
    prob[1][(nuclei > 0) & ~np.pad(nuclei > 0, 1)[2:, 1:-1]] = 0.9  # some boundary, the interiors seed
    prob[2][mn > 0] = 0.9
    labels, table = run_to_end(count_iter(prob, kind="probability", card=MN_CARD))
    assert labels.max() == 2 and sorted(table["micronuclei"]) == [1, 2]
    # corrected labels counted with the micronuclei the model found
    _, table = run_to_end(count_iter(nuclei, kind="labels", micronuclei=mn))
    assert sorted(table["micronuclei"]) == [1, 2]
    with pytest.raises(ValueError, match="must match"):
        run_to_end(count_iter(nuclei, kind="labels", micronuclei=mn[:, :5]))


def test_a_micronuclei_card_round_trips_and_the_pipeline_returns_them(tmp_path):
    import napari_unet

    net = build_model(MN_CARD)
    save_model(net, tmp_path / "mn.safetensors", MN_CARD)
    loaded = load_model(str(tmp_path / "mn.safetensors"))
    assert loaded.card.classes == ("foreground", "boundary", "micronuclei")
    image = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    result = napari_unet.segment(loaded, image, device="cpu")
    assert result.probabilities.shape == (3, 48, 48)
    assert result.micronuclei is not None and result.micronuclei.shape == (48, 48)
    assert not ((result.micronuclei > 0) & (result.labels > 0)).any()
    assert napari_unet.segment(loaded, image, device="cpu", objects=False).micronuclei is None
    plain = MN_CARD.replace(classes=("foreground", "boundary"))
    save_model(build_model(plain), tmp_path / "plain.safetensors", plain)
    assert napari_unet.segment(load_model(str(tmp_path / "plain.safetensors")), image, device="cpu").micronuclei is None
