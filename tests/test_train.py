from __future__ import annotations

import errno

import numpy as np
import pytest
import torch

from napari_unet.networks.model import ModelCard, build_model, load_model, save_model
from napari_unet.training.train import TrainConfig, Trainer, TrainingItem, _Sampler, make_targets, masked_loss, train
from tests.conftest import synthetic_nuclei

TINY = ModelCard("tiny", "unet", {"features": (8, 16, 32)}, classes=("foreground", "boundary"), tile=64)
FAST = TrainConfig(
    epochs=2,
    steps_per_epoch=15,
    batch_size=4,
    crop=64,
    lr=5e-3,
    warmup_steps=2,
    augment=False,
    device="cpu",
    precision="fp32",
)


@pytest.fixture(autouse=True)
def user_models(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(tmp_path / "user_models"))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    return [synthetic_nuclei(rng, (96, 96), 10) for _ in range(3)]


@pytest.fixture(scope="module")
def parent(data):
    """A tiny model trained briefly on correct labels, to fine-tune from."""
    cfg = TrainConfig(
        epochs=3,
        steps_per_epoch=25,
        batch_size=4,
        crop=64,
        lr=5e-3,
        warmup_steps=2,
        augment=False,
        device="cpu",
        precision="fp32",
    )
    items = [TrainingItem(img, lab, name=f"img{i}") for i, (img, lab) in enumerate(data[:2])]
    result = train(items, card=TINY, config=cfg, val_items=[TrainingItem(*data[2], name="val")])
    return result.model


def run(trainer):
    events = []
    gen = trainer.steps()
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events


def test_training_reduces_the_loss_and_the_model_loads(tmp_path, data):
    items = [TrainingItem(img, lab, name=f"img{i}") for i, (img, lab) in enumerate(data)]
    result, events = run(Trainer(items, card=TINY, config=FAST))
    losses = [e.info["loss"] for e in events if "kind" not in e.info]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert [e.info["epoch"] for e in events if e.info.get("kind") == "epoch"] == [0, 1]
    path = save_model(result.model, tmp_path / "m", result.card)
    back = load_model(path)
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(back(x), result.model(x))


def test_loss_ignores_unannotated_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 16, 16)
    target = (torch.rand(2, 2, 16, 16) > 0.5).float()
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, :8] = 1
    garbage = target.clone()
    garbage[:, :, 8:] = 1 - garbage[:, :, 8:]  # flip every label outside the region
    a = masked_loss(logits, target, mask)
    b = masked_loss(logits, garbage, mask)
    assert torch.equal(a, b)
    assert not torch.equal(
        masked_loss(logits, target, torch.ones_like(mask)), masked_loss(logits, garbage, torch.ones_like(mask))
    )


def test_crops_come_from_the_annotated_region_only(data):
    img, lab = data[0]
    region = np.zeros(lab.shape, bool)
    region[:40, :40] = True
    trainer = Trainer(
        [TrainingItem(img, lab, region, "a"), TrainingItem(*data[1], name="b")],
        card=TINY,
        config=FAST,
        val_items=[TrainingItem(*data[2], name="v")],
    )
    plane = trainer.train_planes[0]
    assert plane.region.sum() == 1600
    plane.image = plane.region[None].astype(np.float32) * 7  # the image now shows where the region is
    images, _, masks = _Sampler([plane], 32, 0.5, np.random.default_rng(0)).batch(64)
    # each crop's loss mask is exactly the checked region seen through the same window ...
    np.testing.assert_array_equal(masks, images / 7)
    # ... and every crop is centred on a checked pixel, so no crop is wasted on unchecked data
    assert (masks[:, 0, 16, 16] == 1).all()
    assert masks.sum() < 64 * 32 * 32  # crops near the region's edge do reach unchecked pixels, weighted 0


def test_checked_slices_of_a_stack(data):
    stack = np.stack([d[0] for d in data])
    labels = np.stack([d[1] for d in data])
    labels[1] = 0  # an unchecked slice with empty (wrong) labels
    trainer = Trainer([TrainingItem(stack, labels, [0, 2], "stack")], card=TINY, config=FAST)
    names = sorted(p.source for p in trainer.train_planes + trainer.val_planes)
    assert names == ["stack[0]", "stack[2]"]


