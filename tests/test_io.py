from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.io import (
    ImageReadError,
    check_labels_shape,
    decode_color_labels,
    read_image,
    write_tiff,
)
from napari_unet.io.tiff import read_tiff
from tests.conftest import BAD_FILE_MESSAGES


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_single_image_dtypes(tmp_path, rng, dtype):
    data = (rng.random((17, 23)) * 100).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", data)
    img = read_image(tmp_path / "a.tif")
    assert img.axes == "YX" and img.data.dtype == dtype
    np.testing.assert_array_equal(img.data, data)
    assert img.scale == (1.0, 1.0) and img.units == ("pixel", "pixel")


def test_plain_multipage_stack_is_z(tmp_path, rng):
    data = rng.integers(0, 255, (6, 20, 30), dtype=np.uint8)
    path = tmp_path / "pages.tif"
    for page in data:
        tifffile.imwrite(path, page, append=True)
    img = read_image(path)
    assert img.axes == "ZYX" and img.shape == (6, 20, 30)
    np.testing.assert_array_equal(img.data, data)


def test_imagej_stack_scale(stack_path):
    img = read_image(stack_path)
    assert img.axes == "ZYX"
    assert img.scale == (2.0, 0.5, 0.5)
    assert img.units == ("micrometer",) * 3


def test_imagej_hyperstack_tzcyx(tmp_path, rng):
    data = rng.integers(0, 1000, (3, 4, 2, 16, 18), dtype=np.uint16)  # T Z C Y X
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "micron", "finterval": 30.0},
    )
    img = read_image(path)
    assert img.axes == "CTZYX" and img.shape == (2, 3, 4, 16, 18)
    np.testing.assert_array_equal(img.data, data.transpose(2, 0, 1, 3, 4))
    assert img.channel_axis == 0
    assert img.scale == (30.0, 1.5, 0.25, 0.25)
    assert img.units == ("second", "micrometer", "micrometer", "micrometer")


def test_ome_tiff(tmp_path, rng):
    data = rng.integers(0, 1000, (2, 3, 4, 16, 16), dtype=np.uint16)  # T C Z Y X
    path = tmp_path / "x.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 0.3,
            "PhysicalSizeY": 0.3,
            "PhysicalSizeZ": 1.2,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZUnit": "µm",
        },
    )
    img = read_image(path)
    assert img.axes == "CTZYX" and img.shape == (3, 2, 4, 16, 16)
    assert img.scale == pytest.approx((1.0, 1.2, 0.3, 0.3))
    assert img.units[1:] == ("micrometer",) * 3
    assert img.name == "x"


