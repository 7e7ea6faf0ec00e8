"""Any image, any classes: RGB, CT windows, multi-class semantic models, whole-image mode,
the evaluate report, overlays and the 'unlike the training data' warning."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from napari_unet._synthetic import he_tile, lateral_phantom
from napari_unet.cli import main
from napari_unet.engine.planes import apply_limits, clips, normalise_plane, plane_limits
from napari_unet.io import read_image, write_tiff
from napari_unet.networks.architectures import ARCHITECTURES, arch_args_for
from napari_unet.networks.model import ModelCard, build_model, load_model, save_model


@pytest.fixture(autouse=True)
def _registry(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(tmp_path / "registry"))


# --------------------------------------------------------------------------- normalisation


def test_zscore_matches_hand_computed_values():
    plane = np.array([[[1.0, 2.0], [3.0, 6.0]]], np.float32)  # mean 3, population std sqrt(3.5)
    out = normalise_plane(plane, {"kind": "zscore"})
    np.testing.assert_allclose(out, (plane - 3.0) / np.sqrt(3.5), rtol=1e-6)


def test_ct_window_matches_hand_computed_values_and_clips():
    hu = np.array([[[-1000, -600, 150, 3000]]], np.int16)
    out = normalise_plane(hu, {"kind": "window", "preset": "lung"})  # level -600, width 1500: -1350..150
    np.testing.assert_allclose(out[0, 0], [350 / 1500, 750 / 1500, 1.0, 1.0], rtol=1e-6)
    soft = normalise_plane(hu, {"kind": "window", "level": 40, "width": 400})  # -160..240
    np.testing.assert_allclose(soft[0, 0], [0.0, 0.0, 310 / 400, 1.0], rtol=1e-6)


def test_dataset_normalisation_is_computed_at_training_and_stored(tmp_path):
    from napari_unet.training.train import TrainConfig, Trainer, TrainingItem

    image, labels = he_tile(0, 96)
    card = ModelCard("ds", in_channels=3, classes=("foreground", "boundary"), normalisation={"kind": "dataset"},
                     arch_args={"features": [4, 8]})  # fmt: skip
    trainer = Trainer([TrainingItem(image, labels, None, "he", "YXS")], card=card,
                      config=TrainConfig(epochs=1, steps_per_epoch=1, crop=64, batch_size=1))  # fmt: skip
    norm = trainer.card.normalisation
    expected = image.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(norm["mean"], expected.mean(0), rtol=1e-4)
    np.testing.assert_allclose(norm["std"], expected.std(0), rtol=1e-4)
    lo, hi = plane_limits(np.zeros((3, 4, 4), np.float32), norm)[1]
    assert lo == pytest.approx(norm["mean"][1]) and hi - lo == pytest.approx(norm["std"][1])


@pytest.mark.parametrize(
    "norm, message",
    [
        ({"kind": "window", "preset": "kidney"}, "unknown CT window"),
        ({"kind": "window", "level": 40}, "needs a level and a width"),
        ({"kind": "percentile", "low": 99, "high": 1}, "low < high"),
        ({"kind": "sqrt"}, "unknown normalisation"),
    ],
)
def test_bad_normalisation_is_refused_with_its_reason(norm, message):
    with pytest.raises(ValueError, match=message):
        ModelCard("bad", normalisation=norm)


def test_window_clip_is_applied_in_the_tile_engine_too():
    assert clips({"kind": "window", "preset": "bone"}) and not clips({"kind": "percentile"})
    plane = np.array([[[-2000.0, 0.0, 5000.0]]], np.float32)
    out = apply_limits(plane, [(-100.0, 100.0)], clip=True)
    np.testing.assert_array_equal(out[0, 0], [0.0, 0.5, 1.0])


# --------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_trains_a_step_on_rgb_with_three_classes(arch):
    from napari_unet.training.train import TrainConfig, Trainer, TrainingItem

    image, _ = he_tile(1, 64)
    _, lateral = lateral_phantom(1, 64)
    depth = 5 if arch == "unetpp" else 3
    card = ModelCard(f"t-{arch}", architecture=arch, arch_args=arch_args_for(arch, 4, depth), in_channels=3,
                     classes=("background", "a", "b"), activation="softmax")  # fmt: skip
    items = [TrainingItem(image, lateral.astype(np.int32), None, f"x{i}", "YXS") for i in range(2)]
    trainer = Trainer(items, card=card, config=TrainConfig(epochs=1, steps_per_epoch=1, crop=64, batch_size=2))
    from napari_unet.jobs import run_to_end

    result = run_to_end(trainer.steps())
    assert result.history and np.isfinite(result.history[0]["loss"])
    assert set(result.new_scores["classes"]) == {"1", "2"}
    import torch

    with torch.inference_mode():  # the trained network gives 3 class scores for an RGB image
        assert tuple(result.model(torch.zeros(1, 3, 32, 32)).shape) == (1, 3, 32, 32)


def test_unetpp_depth_is_fixed_and_says_so():
    with pytest.raises(ValueError, match="unetpp always has 5 levels"):
        arch_args_for("unetpp", 16, 4)


# --------------------------------------------------------------------------- the CLI, end to end


@pytest.fixture
def lateral_data(tmp_path):
    folders = {k: tmp_path / k for k in ("train", "train_labels", "test", "test_labels")}
    for f in folders.values():
        f.mkdir()
    for i in range(6):
        image, labels = lateral_phantom(i, 160)
        write_tiff(folders["train"] / f"p{i}.tif", image)
        write_tiff(folders["train_labels"] / f"p{i}_labels.tif", labels, labels=True)
    for i in range(100, 103):
        image, labels = lateral_phantom(i, 160)
        write_tiff(folders["test"] / f"p{i}.tif", image)
        write_tiff(folders["test_labels"] / f"p{i}_labels.tif", labels, labels=True)
    return folders


def _train_lateral(folders, *extra):
    images = sorted(str(p) for p in folders["train"].iterdir())
    labels = sorted(str(p) for p in folders["train_labels"].iterdir())
    return main(["train", "--scratch", "--classes", "3", "--class-names", "left_lung,right_lung", "--no-flips",
                 "--input-size", "64", "--width", "8", "--depth", "4", "--images", *images, "--labels", *labels,
                 "--epochs", "3", "--device", "cpu", *extra])  # fmt: skip


def test_cli_round_trip_train_predict_evaluate(lateral_data, tmp_path, capsys):
    assert _train_lateral(lateral_data, "--out", "lungs") == 0
    card = load_model("lungs").card
    assert card.classes == ("background", "left_lung", "right_lung") and card.activation == "softmax"
    assert card.input_size == 64 and card.flips is False and card.in_channels == 1
    assert set(card.metrics["heldout_classes"]) == {"1", "2"}
    history = card.training["history"]
    assert len(history) >= 1 and set(history[0]["val_dice_per_class"]) == {"left_lung", "right_lung"}
    assert card.input_stats["foreground"][1] > 0
    out = tmp_path / "pred"
    assert main(["predict", str(lateral_data["test"]), "--model", "lungs", "--out", str(out), "--overlay",
                 "--truth", str(lateral_data["test_labels"]), "--device", "cpu"]) == 0  # fmt: skip
    prob, mask = read_image(out / "p100_prob.tif"), read_image(out / "p100_mask.tif")
    assert prob.shape == (3, 160, 160)  # resized back from the network's 64x64
    np.testing.assert_allclose(prob.data.sum(0), 1.0, atol=1e-3)
    assert mask.data.dtype == np.uint8 and set(np.unique(mask.data)) <= {0, 1, 2}
    overlay = read_image(out / "p100_overlay.png")
    assert overlay.shape == (160, 160, 3) and overlay.rgb
    report = tmp_path / "report.json"
    capsys.readouterr()
    main(["evaluate", "--pred", str(out), "--truth", str(lateral_data["test_labels"]), "--json", str(report)])
    text = capsys.readouterr().out
    assert "per class" in text and "pixel_accuracy" in text
    data = json.loads(report.read_text())
    assert data["kind"] == "semantic" and len(data["images"]) == 3
    assert set(data["mean"]["classes"]) == {"1", "2"}
    assert set(data["mean"]["classes"]["1"]) == {"dice", "iou", "precision", "recall"}
    assert 0 <= data["mean"]["pixel_accuracy"] <= 1


def test_a_class_swap_scores_as_the_error_it_is(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    _, labels = lateral_phantom(5, 96)
    swapped = np.where(labels == 1, 2, np.where(labels == 2, 1, 0)).astype(np.uint8)
    write_tiff(pred / "a_mask.tif", swapped, labels=True)
    write_tiff(truth / "a_labels.tif", labels, labels=True)
    report = tmp_path / "r.json"
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--json", str(report)]) == 0
    mean = json.loads(report.read_text())["mean"]
    assert mean["classes"]["1"]["dice"] == 0.0 and mean["classes"]["2"]["dice"] == 0.0
    assert mean["pixel_accuracy"] < 0.9
    assert mean["dice"] == 1.0  # the foreground alone cannot see the swap: that is why classes are scored


def test_evaluate_mean_row_is_aligned(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    for i in range(2):
        _, labels = he_tile(i, 96)
        write_tiff(pred / f"t{i}_mask.tif", labels, labels=True)
        write_tiff(truth / f"t{i}_labels.tif", labels, labels=True)
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--kind", "instance"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, mean = lines[0].split(), next(line for line in lines if line.startswith(" MEAN") or line.startswith("MEAN"))
    values = dict(zip(header, mean.split()))
    assert values["f1_50"] == "1.000" and values["mAP"] == "1.000" and values["pixel_accuracy"] == "1.000"
    n_true = sum(len(np.unique(he_tile(i, 96)[1])) - 1 for i in range(2))
    assert values["n_true"] == str(n_true) and values["n_pred"] == str(n_true)


def test_flips_are_off_for_lateral_models_and_kept_by_a_fine_tune(lateral_data, tmp_path):
    assert _train_lateral(lateral_data, "--out", "lungs2", "--epochs", "1") == 0
    images = sorted(str(p) for p in lateral_data["train"].iterdir())[:2]
    labels = sorted(str(p) for p in lateral_data["train_labels"].iterdir())[:2]
    assert main(["train", "--base", "lungs2", "--images", *images, "--labels", *labels, "--out", "lungs3",
                 "--epochs", "1", "--device", "cpu"]) == 0  # fmt: skip
    assert load_model("lungs3").card.flips is False and load_model("lungs3").card.parent == "lungs2"


def test_rgb_model_from_the_cli_and_counting_per_class(tmp_path, capsys):
    images, labels = tmp_path / "he", tmp_path / "he_labels"
    images.mkdir(), labels.mkdir()
    for i in range(3):
        rgb, lab = he_tile(i, 96)
        import imageio.v3 as iio

        iio.imwrite(images / f"he{i}.png", rgb)
        write_tiff(labels / f"he{i}_labels.tif", lab, labels=True)
    assert main(["train", "--scratch", "--images", *sorted(map(str, images.iterdir())), "--labels",
                 *sorted(map(str, labels.iterdir())), "--out", "he", "--epochs", "2", "--width", "8", "--depth", "3",
                 "--crop", "64", "--device", "cpu"]) == 0  # fmt: skip
    card = load_model("he").card
    assert card.in_channels == 3 and card.kind == "instance"
    out = tmp_path / "out"
    assert main(["predict", str(images / "he0.png"), "--model", "he", "--out", str(out), "--device", "cpu"]) == 0
    assert read_image(out / "he0_prob.tif").shape == (2, 96, 96)


def test_count_gives_a_class_column_for_a_semantic_model(tmp_path, capsys):
    import torch

    card = ModelCard("sem", classes=("background", "left_lung", "right_lung"), activation="softmax",
                     arch_args={"features": [4, 8]})  # fmt: skip
    torch.manual_seed(0)
    net = build_model(card)
    path = save_model(net, tmp_path / "sem", card)
    image, _ = lateral_phantom(2, 64)
    write_tiff(tmp_path / "x.tif", image)
    out = tmp_path / "counted"
    assert main(["count", str(tmp_path / "x.tif"), "--model", str(path), "--out", str(out), "--device", "cpu"]) == 0
    import pandas as pd

    objects = pd.read_csv(out / "x_objects.csv")
    assert "class" in objects.columns and set(objects["class"]) <= {"left_lung", "right_lung"}
    counts = pd.read_csv(out / "x_counts.csv")
    assert list(counts["class"]) == ["left_lung", "right_lung"]
    assert counts["count"].sum() == len(objects)


# --------------------------------------------------------------------------- overlays and warnings


def test_mismatch_warning_fires_for_the_nuclei_model_on_an_xray(tmp_path, capsys):
    image, _ = lateral_phantom(7, 256)
    write_tiff(tmp_path / "chest.tif", image)
    assert main(["predict", str(tmp_path / "chest.tif"), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "unlike the images model 'nuclei' was trained on" in err


def test_no_mismatch_warning_on_the_nuclei_samples():
    import napari_unet
    from napari_unet._sample_data import NUCLEI_SAMPLES, sample_paths

    model = napari_unet.load_model()
    for key in NUCLEI_SAMPLES:
        image_path, _ = sample_paths(key)
        result = napari_unet.segment(model, read_image(image_path).data, objects=False, device="cpu")
        assert result.warnings == ()


def test_overlay_draws_prediction_and_truth_in_their_colours():
    from napari_unet.objects.report import PALETTE, TRUTH_COLOUR, overlay

    rgb = np.zeros((20, 20, 3), np.uint8)
    mask = np.zeros((20, 20), np.uint8)
    mask[2:8, 2:8] = 1
    truth = np.zeros((20, 20), np.uint8)
    truth[10:18, 10:18] = 1
    out = overlay(rgb, mask, truth)
    assert tuple(out[2, 4]) == PALETTE[0] and tuple(out[10, 12]) == TRUTH_COLOUR and tuple(out[5, 5]) == (0, 0, 0)


# --------------------------------------------------------------------------- reading


def _nrrd(path, data, encoding="gzip", header_extra=""):
    body = data.astype("<i2").tobytes()
    if encoding == "gzip":
        body = gzip.compress(body)
    sizes = " ".join(str(n) for n in data.shape[::-1])
    head = (f"NRRD0004\ntype: short\ndimension: {data.ndim}\nspace: left-posterior-superior\nsizes: {sizes}\n"
            f"space directions: (0.5,0,0) (0,0.5,0) (0,0,2.5)\nendian: little\nencoding: {encoding}\n{header_extra}\n")  # fmt: skip
    path.write_bytes(head.encode() + body)


@pytest.mark.parametrize("encoding", ["gzip", "raw"])
def test_nrrd_volume_reads_as_zyx_with_its_spacing(tmp_path, encoding):
    data = np.arange(3 * 5 * 7, dtype=np.int16).reshape(3, 5, 7) - 1000
    _nrrd(tmp_path / "ct.nrrd", data, encoding)
    img = read_image(tmp_path / "ct.nrrd")
    assert img.axes == "ZYX" and img.scale == (2.5, 0.5, 0.5) and img.units[0] == "millimeter"
    np.testing.assert_array_equal(img.data, data)


def test_bad_nrrd_files_are_refused_with_a_reason(tmp_path):
    from napari_unet.io import ImageReadError

    data = np.zeros((2, 4, 4), np.int16)
    _nrrd(tmp_path / "short.nrrd", data, "raw")
    raw = (tmp_path / "short.nrrd").read_bytes()
    (tmp_path / "short.nrrd").write_bytes(raw[:-10])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "short.nrrd")
    (tmp_path / "fake.nrrd").write_text("hello, not a volume\n")
    with pytest.raises(ImageReadError, match="not an NRRD file"):
        read_image(tmp_path / "fake.nrrd")
    _nrrd(tmp_path / "bz.nrrd", data, "bzip2")
    with pytest.raises(ImageReadError, match="encoding 'bzip2' is not supported"):
        read_image(tmp_path / "bz.nrrd")


def test_an_xray_saved_as_rgb_with_equal_channels_reads_as_gray(tmp_path):
    import imageio.v3 as iio

    image, _ = lateral_phantom(1, 64)
    iio.imwrite(tmp_path / "xray.png", np.repeat(image[..., None], 3, axis=-1))
    img = read_image(tmp_path / "xray.png")
    assert img.axes == "YX" and "read as a grayscale image" in img.metadata["note"]
    np.testing.assert_array_equal(img.data, image)
    colour, _ = he_tile(1, 64)
    iio.imwrite(tmp_path / "he.png", colour)
    assert read_image(tmp_path / "he.png").axes == "YXS"


def test_multichannel_model_takes_the_channels_it_was_trained_on():
    import napari_unet

    card = ModelCard("mc", in_channels=2, channels=[2, 0], classes=("foreground", "boundary"),
                     arch_args={"features": [4, 8]})  # fmt: skip
    net = build_model(card)
    image = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    result = napari_unet.segment(net, image, axes="CYX", device="cpu", objects=False)
    net.card = card.replace(channels=None)  # the same network fed the two channels by hand
    direct = napari_unet.segment(net, image[[2, 0]], axes="CYX", device="cpu", objects=False)
    np.testing.assert_array_equal(result.probabilities, direct.probabilities)
    net.card = card
    with pytest.raises(ValueError, match=r"model 'mc': the model takes channel\(s\) \[2, 0\], but the image has 2"):
        napari_unet.segment(net, image[:2], axes="CYX", device="cpu")


# --------------------------------------------------------------------------- bad inputs


def test_labels_with_more_classes_than_asked_are_refused(lateral_data, capsys):
    images = sorted(str(p) for p in lateral_data["train"].iterdir())[:2]
    labels = sorted(str(p) for p in lateral_data["train_labels"].iterdir())[:2]
    assert main(["train", "--scratch", "--classes", "2", "--images", *images, "--labels", *labels, "--out", "x",
                 "--epochs", "1"]) == 1  # fmt: skip
    assert "labels hold class 2 but --classes 2 allows 0..1; give --classes 3" in capsys.readouterr().err


def test_class_names_that_do_not_match_are_refused(lateral_data, capsys):
    images = sorted(str(p) for p in lateral_data["train"].iterdir())[:1]
    labels = sorted(str(p) for p in lateral_data["train_labels"].iterdir())[:1]
    assert main(["train", "--scratch", "--classes", "3", "--class-names", "left_lung", "--images", *images,
                 "--labels", *labels, "--out", "x", "--epochs", "1"]) == 1  # fmt: skip
    assert "1 class name(s) given (left_lung) but 3 classes need 2" in capsys.readouterr().err


def test_rgb_image_given_to_a_one_channel_model_names_both(tmp_path, capsys):
    import imageio.v3 as iio

    colour, _ = he_tile(3, 64)
    iio.imwrite(tmp_path / "slide.png", colour)
    assert main(["predict", str(tmp_path / "slide.png"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "slide.png" in err and "model 'nuclei'" in err and "takes 1 input channel(s) but the image has RGB" in err


def test_input_size_not_divisible_by_the_network_factor_is_refused(lateral_data, capsys):
    images = sorted(str(p) for p in lateral_data["train"].iterdir())[:1]
    labels = sorted(str(p) for p in lateral_data["train_labels"].iterdir())[:1]
    assert main(["train", "--scratch", "--classes", "3", "--input-size", "100", "--images", *images, "--labels",
                 *labels, "--out", "x", "--epochs", "1"]) == 1  # fmt: skip
    assert "input size 100 is not a multiple of 16" in capsys.readouterr().err


def test_new_model_options_without_scratch_are_refused(lateral_data, capsys):
    images = sorted(str(p) for p in lateral_data["train"].iterdir())[:1]
    labels = sorted(str(p) for p in lateral_data["train_labels"].iterdir())[:1]
    assert main(["train", "--images", *images, "--labels", *labels, "--out", "x", "--normalize", "zscore"]) == 1
    assert "add --scratch" in capsys.readouterr().err.lower()


def test_bad_normalize_text_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--scratch", "--images", "a", "--labels", "b", "--out", "x", "--normalize", "window:kidney"])
    assert "unknown CT window 'kidney'" in capsys.readouterr().err


def test_evaluate_reads_a_predict_folder_as_predict_wrote_it(tmp_path, capsys):
    """Beside the masks a predict folder holds probabilities and overlays: they are not
    predictions to score; a 0/1 mask's connected regions are its objects."""
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    _, labels = he_tile(4, 96)
    write_tiff(pred / "t_mask.tif", (labels > 0).astype(np.uint8), labels=True)
    write_tiff(pred / "t_prob.tif", np.zeros((2, 96, 96), np.float32), axes="CYX")
    import imageio.v3 as iio

    iio.imwrite(pred / "t_overlay.png", np.zeros((96, 96, 3), np.uint8))
    write_tiff(truth / "t_labels.tif", labels, labels=True)
    report = tmp_path / "r.json"
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--kind", "instance", "--json",
                 str(report)]) == 0  # fmt: skip
    assert "skipped" not in capsys.readouterr().err
    mean = json.loads(report.read_text())["mean"]
    assert mean["dice"] == 1.0 and mean["n_pred"] >= 0.8 * mean["n_true"]