def test_stop_returns_the_best_checkpoint(data, parent):
    items = [TrainingItem(img, lab, name=f"img{i}") for i, (img, lab) in enumerate(data)]
    trainer = Trainer(
        items,
        base=parent,
        config=TrainConfig(
            epochs=5, steps_per_epoch=5, batch_size=2, crop=64, augment=False, device="cpu", precision="fp32"
        ),
    )
    gen = trainer.steps()
    while True:
        event = next(gen)
        if event.info.get("kind") == "epoch":
            trainer.stop()
            break
    with pytest.raises(StopIteration) as stop:
        next(gen)
    result = stop.value.value
    assert result.stopped and len(result.history) == 1
    best = trainer._best_state
    for k, v in result.model.state_dict().items():
        torch.testing.assert_close(v, best[k])


def test_stop_in_the_first_step_keeps_the_parent(data, parent):
    trainer = Trainer([TrainingItem(*data[0], name="a")], base=parent, config=FAST)
    trainer.stop()
    result, events = run(trainer)
    assert events == [] and result.stopped and result.better is False
    for k, v in parent.state_dict().items():
        torch.testing.assert_close(result.model.state_dict()[k], v)


def test_quality_gate_says_worse_for_wrong_labels(data, parent):
    img, lab = data[0]
    wrong = np.where(lab > 0, 0, 1).astype(np.int32)  # background painted as one object, nuclei erased
    cfg = TrainConfig(
        epochs=2,
        steps_per_epoch=20,
        batch_size=4,
        crop=64,
        lr=5e-3,
        warmup_steps=2,
        augment=False,
        device="cpu",
        precision="fp32",
        patience=5,
    )
    result = train(
        [TrainingItem(img, wrong, name="wrong")],
        base=parent,
        config=cfg,
        val_items=[TrainingItem(*data[2], name="val")],
    )
    assert result.better is False
    assert "not better" in result.verdict()
    assert result.new_scores["dice"] < result.parent_scores["dice"]


def test_card_records_provenance(data, parent):
    result = train([TrainingItem(*data[0], name="cells-01")], base=parent, config=FAST, name="my-cells")
    card = result.card
    assert card.name == "my-cells" and card.parent == parent.card.name
    (image,) = card.training["images"]
    assert image["name"] == "cells-01" and len(image["sha256"]) == 16
    assert card.training["settings"]["seed"] == 0 and card.training["settings"]["crop"] == 64
    assert {"heldout_dice", "heldout_f1", "parent_heldout_dice", "parent_heldout_f1"} <= set(card.metrics)
    assert card.receptive_field["radius_99_px"] <= card.receptive_field["theoretical_radius_px"]  # measured


def test_bad_training_inputs(data, parent):
    img, lab = data[0]
    with pytest.raises(ValueError, match="nothing is annotated"):
        Trainer([TrainingItem(img, lab, [], "a")], base=parent, config=FAST)
    with pytest.raises(ValueError, match="nothing is annotated"):
        Trainer([TrainingItem(img, lab, np.zeros(lab.shape, bool), "a")], base=parent, config=FAST)
    with pytest.raises(ValueError, match="holds no objects"):
        Trainer([TrainingItem(img, np.zeros_like(lab), None, "a")], base=parent, config=FAST)
    with pytest.raises(ValueError, match=r"labels have shape \(96, 95\)"):
        Trainer([TrainingItem(img, lab[:, :95], None, "a")], base=parent, config=FAST)
    rgb = np.stack([img] * 3, -1)
    with pytest.raises(ValueError, match="takes 1 input channel"):
        Trainer([TrainingItem(rgb, lab, None, "a", "YXS")], base=parent, config=FAST)
    with pytest.raises(ValueError, match="base model to fine-tune, or a model card"):
        Trainer([TrainingItem(img, lab)])
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        TrainConfig(max_seconds=0)