def test_rgb_tiff_and_png(tmp_path, rng):
    import imageio.v3 as iio

    data = rng.integers(0, 255, (12, 14, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", data, photometric="rgb")
    iio.imwrite(tmp_path / "rgb.png", data)
    for name in ("rgb.tif", "rgb.png"):
        img = read_image(tmp_path / name)
        assert img.axes == "YXS" and img.rgb and img.scale == (1.0, 1.0)
        np.testing.assert_array_equal(img.data, data)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_other_2d_formats(tmp_path, rng, suffix):
    import imageio.v3 as iio

    data = rng.integers(0, 255, (32, 40), dtype=np.uint8)
    iio.imwrite(tmp_path / f"xray{suffix}", data)
    img = read_image(tmp_path / f"xray{suffix}")
    assert img.axes == "YX" and img.shape == (32, 40)


def test_bigtiff(tmp_path, rng):
    data = rng.integers(0, 1000, (3, 20, 20), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", data, bigtiff=True, photometric="minisblack")
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.is_bigtiff
    np.testing.assert_array_equal(read_image(tmp_path / "big.tif").data, data)


def test_lazy_open_reads_only_what_is_asked(tmp_path, rng):
    """Above the threshold a stack opens as dask; its last page is corrupt, yet slice 0 reads."""
    import dask.array as da

    data = rng.integers(0, 60000, (6, 64, 64), dtype=np.uint16)
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, data, compression="zlib", photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[-1]
        offset, count = last.dataoffsets[0], last.databytecounts[0]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + count] = b"\xff" * count  # the last slice can no longer be decoded
    path.write_bytes(bytes(raw))

    img = read_image(path, lazy_threshold=1000)
    assert img.lazy and isinstance(img.data, da.Array) and img.axes == "ZYX"
    np.testing.assert_array_equal(np.asarray(img.data[0]), data[0])
    np.testing.assert_array_equal(np.asarray(img.data[4]), data[4])
    with pytest.raises(Exception):  # noqa: B017 - proves the eager path would have failed
        np.asarray(img.data[5])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(path, lazy=False)


def test_lazy_imagej_hyperstack_axes(tmp_path, rng):
    data = rng.integers(0, 1000, (3, 2, 16, 18), dtype=np.uint16)  # Z C Y X
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    img = read_image(path, lazy=True)
    assert img.lazy and img.axes == "CZYX"
    np.testing.assert_array_equal(np.asarray(img.data), data.transpose(1, 0, 2, 3))


@pytest.mark.parametrize("name", sorted(BAD_FILE_MESSAGES))
def test_bad_files_have_clear_messages(bad_files, name):
    path = bad_files[name]
    with pytest.raises((ValueError, OSError)) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message, "the message must name the file"
    assert BAD_FILE_MESSAGES[name] in message


def test_unreadable_file(unreadable):
    with pytest.raises(PermissionError, match="no permission to read"):
        read_image(unreadable)


def test_labels_shape_mismatch(stack_path):
    img = read_image(stack_path)
    check_labels_shape((5, 40, 50), img)
    with pytest.raises(ValueError, match=r"labels have shape \(5, 40, 49\).*\(5, 40, 50\)"):
        check_labels_shape((5, 40, 49), img, labels_path="cells_labels.tif")


def test_write_labels_round_trip_keeps_scale(tmp_path, stack_path):
    img = read_image(stack_path)
    labels = np.zeros(img.shape, np.int64)
    labels[1, 5:10, 5:10] = 1
    labels[3, 20:30, 10:20] = 300
    out = write_tiff(tmp_path / "cells_labels.tif", labels, axes="ZYX", scale=img.scale, units=img.units, labels=True)
    back = read_image(out)
    assert back.is_labels and back.data.dtype == np.uint16
    np.testing.assert_array_equal(back.data, labels)
    assert back.scale == img.scale and back.units == img.units
    with tifffile.TiffFile(out) as tif:  # ImageJ/Fiji sees a compressed hyperstack with calibration
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um" and tif.imagej_metadata["spacing"] == 2.0
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE


def test_write_many_labels_uses_uint32(tmp_path):
    labels = np.arange(70000, dtype=np.int64).reshape(280, 250)
    out = write_tiff(tmp_path / "many_labels.tif", labels, labels=True)
    back = read_image(out)
    assert back.data.dtype == np.uint32 and back.is_labels
    np.testing.assert_array_equal(back.data, labels)


def test_write_labels_refuses_bad_values(tmp_path):
    with pytest.raises(ValueError, match=">= 0"):
        write_tiff(tmp_path / "x_labels.tif", np.array([[-1, 0]]), labels=True)
    with pytest.raises(ValueError, match="whole numbers"):
        write_tiff(tmp_path / "x_labels.tif", np.array([[0.5, 0]]), labels=True)
    assert not list(tmp_path.iterdir()), "a refused write leaves no file behind"


def test_write_is_atomic(tmp_path, monkeypatch):
    """A write that dies half-way leaves the old file as it was, and no temporary file."""
    target = tmp_path / "mask.tif"
    write_tiff(target, np.ones((8, 8), np.uint8))
    before = target.read_bytes()

    def crash(path, *args, **kwargs):
        Path(path).write_bytes(b"II*\x00half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", crash)
    with pytest.raises(OSError, match="No space left"):
        write_tiff(target, np.zeros((8, 8), np.uint8))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["mask.tif"]


def test_written_file_has_normal_permissions(tmp_path):
    out = write_tiff(tmp_path / "a.tif", np.zeros((4, 4), np.uint8))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_to_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_tiff(tmp_path / "nope" / "a.tif", np.zeros((4, 4), np.uint8))


def test_decode_color_labels():
    m = np.zeros((3, 4, 4), np.uint8)
    m[0, :2] = (200, 10, 10, 255)
    m[2, 3] = (200, 10, 10, 255)  # the same colour elsewhere is the same object
    m[1, 1] = (0, 0, 255, 128)
    m[2, 0] = (0, 255, 0, 0)  # transparent: background whatever its colour
    labels = decode_color_labels(m)
    np.testing.assert_array_equal(labels, [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 1]])
    assert decode_color_labels(np.zeros((2, 2, 4), np.uint8)).max() == 0
    with pytest.raises(ValueError, match="RGB or RGBA"):
        decode_color_labels(np.zeros((2, 2)))


def test_sample_data_is_real(sample_image_path):
    img = read_tiff(sample_image_path)
    labels = read_image(str(sample_image_path).replace(".tif", "_labels.tif"))
    assert labels.is_labels and labels.shape == img.shape
    assert 5 <= len(np.unique(labels.data)) - 1 <= 20


def test_one_units_table_says_each_length_the_same_way_everywhere():
    """The dock's tables said 'nanometer' where the command line's and TIFF headers said 'nm'."""
    from napari_unet.io._units import _UNIT_NAMES, short_unit

    for spelling, canonical in _UNIT_NAMES.items():
        assert short_unit(spelling) == short_unit(canonical)
    assert [short_unit(u) for u in ("micron", "nanometer", "millimeter", "pixel", "", None)] == [
        "um", "nm", "mm", "px", "px", "px"
    ]  # fmt: skip