def test_a_25d_model_trains_and_predicts_a_stack(tmp_path, capsys):
    rng = np.random.default_rng(0)
    stack = rng.normal(-700, 40, (6, 64, 64)).astype(np.int16)
    stack[:, :6] = -1000  # air
    stack[:, -4:] = 700  # bone
    labels = np.zeros((6, 64, 64), np.uint8)
    for z in (2, 3):
        stack[z, 20:30, 20:30] = 40
        labels[z, 20:30, 20:30] = 1
    write_tiff(tmp_path / "ct.tif", stack, axes="ZYX")
    write_tiff(tmp_path / "ct_labels.tif", labels, axes="ZYX", labels=True)
    assert main(["train", "--scratch", "--classes", "2", "--class-names", "lesion", "--context", "1", "--images",
                 str(tmp_path / "ct.tif"), "--labels", str(tmp_path / "ct_labels.tif"), "--annotated", "2,3,0,5",
                 "--out", "ct25", "--epochs", "1", "--width", "4", "--depth", "3", "--crop", "32",
                 "--device", "cpu"]) == 0  # fmt: skip
    card = load_model("ct25").card
    assert card.context == 1 and card.in_channels == 3 and card.image_channels == 1
    assert card.normalisation["kind"] == "window" and card.normalisation["preset"] == "lung"  # guessed from HU
    assert main(["predict", str(tmp_path / "ct.tif"), "--model", "ct25", "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 0  # fmt: skip
    assert read_image(tmp_path / "o" / "ct_prob.tif").shape == (2, 6, 64, 64)


def test_lesion_crops_centre_on_the_rare_class():
    """A class that covers 0.1% of the slices is the centre of about half the crops."""
    from napari_unet.training.data import _item_planes, _Sampler

    labels = np.zeros((4, 128, 128), np.int32)
    labels[1, 60:64, 60:64] = 1
    card = ModelCard("rare", classes=("background", "lesion"), activation="softmax")
    item = __import__("napari_unet.training.train", fromlist=["TrainingItem"]).TrainingItem(
        np.random.default_rng(0).random((4, 128, 128)).astype(np.float32), labels, None, "x", "ZYX"
    )
    sampler = _Sampler(_item_planes(item, card), 32, 0.6, np.random.default_rng(0))
    _, y, _ = sampler.batch(200)
    share = float((y[:, 1, 16, 16] > 0).mean())  # the crop's centre pixel is lesion
    assert 0.45 < share < 0.75


def test_crops_also_centre_on_the_false_positives_of_the_last_epoch():
    from napari_unet.training.data import _item_planes, _Sampler
    from napari_unet.training.train import TrainingItem

    labels = np.zeros((2, 96, 96), np.int32)
    labels[0, 40:44, 40:44] = 1
    card = ModelCard("rare", classes=("background", "lesion"), activation="softmax")
    image = np.random.default_rng(1).random((2, 96, 96)).astype(np.float32)
    planes = _item_planes(TrainingItem(image, labels, None, "x", "ZYX"), card)
    sampler = _Sampler(planes, 16, 0.5, np.random.default_rng(0))
    spot = np.ravel_multi_index((80, 10), (96, 96))  # a vessel the model took for a lesion, say
    sampler.set_hard_negatives([(1, np.array([spot])), (0, np.array([], int))])
    x, _, _ = sampler.batch(400)
    at_spot = np.isclose(x[:, 0, 8, 8], planes[1].image[0, 80, 10])  # the crop's centre pixel is the hard negative
    assert 0.15 < at_spot.mean() < 0.4  # about half of the half not centred on the lesion