def test_make_targets_boundary_separates_touching_objects():
    lab = np.zeros((6, 8), np.int32)
    lab[1:5, 1:4] = 1
    lab[1:5, 4:7] = 2
    t = make_targets(lab, TINY)
    assert t.shape == (2, 6, 8)
    assert t[1, 2, 3] == 1 and t[1, 2, 4] == 1  # both sides of the contact are boundary
    assert t[1, 2, 2] == 0 and t[0, 2, 2] == 1


def test_disk_full_while_saving_keeps_the_previous_model(tmp_path, parent, monkeypatch):
    path = save_model(parent, tmp_path / "keep")
    before = path.read_bytes()
    import safetensors.torch

    def full(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\x00" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError, match="No space left"):
        save_model(build_model(TINY), tmp_path / "keep")
    assert path.read_bytes() == before
    assert load_model(path).card == parent.card


def test_unwritable_target_folder(tmp_path, parent, monkeypatch):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if str(p) == str(locked) else real(p, m, **kw))
    with pytest.raises(PermissionError, match="no permission to write the model"):
        save_model(parent, locked / "m")
    locked.chmod(0o700)


def test_learning_rate_decays_within_a_time_budget(data, monkeypatch):
    import dataclasses
    import itertools
    import types

    import napari_unet.training.train as train_module

    # the trainer's clock moves 0.05 s each time it is read: the same steps on a busy machine
    ticks = itertools.count()
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(perf_counter=lambda: 0.05 * next(ticks)))
    cfg = dataclasses.replace(FAST, epochs=10_000, steps_per_epoch=5, max_seconds=3.0, patience=10_000)
    _, events = run(Trainer([TrainingItem(*data[0], name="a")], card=TINY, config=cfg))
    lrs = [e.info["lr"] for e in events if "lr" in e.info]
    assert len(lrs) >= 5  # enough steps to see the schedule
    # down toward 0 as the 3 s budget runs out; a schedule over the 50,000 steps the epochs
    # allow would still be at the full rate
    assert lrs[-1] < 0.15 * cfg.lr < max(lrs)


def test_kept_weights_are_the_moving_average(data, parent):
    import dataclasses

    w0 = {k: v.clone() for k, v in parent.state_dict().items()}
    item = [TrainingItem(*data[0], name="a")]
    averaged = Trainer(item, base=parent, config=dataclasses.replace(FAST, epochs=1, ema=0.9))
    run(averaged)
    raw = averaged.net.state_dict()
    kept = averaged._best_state
    key = next(k for k, v in w0.items() if v.dtype.is_floating_point and v.ndim == 4)
    moved_raw = (raw[key].cpu() - w0[key]).norm()
    moved_kept = (kept[key] - w0[key]).norm()
    assert 0 < moved_kept < moved_raw  # the average trails the raw weights, it does not equal them
    plain = Trainer(item, base=parent, config=dataclasses.replace(FAST, epochs=1, ema=0.0))
    run(plain)
    assert torch.equal(plain._best_state[key], plain.net.state_dict()[key].cpu())
    with pytest.raises(ValueError, match="ema must be in"):
        TrainConfig(ema=1.0)


def test_grouped_folds_never_put_an_acquisition_on_both_sides():
    """On the real folder list of the shipped model's training and validation images."""
    import json
    from pathlib import Path

    from napari_unet.training.data import grouped_folds

    card = json.loads((Path(__file__).parent.parent / "napari_unet" / "models" / "nuclei.json").read_text())
    names = [*card["training"]["images"], "2022-05-26_RPE1/v1", "2022-10-14_U2OS/v1", "2023-05-31_misc/v1"]
    groups = [n.split("/")[0] for n in names]
    folds = grouped_folds(groups)
    assert len(folds) == len(set(groups)) == 7
    held = sorted(i for _, test in folds for i in test)
    assert held == list(range(len(names)))  # each image held out exactly once
    for kept, test in folds:
        assert {groups[i] for i in kept}.isdisjoint({groups[i] for i in test})
        assert len({groups[i] for i in test}) == 1
    with pytest.raises(ValueError, match="two groups"):
        grouped_folds(["a", "a"])


