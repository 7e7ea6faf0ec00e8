"""The dock uses the axes the reader stored (#27): a TYX movie is a movie, not a Z stack."""

from __future__ import annotations

import numpy as np
import tifffile

from napari_unet._widgets._common import image_axes
from napari_unet._widgets._step import workflow_for
from napari_unet._widgets.predict_widget import PredictWidget
from tests._qt.test_widgets import wait_for


def test_a_movie_opened_by_the_reader_keeps_its_time_axis(make_napari_viewer, registry, qtbot, tmp_path):
    rng = np.random.default_rng(0)
    movie = (rng.random((3, 64, 64)) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "movie.tif", movie, imagej=True, metadata={"axes": "TYX"})
    viewer = make_napari_viewer()
    [layer] = viewer.open(tmp_path / "movie.tif", plugin="napari-unet")
    assert image_axes(layer) == "TYX"
    plain = viewer.add_image(movie.copy(), name="no axes stored")
    assert image_axes(plain) == "ZYX"  # nothing stored: guessed from the number of dimensions, as before
    widget = PredictWidget(viewer)
    widget.image.value, widget.model.value, widget.device.value = layer, "tiny", "cpu"
    assert widget.run() is not None
    wait_for(qtbot, widget)
    work = workflow_for(viewer).find(layer)
    assert work.axes == "TYX" and widget.prediction.written == [0, 1, 2]


def test_stored_axes_that_do_not_fit_the_layer_are_not_trusted(make_napari_viewer):
    viewer = make_napari_viewer()
    stack = np.zeros((4, 32, 32), np.uint16)
    wrong = viewer.add_image(stack, name="wrong", metadata={"axes": "YX"})  # (another plugin's, or stale)
    assert image_axes(wrong) == "ZYX"
    split = viewer.add_image(stack, name="one channel", metadata={"axes": "CZYX"})  # a channel given its own layer
    assert image_axes(split) == "ZYX"
    rgb = viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="rgb", rgb=True, metadata={"axes": "YXS"})
    assert image_axes(rgb) == "YXS"
