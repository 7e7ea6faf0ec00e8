"""The plugin inside a real napari viewer (under Xvfb): discovery, reader, writer, samples."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet.io import read_image
from tests.conftest import BAD_FILE_MESSAGES


def test_manifest_is_discovered():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-unet")
    assert manifest.contributions.readers and manifest.contributions.writers
    assert {s.key for s in manifest.contributions.sample_data} == {"rpe1", "u2os", "misc", "ct"}


def test_open_hyperstack_gives_channel_layers_with_scale(make_napari_viewer, tmp_path, rng):
    path = tmp_path / "cells.tif"
    data = rng.integers(0, 1000, (3, 2, 24, 20), dtype=np.uint16)  # Z C Y X
    tifffile.imwrite(
        path, data, imagej=True, resolution=(1 / 0.2, 1 / 0.2), metadata={"axes": "ZCYX", "spacing": 1.5, "unit": "um"}
    )
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-unet")
    assert [layer.name for layer in layers] == ["cells [ch0]", "cells [ch1]"]
    for c, layer in enumerate(layers):
        assert layer.data.shape == (3, 24, 20)
        np.testing.assert_array_equal(layer.data, data[:, c])
        np.testing.assert_allclose(layer.scale, (1.5, 0.2, 0.2))
        assert [str(u) for u in layer.units] == ["micrometer"] * 3


def test_open_stack_and_rgb(make_napari_viewer, stack_path, tmp_path, rng):
    rgb = tmp_path / "fundus.png"
    import imageio.v3 as iio

    iio.imwrite(rgb, rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    viewer = make_napari_viewer()
    (stack,) = viewer.open(stack_path, plugin="napari-unet")
    assert stack.data.shape == (5, 40, 50) and tuple(stack.scale) == (2.0, 0.5, 0.5)
    (photo,) = viewer.open(rgb, plugin="napari-unet")
    assert photo.rgb and photo.data.shape == (30, 40, 3)


def test_lazy_stack_opens_as_dask(make_napari_viewer, tmp_path, rng, monkeypatch):
    import dask.array as da

    import napari_unet.io

    monkeypatch.setattr(napari_unet.io, "LAZY_THRESHOLD", 1000)
    monkeypatch.setattr(napari_unet.io.read_image, "__kwdefaults__", {"lazy": None, "lazy_threshold": 1000})
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, rng.integers(0, 1000, (8, 64, 64), dtype=np.uint16), photometric="minisblack")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin="napari-unet")
    assert isinstance(layer.data, da.Array)
    viewer.dims.set_point(0, 7)  # scrolling reads the slice in view


def test_ome_zarr_store_opens_lazily_with_its_calibration(make_napari_viewer, tmp_path, rng):
    import dask.array as da

    from napari_unet.io.ome_zarr import write_ome_zarr

    probs = rng.random((2, 3, 40, 50)).astype(np.float32)
    path = write_ome_zarr(tmp_path / "cells_prob.zarr", probs, axes="CZYX", scale=(2.0, 0.5, 0.5), units="um")
    mask = write_ome_zarr(tmp_path / "cells_mask.zarr", (probs[0] > 0.5).astype(np.uint8), axes="ZYX")
    viewer = make_napari_viewer()
    layers = viewer.open(str(path) + "/", plugin="napari-unet")  # a file dialog may add the slash
    assert [la.name for la in layers] == ["cells_prob [ch0]", "cells_prob [ch1]"]
    assert isinstance(layers[0].data, da.Array) and tuple(layers[0].scale) == (2.0, 0.5, 0.5)
    (labels,) = viewer.open(mask, plugin="napari-unet")
    assert type(labels).__name__ == "Labels" and labels.data.shape == (3, 40, 50)


def test_labels_file_opens_as_labels(make_napari_viewer, tmp_path):
    path = tmp_path / "cells_labels.tif"
    tifffile.imwrite(path, np.arange(16, dtype=np.uint16).reshape(4, 4))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin="napari-unet")
    assert type(layer).__name__ == "Labels"


@pytest.mark.parametrize("name", ["not_tiff", "empty", "truncated", "ragged", "complex"])
def test_bad_file_notifies_user(make_napari_viewer, bad_files, errors, name):
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match="returned no data"):  # napari's own follow-up
        viewer.open(bad_files[name], plugin="napari-unet")
    assert errors, "the user must see a notification"
    assert str(bad_files[name]) in errors[0] and BAD_FILE_MESSAGES[name] in errors[0]
    assert len(viewer.layers) == 0


def test_good_files_open_beside_a_bad_one(make_napari_viewer, bad_files, stack_path, errors):
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match="returned no data"):
        viewer.open([str(stack_path), str(bad_files["not_tiff"])], plugin="napari-unet", stack=False)
    assert [layer.name for layer in viewer.layers] == ["stack"]
    assert len(errors) == 1


@pytest.mark.parametrize("key", ["rpe1", "u2os", "misc"])
def test_sample_data_loads_image_and_labels(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", key)
    image, labels = viewer.layers
    assert type(image).__name__ == "Image" and type(labels).__name__ == "Labels"
    assert image.data.shape == labels.data.shape
    assert labels.data.max() >= 5


def test_ct_sample_keeps_hounsfield_units_and_shows_the_lung_window(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "ct")
    image, labels = viewer.layers
    assert image.data.dtype == np.int16 and image.data.min() < -900  # air, in HU
    assert tuple(image.contrast_limits) == (-1350.0, 150.0)
    assert image.data.shape == labels.data.shape == (12, 512, 512)
    assert [z for z in range(12) if labels.data[z].any()] == [5, 6, 7]


def test_writer_saves_labels_layer(make_napari_viewer, tmp_path, stack_path):
    viewer = make_napari_viewer()
    (image,) = viewer.open(stack_path, plugin="napari-unet")
    labels = np.zeros(image.data.shape, np.int32)
    labels[2, 10:20, 10:30] = 7
    layer = viewer.add_labels(labels, name="cells", scale=image.scale, metadata=dict(image.metadata))
    out = tmp_path / "saved_labels.tif"
    written = layer.save(str(out), plugin="napari-unet")
    assert written == [str(out)]
    back = read_image(out)
    assert back.is_labels and back.scale == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(back.data, labels)


def test_a_ct_volume_opens_in_hounsfield_units_with_the_lung_window(make_napari_viewer, tmp_path):
    import gzip

    data = np.full((3, 16, 16), -1000, np.int16)
    data[:, 4:12, 4:12] = 40
    data[:, 0, :] = 900
    head = ("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 16 16 3\n"
            "space directions: (0.7,0,0) (0,0.7,0) (0,0,5)\nendian: little\nencoding: gzip\n\n")  # fmt: skip
    (tmp_path / "chest.nrrd").write_bytes(head.encode() + gzip.compress(data.tobytes()))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "chest.nrrd"), plugin="napari-unet")
    assert layer.data.dtype == np.int16 and int(layer.data.min()) == -1000  # values kept in HU
    assert tuple(layer.contrast_limits) == (-1350.0, 150.0)
    assert tuple(np.round(layer.scale, 3)) == (5.0, 0.7, 0.7)