def test_a_new_class_model_needs_every_class_drawn_and_only_its_classes():
    from napari_unet.networks.model import ModelCard
    from napari_unet.training.train import Trainer, TrainingItem

    card = ModelCard("lungs", arch_args={"features": [4, 8]}, classes=("background", "left", "right"),
                     activation="softmax", tile=64)  # fmt: skip
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    only_left = np.zeros((64, 64), np.int32)
    only_left[10:30, 5:25] = 1
    with pytest.raises(ValueError, match="no region of right is drawn"):
        Trainer([TrainingItem(img, only_left)], card=card, config=FAST)
    three = only_left.copy()
    three[40:50, 40:50] = 3
    with pytest.raises(ValueError, match="the labels hold class 3 but the model has 3 classes"):
        Trainer([TrainingItem(img, three)], card=card, config=FAST)


def test_a_time_budget_shorter_than_one_epoch_says_how_long_an_epoch_takes():
    from napari_unet.networks.model import ModelCard
    from napari_unet.training.train import TrainConfig, Trainer, TrainingItem

    card = ModelCard("n", arch_args={"features": [4, 8]}, classes=("foreground", "boundary"), tile=64)
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    lab = np.zeros((64, 64), np.int32)
    lab[10:30, 10:30] = 1
    config = TrainConfig(epochs=5, steps_per_epoch=100_000, max_seconds=0.5, crop=64, batch_size=2)
    trainer = Trainer([TrainingItem(img, lab)], card=card, config=config)
    with pytest.raises(ValueError, match=r"an epoch takes about \d+ s here; give at least \d+ s"):
        for _ in trainer.steps():
            pass


def test_microscopy_augmentation_adds_signal_beside_objects_never_on_them():
    from napari_unet.training.augment import _cytoplasm, augment

    fg = torch.zeros(8, 1, 64, 64)
    fg[:, :, 24:40, 24:40] = 1
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)

    signal = _cytoplasm(fg, rand, 0.6)
    assert signal.shape == fg.shape and float(signal[fg > 0].abs().max()) == 0.0  # never on a nucleus
    assert float(signal.max()) > 0 and float(signal.max()) <= 0.6  # some tiles get it, at most the strength
    x, y, m = fg.clone(), torch.cat([fg, fg], 1), torch.ones_like(fg)
    xa, ya, _ = augment(x, y, m, torch.Generator().manual_seed(1), level="microscopy")
    assert xa.shape == x.shape and ya.shape == y.shape and torch.isfinite(xa).all()
    with pytest.raises(ValueError, match="microscopy"):
        TrainConfig(augment="sideways")


def test_a_new_model_that_finds_nothing_yet_keeps_its_latest_weights():
    """While every epoch scores 0 on the held-out data (a new model of a rare lesion, its
    first epochs), the kept checkpoint is the latest, not the least trained first one."""
    card = ModelCard("lesion", arch_args={"features": [4, 8]}, classes=("background", "lesion"),
                     activation="softmax", tile=64)  # fmt: skip
    image, labels = np.zeros((64, 64), np.float32), np.zeros((64, 64), np.int32)
    image[20:40, 20:40], labels[20:40, 20:40] = 1.0, 1
    # held out: the class drawn where the image is plain background, so no epoch can score
    val_image, val_labels = np.zeros((64, 64), np.float32), np.zeros((64, 64), np.int32)
    val_image[5:15, 5:15], val_labels[40:60, 40:60] = 1.0, 1
    cfg = TrainConfig(epochs=3, steps_per_epoch=3, batch_size=2, crop=32, augment=False, device="cpu",
                      precision="fp32", ema=0)  # fmt: skip
    trainer = Trainer([TrainingItem(image, labels, name="a")], card=card, config=cfg,
                      val_items=[TrainingItem(val_image, val_labels, name="v")])  # fmt: skip
    result, _ = run(trainer)
    assert [h["val_dice"] for h in result.history] == [0.0, 0.0, 0.0]
    assert result.best_epoch == 2
    for k, v in result.model.state_dict().items():
        torch.testing.assert_close(v, trainer.net.state_dict()[k].cpu())


