"""The command line's answers to inputs a new user gets wrong (#32): each is one sentence, said
before any training, and a model of the person's is never replaced unasked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.io import write_tiff
from tests.conftest import synthetic_nuclei

SAMPLES = Path(__file__).parents[1] / "napari_unet" / "sample_data"


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """One small image with its labels, and an empty user model folder."""
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(tmp_path / "models"))
    img, lab = synthetic_nuclei(np.random.default_rng(3), (64, 72), 6)
    write_tiff(tmp_path / "img.tif", img)
    write_tiff(tmp_path / "img_labels.tif", (lab > 0).astype(np.uint8), labels=True)  # one class
    return str(tmp_path / "img.tif"), str(tmp_path / "img_labels.tif")


def _train(pair: tuple[str, str], *extra: str) -> int:
    return main(["train", "--images", pair[0], "--labels", pair[1], "--scratch", "--classes", "2", "--width", "4",
                 "--depth", "2", "--crop", "32", "--epochs", "1", "--device", "cpu", *extra])  # fmt: skip


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("napari-unet: error: "), err
    return lines[0]


def test_a_shipped_models_name_is_refused_before_training(pair, tmp_path, capsys):
    assert _train(pair, "--out", "nuclei") == 1
    assert "shipped model's name" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())


def test_a_model_of_yours_is_replaced_only_with_overwrite(pair, tmp_path, capsys):
    assert _train(pair, "--out", "mine") == 0
    first = (tmp_path / "models" / "mine.safetensors").read_bytes()
    capsys.readouterr()
    assert _train(pair, "--out", "mine") == 1
    line = _one_line(capsys.readouterr().err)
    assert "exists already" in line and "--overwrite" in line
    assert (tmp_path / "models" / "mine.safetensors").read_bytes() == first
    assert _train(pair, "--out", "mine", "--overwrite", "--seed", "7") == 0
    assert (tmp_path / "models" / "mine.safetensors").read_bytes() != first
    assert not list((tmp_path / "models").glob("*.saving"))  # the reservation is gone after the run


def test_two_runs_saving_one_name_at_once_the_second_is_refused(pair, tmp_path, capsys):
    from napari_unet.networks.model import reserved_name

    models = tmp_path / "models"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        models.mkdir()
        (models / "shared.saving").write_text(str(holder.pid))  # a training in another process holds it
        assert _train(pair, "--out", "shared") == 1
        assert "another run (process" in _one_line(capsys.readouterr().err)
        assert not (models / "shared.safetensors").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without cleaning up: its reservation is taken over
    assert _train(pair, "--out", "shared") == 0
    assert (models / "shared.safetensors").is_file() and not (models / "shared.saving").exists()
    with reserved_name(models / "other"):  # in one process too
        with pytest.raises(ValueError, match="another run"):
            with reserved_name(models / "other"):
                pass


def test_images_and_labels_of_different_shapes_say_both_shapes(pair, capsys):
    ct, rpe1_labels = str(SAMPLES / "ct_lung1.tif"), str(SAMPLES / "rpe1_2022-05-25_1_labels.tif")
    assert main(["train", "--images", ct, "--labels", rpe1_labels, "--scratch", "--classes", "2", "--out", "x"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "768x869" in line and "12x512x512" in line and "class" not in line
    # an RGB image's colour samples are not a spatial axis: 64x72 RGB with its 64x72 labels trains
    import imageio.v3 as iio

    rgb = Path(pair[0]).with_name("rgb.png")
    iio.imwrite(rgb, np.random.default_rng(0).integers(0, 255, (64, 72, 3), dtype=np.uint8))
    common = ["--scratch", "--classes", "2", "--width", "4", "--depth", "2", "--crop", "32", "--epochs", "1",
              "--device", "cpu"]  # fmt: skip
    assert main(["train", "--images", str(rgb), "--labels", pair[1], *common, "--out", "rgb"]) == 0
    capsys.readouterr()
    bad = Path(pair[0]).with_name("small_labels.tif")
    write_tiff(bad, np.ones((60, 72), np.uint8), labels=True)
    assert main(["train", "--images", str(rgb), "--labels", str(bad), *common, "--out", "rgb2"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "is 60x72 but" in line and "is 64x72 (YX)" in line


def test_negative_slice_numbers_say_slices_start_at_zero(pair, capsys):
    for form in (["--annotated", "-1,5"], ["--annotated=-1,5"]):
        assert _train(pair, *form, "--out", "x") in (1, 2)
        assert "slice numbers start at 0" in _one_line(capsys.readouterr().err)
    assert main(["predict", pair[0], "--out", "o", "--follow", pair[1], "--annotated", "-2"]) in (1, 2)
    assert "slice numbers start at 0" in _one_line(capsys.readouterr().err)


def test_many_classes_drawn_nowhere_are_counted_not_listed(pair, capsys):
    assert main(["train", "--images", pair[0], "--labels", pair[1], "--scratch", "--classes", "300", "--out", "x",
                 "--device", "cpu"]) == 1  # fmt: skip
    line = _one_line(capsys.readouterr().err)
    assert "298 of the 299 classes are drawn nowhere" in line and "class_2, class_3, class_4" in line
    assert "class_100" not in line and len(line) < 300


def test_import_name_with_a_path_is_refused(tmp_path, monkeypatch, capsys):
    pytest.importorskip("bioimageio.core")
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(tmp_path / "models"))
    from tests.test_exchange import _foreign_package

    package = _foreign_package(tmp_path, "onnx")
    for name in ("../../evilname", "a/b", "..", "x\\y"):
        assert main(["import", str(package), "--name", name]) == 1
        assert "holds a path" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").rglob("*.safetensors"))
    assert not (tmp_path / "evilname.safetensors").exists()


class _Code:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_refused_pickle_is_one_sentence_without_torchs_explanation(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from napari_unet.networks.model import ModelCard

    torch.save({"weights": _Code()}, tmp_path / "evil.pt")
    (tmp_path / "evil.json").write_text(ModelCard("evil", arch_args={"features": [4, 8]}).to_json())
    write_tiff(tmp_path / "img.tif", np.zeros((32, 32), np.uint8))
    assert main(["predict", str(tmp_path / "img.tif"), "--model", str(tmp_path / "evil.pt"), "--out", "o"]) == 1
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert "holds pickled objects or code" in line and "weights_only" not in line and "(1)" not in line
    assert "Warning" not in captured.err
