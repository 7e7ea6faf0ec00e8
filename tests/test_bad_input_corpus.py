"""Bad inputs on the newer surfaces (#32): NRRD headers that lie, files that inflate, and
evaluate's inputs out of range. Each is one sentence, read in bounded memory and time."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.io import ImageReadError, read_image
from tests.conftest import traced_peak


def _nrrd(path: Path, header: str, body: bytes) -> Path:
    path.write_bytes(f"NRRD0004\ntype: short\nendian: little\n{header}\n\n".encode() + body)
    return path


@pytest.mark.parametrize(
    "sizes",
    ["100000 100000 100000", "70000 70000 1", "-5 4 4", "4 4 4 4 4"],
)
def test_an_nrrd_header_promising_what_no_file_holds_is_refused(tmp_path, sizes):
    path = _nrrd(tmp_path / "huge.nrrd", f"dimension: {len(sizes.split())}\nsizes: {sizes}\nencoding: raw", b"\0" * 64)
    with pytest.raises(ImageReadError, match=r"promises .* voxels|only 2D and 3D") as err:
        read_image(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("target", ["../outside.raw", "/etc/hostname", "LIST 1"])
def test_an_nrrd_pointing_at_data_elsewhere_is_refused_without_reading_it(tmp_path, target):
    (tmp_path / "outside.raw").write_bytes(b"\1\0" * 32)
    folder = tmp_path / "scan"
    folder.mkdir()
    path = _nrrd(folder / "detached.nhdr.nrrd", f"dimension: 2\nsizes: 8 4\nencoding: raw\ndata file: {target}", b"")
    with pytest.raises(ImageReadError, match="detached NRRD header"):
        read_image(path)


def test_a_gzip_bomb_in_an_nrrd_inflates_no_further_than_its_header_promises(tmp_path):
    """256 MiB of zeros in a 256 KiB file, behind a header that promises 2x4x4 voxels."""
    body = gzip.compress(b"\0" * (256 << 20), compresslevel=9)
    assert len(body) < 1 << 20
    path = _nrrd(tmp_path / "bomb.nrrd", "dimension: 3\nsizes: 4 4 2\nencoding: gzip", body)
    image, peak = traced_peak(lambda: read_image(path))
    assert image.data.shape == (2, 4, 4) and not image.data.any()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB held while reading a 64-byte volume"


def test_a_damaged_gzip_nrrd_says_so(tmp_path):
    body = bytearray(gzip.compress(np.arange(32, dtype="<i2").tobytes()))
    body[12:20] = b"\xff" * 8
    path = _nrrd(tmp_path / "bad.nrrd", "dimension: 2\nsizes: 8 4\nencoding: gzip", bytes(body))
    with pytest.raises(ImageReadError, match=r"damaged|truncated") as err:
        read_image(path)
    assert "\n" not in str(err.value)


def _pair(folder: Path, name: str, pred: np.ndarray, truth: np.ndarray) -> None:
    (folder / "pred").mkdir(exist_ok=True)
    (folder / "truth").mkdir(exist_ok=True)
    tifffile.imwrite(folder / "pred" / f"{name}.tif", pred)
    tifffile.imwrite(folder / "truth" / f"{name}.tif", truth)


def test_evaluate_names_each_bad_pair_and_scores_the_good_ones(tmp_path, capsys):
    good = np.zeros((32, 32), np.uint8)
    good[4:12, 4:12] = 1
    _pair(tmp_path, "good", good, good)
    _pair(tmp_path, "shape", np.zeros((32, 32), np.uint8), np.zeros((40, 32), np.uint8))
    _pair(tmp_path, "negative", np.full((32, 32), -3, np.int16), good)
    _pair(tmp_path, "floats", np.full((32, 32), 0.5, np.float32), good)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth")]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert len(errors) == 3 and all(line.startswith("napari-unet: error: ") for line in errors)
    assert "(32, 32) differs from the truth's (40, 32)" in captured.err
    assert "holds the value -3" in captured.err and "float32 values" in captured.err
    assert "good" in captured.out and "Empty DataFrame" not in captured.out


def test_evaluate_of_empty_labels_says_there_is_no_class(tmp_path, capsys):
    _pair(tmp_path, "blank", np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8))
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth")]) == 0
    out = capsys.readouterr().out
    assert "per class: none" in out and "Empty DataFrame" not in out


def test_training_on_labels_with_nothing_drawn_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(tmp_path / "models"))
    tifffile.imwrite(tmp_path / "img.tif", np.random.default_rng(0).random((48, 48)).astype(np.float32))
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((48, 48), np.uint8))
    args = ["train", "--images", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "empty.tif"), "--out", "e"]
    assert main([*args, "--scratch", "--classes", "2", "--device", "cpu"]) == 1
    assert "holds no objects" in capsys.readouterr().err
    assert not (tmp_path / "models" / "e.safetensors").exists()