def test_early_stopping_waits_until_the_model_has_found_something(data, monkeypatch):
    """A new model whose best held-out score is a stray 0.0013 has found nothing yet: patience
    does not run out on it (a lesion model stopped itself after 95 of its 180 s so); once it has
    found something and stalls, it stops."""
    import itertools

    import napari_unet.training.train as train_module

    def run_with(scores):
        it = itertools.chain(scores, itertools.repeat(scores[-1]))  # (the result is scored once more)
        monkeypatch.setattr(
            train_module.Trainer, "evaluate", lambda self, model: {"dice": next(it), "f1": float("nan")}
        )
        cfg = TrainConfig(epochs=len(scores), steps_per_epoch=1, batch_size=2, crop=64, augment=False, device="cpu",
                          precision="fp32", patience=2, min_epochs=0, ema=0)  # fmt: skip
        trainer = Trainer([TrainingItem(*data[0], name="a"), TrainingItem(*data[1], name="b")], card=TINY, config=cfg)
        gen = trainer.steps()
        return [e.info["epoch"] for e in gen if e.info.get("kind") == "epoch"]

    assert run_with([0.0013, 0.0, 0.0, 0.0, 0.0, 0.0]) == [0, 1, 2, 3, 4, 5]
    assert run_with([0.5, 0.4, 0.4, 0.4, 0.4, 0.4]) == [0, 1, 2]


def test_filled_slices_are_learnt_with_their_own_weight_and_never_validated_on(data):
    """Slices filled by interpolation that nobody checked: in training with the weight the
    person chose (the loss mask carries it), out of validation, out of training at weight 0."""
    stack = np.stack([d[0] for d in data] * 2)
    labels = np.stack([d[1] for d in data] * 2)
    item = TrainingItem(stack, labels, [0, 2, 4], "stack", weights={1: 0.25, 3: 0.0, 4: 0.5})
    trainer = Trainer([item], card=TINY, config=FAST)
    train_names = {p.source: p.weight for p in trainer.train_planes}
    val_names = [p.source for p in trainer.val_planes]
    assert train_names["stack[1]"] == 0.25  # filled, weighted
    assert "stack[3]" not in train_names and "stack[3]" not in val_names  # weight 0: left out
    assert "stack[1]" not in val_names  # never validated on
    weights = {p.source: p.weight for p in [*trainer.train_planes, *trainer.val_planes]}
    assert weights.get("stack[4]", 1.0) == 1.0  # a checked slice keeps weight 1
    filled = next(p for p in trainer.train_planes if p.source == "stack[1]")
    _, _, masks = _Sampler([filled], 32, 0.5, np.random.default_rng(0)).batch(8)
    assert set(np.unique(masks).tolist()) == {0.0, 0.25}  # the loss mask is the weight (0 past the slice's edge)
    with pytest.raises(ValueError, match="weight of slice 1 must be from 0 to 1"):
        Trainer([TrainingItem(stack, labels, [0, 2], "stack", weights={1: 2.0})], card=TINY, config=FAST)
    with pytest.raises(ValueError, match="slice 9 given a weight is outside the stack"):
        Trainer([TrainingItem(stack, labels, [0, 2], "stack", weights={9: 0.5})], card=TINY, config=FAST)


def test_one_slice_with_objects_and_one_without_are_both_learnt_from(data):
    """A first model from one drawn lesion slice and one slice checked free of it: holding the
    lesion slice out whole for validation would leave nothing to learn the lesion from, so
    tiles of it are held out instead, never the one tile that holds every object."""
    img, lab = data[0]
    one = np.zeros_like(lab)
    one[lab == lab.max()] = 1  # a single object, in one tile
    stack = np.stack([img, data[1][0]])
    labels = np.stack([one, np.zeros_like(lab)])
    trainer = Trainer([TrainingItem(stack, labels, [0, 1], "two")], card=TINY, config=FAST)
    train = {p.source: p for p in trainer.train_planes}
    assert set(train) == {"two[0]", "two[1]"}
    lesion = train["two[0]"]
    assert (lesion.labels[lesion.region] > 0).sum() == (one > 0).sum()  # the whole object is learnt from
    (val,) = trainer.val_planes
    assert val.source == "two[0]" and val.region.any() and not (val.region & lesion.region).any()
