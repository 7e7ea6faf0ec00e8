"""The dock widgets in a real napari viewer: values set, callbacks called, workers awaited."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from napari_unet._widgets._step import labels_work, workflow_for
from napari_unet._widgets.correct_widget import CorrectWidget
from napari_unet._widgets.count_widget import SHOWN, CountWidget
from napari_unet._widgets.dock import UNetDock
from napari_unet._widgets.predict_widget import PredictWidget
from napari_unet._widgets.train_widget import TrainWidget
from napari_unet.training.train import TrainConfig
from tests._qt.conftest import wait_for


def mark_checked(viewer, layer, slices):
    """Slices a person checked, as the Correct step records them."""
    work = labels_work(workflow_for(viewer), layer)
    for z in slices:
        work.mark_checked(z)
    return work


FAST = TrainConfig(epochs=2, steps_per_epoch=4, batch_size=2, crop=64, augment=False, device="cpu", precision="fp32")


def test_predict_with_no_image_says_so(make_napari_viewer, registry, errors):
    widget = PredictWidget(make_napari_viewer())
    assert widget.run() is None
    assert "open or choose an image layer" in errors[-1]


def test_predict_a_stack(make_napari_viewer, registry, stack, qtbot):
    import torch

    from napari_unet.engine import process

    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells", scale=(2, 0.5, 0.5))
    widget = PredictWidget(viewer)
    widget.model.value = "tiny"
    widget.device.value = "cpu"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # napari's process as some other plugin left it
    process._untune_cpu_allocator()  # (as before any job; earlier tests in this process ran some)
    try:
        assert widget.run() is not None
        wait_for(qtbot, widget)
        # the job ran with every core and the tuned allocator, and gave both back
        assert torch.get_num_threads() == 1 and not process.allocator_tuned()
    finally:
        torch.set_num_threads(threads)
    prob, labels = viewer.layers["cells probability"], viewer.layers["cells labels"]
    assert not prob.visible and prob.data.shape == stack[0].shape
    work = workflow_for(viewer).find(prob)
    assert work.probabilities.shape == (2, *stack[0].shape)
    assert work.role_of(prob) == "probability" and work.role_of(labels) == "labels"
    assert work.settings.threshold == widget.threshold.value and work.card.name == "tiny"
    assert labels.data.shape == stack[0].shape and tuple(labels.scale) == (2, 0.5, 0.5)
    assert "done: 4 slice(s)" in widget.status.value
    # ready to correct: the labels on top of the probabilities, and the selected layer
    assert viewer.layers.index(labels) > viewer.layers.index(prob) and viewer.layers.selection.active is labels
    assert_drawing_tools_ready(viewer, labels)


def assert_drawing_tools_ready(viewer, labels):
    """The Labels layer's paint and polygon overlays, deferred while the layer was added,
    are shown again and drawn by the canvas, so napari's paint and polygon tools work."""
    from napari_unet._widgets._common import TOOL_OVERLAYS

    drawn = viewer.window._qt_viewer.canvas._layer_overlay_to_visual[labels]
    for name in TOOL_OVERLAYS:
        overlay = labels._overlays[name]
        assert overlay.visible and overlay in drawn, name
    labels.mode = "polygon"
    assert labels._overlays["polygon"].enabled


def test_predict_only_the_slice_in_view(make_napari_viewer, registry, stack, qtbot, errors):
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    viewer.dims.set_point(0, 2)
    widget = PredictWidget(viewer)
    widget.model.value, widget.device.value, widget.scope.value = "tiny", "cpu", "slice in view"
    widget.threshold.value = 0.05  # the untrained tiny model gives ~0.5 everywhere: make it find something
    assert widget.run() is not None, errors
    wait_for(qtbot, widget)
    assert not errors
    assert "cells probability" in viewer.layers, (widget.status.value, [la.name for la in viewer.layers])
    prob = viewer.layers["cells probability"].data
    assert prob[2].max() > 0 and prob[[0, 1, 3]].max() == 0


def test_the_advanced_form_averages_flips_and_turns(make_napari_viewer, registry, stack, qtbot, errors):
    """Ticking the advanced box shows the test-time augmentation choice; ticked, the slice
    in view is predicted as predict(tta=True) predicts it."""
    from napari_unet.engine.predict import predict
    from napari_unet.networks.model import load_model

    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    viewer.dims.set_point(0, 0)
    widget = PredictWidget(viewer)
    widget.model.value, widget.device.value, widget.scope.value = "tiny", "cpu", "slice in view"
    assert widget.more.tta.native.isHidden()  # (the widget is not docked: asked of Qt, not magicgui)
    widget.advanced.value = True
    assert not widget.more.tta.native.isHidden()
    widget.more.tile.value, widget.more.overlap.value, widget.more.tta.value = 96, 0.25, True
    assert widget.run() is not None, errors
    wait_for(qtbot, widget)
    assert not errors
    shown = viewer.layers["cells probability"].data[0]
    expected = predict(load_model("tiny"), stack[0][0], device="cpu", tile=96, overlap=0.25, tta=True)
    np.testing.assert_allclose(shown, expected[0], atol=0.02)  # (the dock's precision is auto)
    plain = predict(load_model("tiny"), stack[0][0], device="cpu", tile=96, overlap=0.25)
    assert np.abs(shown - plain[0]).max() > np.abs(shown - expected[0]).max()


def test_cancel_keeps_finished_slices(make_napari_viewer, registry, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    n = 60
    viewer.add_image(rng.random((n, 128, 128)).astype(np.float32), name="big")
    widget = PredictWidget(viewer)
    widget.model.value, widget.device.value = "tiny", "cpu"
    widget.more.tile.value, widget.more.batch.value = 64, 1
    assert widget.run() is not None
    # results appear while the job runs: layers at once, finished slices written as they come
    qtbot.waitUntil(lambda: len(widget.prediction.written) >= 2, timeout=60_000)
    assert widget.worker is not None and viewer.layers["big probability"].data[0].any()
    widget.cancel()
    wait_for(qtbot, widget)
    assert "cancelled: kept" in widget.status.value
    prob = viewer.layers["big probability"].data
    done = [z for z in range(n) if prob[z].any()]
    assert 2 <= len(done) < n and done == list(range(len(done)))


def test_cancel_before_the_prediction_starts(make_napari_viewer, registry, stack, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    widget = PredictWidget(viewer)
    widget.model.value, widget.device.value = "tiny", "cpu"
    worker = widget.run()
    widget.cancel()  # in the same event-loop turn: the result layers are not even built yet
    wait_for(qtbot, widget)
    assert not worker.is_running and widget.status.value == "cancelled; nothing was finished"
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert not viewer.layers["cells labels"].data.any()
    assert_drawing_tools_ready(viewer, viewer.layers["cells labels"])


def test_rgb_image_for_a_grayscale_model(make_napari_viewer, registry, errors, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), name="photo", rgb=True)
    widget = PredictWidget(viewer)
    widget.model.value, widget.device.value = "tiny", "cpu"
    widget.run()
    wait_for(qtbot, widget)
    assert any("convert the image to grayscale" in e for e in errors)


def test_a_broken_model_file(make_napari_viewer, registry, errors):
    (registry / "broken.safetensors").write_bytes(b"\x00" * 50)
    (registry / "broken.json").write_text((registry / "tiny.json").read_text())
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="img")
    widget = PredictWidget(viewer)
    widget.reset_choices()
    widget.model.value = "broken"
    assert widget.run() is None
    assert "truncated or corrupt" in errors[-1]


def test_correct_mark_delete_merge_undo_and_autosave(make_napari_viewer, registry, stack, tmp_path):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(stack[1].copy(), name="cells labels")
    widget = CorrectWidget(viewer)
    widget.labels_layer.value = labels
    viewer.dims.set_point(0, 1)
    widget.mark_checked()
    assert widget.work.checked_slices() == [1] and widget.checked.choices == ("1",)
    assert widget.session.exists() and widget.session.load()[1] == [1]
    # delete object 3 through napari's history, then undo it
    target = int(stack[1][1][stack[1][1] > 0][0])
    labels.selected_label = target
    widget.delete_selected()
    assert not (labels.data == target).any()
    labels.undo()
    assert (labels.data == target).any()
    ids = [i for i in np.unique(stack[1][1]) if i][:2]
    widget.merge_a.value, widget.merge_b.value = int(ids[0]), int(ids[1])
    widget.merge()
    assert not (labels.data == ids[0]).any()
    assert widget.has_unsaved_changes() and widget.autosave()
    saved, checked, _ = widget.session.load()
    np.testing.assert_array_equal(saved, labels.data)
    assert checked == [1]


def test_restore_offers_saved_corrections(make_napari_viewer, registry, stack):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(stack[1].copy(), name="cells labels")
    widget = CorrectWidget(viewer)
    widget.labels_layer.value = labels
    viewer.dims.set_point(0, 0)
    widget.mark_checked()
    labels.data_setitem(np.nonzero(labels.data == labels.data.max()), 0)
    widget.autosave()
    expected = labels.data.copy()
    viewer.layers.remove(labels)
    fresh = viewer.add_labels(stack[1].copy(), name="cells labels")
    widget.labels_layer.value = fresh
    assert widget.restore_button.enabled
    assert widget.restore()
    np.testing.assert_array_equal(fresh.data, expected)
    assert widget.work.checked_slices() == [0]


def test_close_with_unsaved_work_asks(make_napari_viewer, registry, stack, monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    viewer = make_napari_viewer()
    labels = viewer.add_labels(stack[1].copy(), name="cells labels")
    widget = CorrectWidget(viewer)
    widget.labels_layer.value = labels
    labels.data_setitem(np.nonzero(labels.data == 1), 0)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Save)
    assert widget.confirm_close() and asked
    assert widget.session.exists() and not widget.has_unsaved_changes()


def test_finetune_needs_checked_data(make_napari_viewer, registry, stack, errors):
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    viewer.add_labels(stack[1], name="cells labels")
    widget = TrainWidget(viewer)
    widget.base.value = "tiny"
    assert widget.run(config=FAST) is None
    assert "nothing is checked yet" in errors[-1]


def test_finetune_runs_reports_and_registers(make_napari_viewer, registry, stack, errors, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    labels = viewer.add_labels(stack[1].copy(), name="cells labels")  # (napari keeps the array it is given)
    mark_checked(viewer, labels, [0, 2])
    predict = PredictWidget(viewer)
    predict.device.value = "cpu"
    widget = TrainWidget(viewer)
    widget.base.value = "tiny"
    widget.model_name.value = "my-cells"
    assert widget.run(config=FAST) is not None
    assert widget.run(config=FAST) is None and "already running" in errors[-1]
    wait_for(qtbot, widget, 120_000)
    assert widget.result is not None and "held-out checked data" in widget.verdict.value
    assert len(widget.curve.dice) >= 1 and widget.curve.loss
    widget.use_anyway.value = True  # (a 2-epoch model on 4 slices may well not beat its parent)
    assert widget.use_model() == "my-cells" and (registry / "my-cells.safetensors").exists()
    assert predict.model.value == "my-cells"  # one call switched the model of every step
    predict.status.value = "untouched"
    worker = widget.repredict()
    assert worker is not None
    wait_for(qtbot, widget)
    assert "re-predicted: done: 2 slice(s); 2 checked slice(s) kept" in widget.status.value
    assert predict.status.value == "untouched"  # a workflow call: the Predict step is not involved
    np.testing.assert_array_equal(labels.data[[0, 2]], stack[1][[0, 2]])  # checked slices untouched
    assert not np.array_equal(labels.data[[1, 3]], stack[1][[1, 3]])  # the others were predicted again


def test_stop_training_keeps_the_best(make_napari_viewer, registry, stack, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    mark_checked(viewer, viewer.add_labels(stack[1], name="cells labels"), [0, 1, 2])
    widget = TrainWidget(viewer)
    widget.base.value = "tiny"
    worker = widget.run(
        config=TrainConfig(
            epochs=50, steps_per_epoch=3, batch_size=2, crop=64, augment=False, device="cpu", precision="fp32"
        )
    )
    worker.yielded.connect(lambda e: e.info.get("kind") == "epoch" and widget.stop())
    wait_for(qtbot, widget, 120_000)
    result = widget.result
    assert result.stopped and len(result.history) <= 2
    assert result.history[-1]["step"] <= 3 + 2  # stopped within a step or two of the request, not 150 steps later


def test_count_table_export_and_click(make_napari_viewer, registry, stack, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    labels = viewer.add_labels(stack[1], name="cells labels")
    widget = CountWidget(viewer)
    widget.labels_layer.value = labels
    widget.image.value = viewer.layers["cells"]
    widget.min_area.value = 0
    widget.run()
    import time

    from qtpy.QtCore import QCoreApplication, Qt

    t0 = time.time()
    while widget.worker is not None and time.time() - t0 < 60:
        QCoreApplication.processEvents()
    _, table = widget.result
    n_true = sum(len(np.unique(s)) - 1 for s in stack[1])
    assert len(table) == n_true and widget.table_model.rowCount() == n_true
    contours = viewer.layers["cells labels contours"]
    assert len(contours.data) == n_true and "area" in contours.features and contours.visible
    assert "in the stack" in widget.summary.value
    out = widget.export_csv(tmp_path / "objects.csv")
    assert len(pd.read_csv(out)) == n_true
    widget._row_clicked(0)
    assert labels.selected_label == widget.table_model.row_values(0)["id"]
    # sorting by a column (a header click) sorts the rows; a click then goes to the row shown
    widget.table.sortByColumn(SHOWN.index("area"), Qt.SortOrder.DescendingOrder)
    areas = [widget.table_model.row_values(r)["area"] for r in range(n_true)]
    assert areas == sorted(table["area"], reverse=True)
    widget._row_clicked(0)
    biggest = table.loc[table["area"].idxmax()]
    assert labels.selected_label == biggest["id"] and viewer.dims.current_step[0] == biggest["slice"]
    shown = widget.table_model.data(widget.table_model.index(0, SHOWN.index("area")))
    assert shown == pytest.approx(biggest["area"], rel=1e-5)
    saved = widget.save_labels(tmp_path / "cells_labels.tif")
    from napari_unet.io import read_image

    np.testing.assert_array_equal(read_image(saved).data, stack[1])
    # counting again replaces the contours layer; the button stays off until all is shown
    labels.data = np.where(stack[1] == 1, 0, stack[1])
    widget.run()
    assert not widget.count_button.enabled
    while widget.worker is not None and time.time() - t0 < 120:
        QCoreApplication.processEvents()
    assert widget.count_button.enabled and widget.export_button.enabled
    n_now = sum(len(np.unique(s)) - 1 for s in labels.data)
    assert [la.name for la in viewer.layers].count("cells labels contours") == 1
    assert len(viewer.layers["cells labels contours"].data) == n_now == widget.table_model.rowCount() < n_true
    assert viewer.layers["cells labels contours"].visible
    assert not any("(new)" in la.name for la in viewer.layers)


def test_count_from_a_probability_map(make_napari_viewer, registry, tmp_path, errors, qtbot):
    """A probability map opened from a file: thresholded, split into objects, which become a
    Labels layer to correct; contours, table, row clicks and Save labels use that layer."""
    from tests.conftest import synthetic_nuclei

    rng = np.random.default_rng(3)
    pairs = [synthetic_nuclei(rng, (96, 96), 8, radius=(5, 7)) for _ in range(2)]
    truth = np.stack([p[1] for p in pairs])
    separate = np.stack([ndi_erode(t) for t in truth])  # objects that do not touch: one each
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([p[0] for p in pairs]), name="cells")
    prob = viewer.add_image(np.where(separate > 0, 0.9, 0.05).astype(np.float32), name="cells_prob")
    viewer.add_labels(np.zeros_like(truth), name="other labels")
    widget = CountWidget(viewer)
    choices = [c for c in widget.labels_layer.choices]
    assert choices == [viewer.layers["other labels"], prob]  # labels first; raw images are not offered
    widget.labels_layer.value, widget.image.value, widget.min_area.value = prob, viewer.layers["cells"], 5
    widget.run()
    wait_for(qtbot, widget)
    assert not errors, errors
    counted = viewer.layers["cells_prob objects"]
    n = sum(len(np.unique(s)) - 1 for s in separate)
    _, table = widget.result
    assert widget.counted is counted and len(table) == n == sum(len(np.unique(c)) - 1 for c in counted.data)
    for z in range(2):  # every object found where it is
        assert set(np.unique(counted.data[z][separate[z] > 0])) - {0} and not counted.data[z][separate[z] == 0].any()
    assert len(viewer.layers["cells_prob objects contours"].data) == n
    assert table["mean_intensity"].min() > 300  # measured on the image, not on the probabilities
    from napari_unet.objects.pipeline import Settings, objects

    # made into objects where the pipeline makes them (it split the thresholded map by itself before)
    np.testing.assert_array_equal(counted.data, objects(prob.data[None], None, Settings(min_area=5)))
    widget._row_clicked(0)
    assert counted.selected_label == widget.table_model.row_values(0)["id"]
    from napari_unet.io import read_image

    np.testing.assert_array_equal(read_image(widget.save_labels(tmp_path / "objects.tif")).data, counted.data)

    # counted again: the objects layer is replaced, not duplicated
    widget.run()
    wait_for(qtbot, widget)
    assert [la.name for la in viewer.layers].count("cells_prob objects") == 1

    # values that are not probabilities (edited after opening): a sentence, no layers touched
    prob.data[0, 0, 0] = 7.0
    widget.run()
    wait_for(qtbot, widget)
    assert "not probabilities (0 to 1)" in errors[-1] and "choose a labels layer" in errors[-1]
    assert [la.name for la in viewer.layers].count("cells_prob objects") == 1


def ndi_erode(labels, iterations=2):
    from scipy import ndimage as ndi

    out = labels.copy()
    for i in np.unique(labels)[1:]:
        out[(labels == i) & ~ndi.binary_erosion(labels == i, iterations=iterations)] = 0
    return out


def test_count_from_the_predicted_probabilities_uses_the_model_card(make_napari_viewer, registry, stack, qtbot):
    from napari_unet.objects.count import count_iter

    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    predict = PredictWidget(viewer)
    predict.model.value, predict.device.value = "nuclei", "cpu"  # the shipped model: it finds the nuclei
    predict.run()
    wait_for(qtbot, predict)
    prob = viewer.layers["cells probability"]
    work = workflow_for(viewer).find(prob)
    assert work.card.name == "nuclei" and "distance" in work.card.classes
    widget = CountWidget(viewer)
    assert prob in list(widget.labels_layer.choices)
    widget.labels_layer.value = prob
    widget.run()
    wait_for(qtbot, widget)
    assert widget.min_area.value == work.settings.min_area  # the areas Predict used
    gen = count_iter(work.probabilities, kind="probability", card=work.card, settings=work.settings)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        expected, _ = stop.value
    assert expected.max() > 0  # objects were found, so the comparison says something
    np.testing.assert_array_equal(viewer.layers["cells probability objects"].data, expected)
    # the card's distance channel was used: splitting the thresholded foreground gives other objects
    gen = count_iter(work.probabilities[0] > work.settings.threshold, kind="mask", min_area=work.settings.min_area)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        by_mask, _ = stop.value
    assert not np.array_equal(by_mask, expected)


def test_count_empty_mask_and_bad_areas(make_napari_viewer, registry, errors, qtbot):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((40, 40), np.int32), name="empty")
    widget = CountWidget(viewer)
    widget.labels_layer.value = labels
    widget.min_area.value, widget.max_area.value = 50, 10
    assert widget.run() is None and "larger than max area" in errors[-1]
    widget.max_area.value = 0
    widget.run()
    wait_for(qtbot, widget)
    assert len(widget.result[1]) == 0 and widget.summary.value == "0 objects"


def test_the_dock_holds_the_five_steps(make_napari_viewer, registry):
    viewer = make_napari_viewer()
    dock = UNetDock(viewer)
    viewer.window.add_dock_widget(dock, name="U-Net")
    assert [dock.tabText(i) for i in range(dock.count())] == ["Predict", "Correct", "Suggest", "Fine-tune", "Count"]


@pytest.mark.parametrize("job", ["predict", "train", "count"])
def test_closing_the_viewer_during_a_job(make_napari_viewer, registry, stack, qtbot, job):
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    mark_checked(viewer, viewer.add_labels(stack[1], name="cells labels"), [0, 1])
    if job == "predict":
        widget = PredictWidget(viewer)
        widget.model.value, widget.device.value = "tiny", "cpu"
        widget.run()
    elif job == "train":
        widget = TrainWidget(viewer)
        widget.base.value = "tiny"
        widget.run(config=FAST)
    else:
        widget = CountWidget(viewer)
        widget.labels_layer.value = viewer.layers["cells labels"]
        widget.run()
    viewer.layers.clear()
    wait_for(qtbot, widget, 120_000)  # the job ends cleanly with its layers gone
    if job == "count":
        qtbot.wait(200)
        assert not len(viewer.layers) and "was closed during the count" in widget.summary.value
        assert widget.count_button.enabled


def lazy_stack(stack, n=6):
    """A lazily opened stack (dask, as the reader gives for big files) of n slices."""
    import dask.array as da

    return da.from_array(np.concatenate([stack[0]] * (n // len(stack[0]) + 1))[:n], chunks=(1, 48, 48))


def test_follow_mode_predicts_only_the_slices_the_user_looks_at(make_napari_viewer, registry, stack, qtbot, tmp_path):
    import zarr

    viewer = make_napari_viewer()
    viewer.add_image(lazy_stack(stack), name="huge")
    widget = PredictWidget(viewer)
    widget.model.value, widget.device.value, widget.threshold.value = "tiny", "cpu", 0.05
    widget.follow.value = True
    viewer.dims.set_point(0, 1)
    viewer.dims.set_point(0, 4)  # scrolling on: only where the user stops is predicted

    def predicted():
        found = workflow_for(viewer).find(viewer.layers["huge"])
        return found.predicted if found is not None else set()

    qtbot.waitUntil(lambda: predicted() == {4}, timeout=60_000)
    wait_for(qtbot, widget)
    viewer.dims.set_point(0, 2)
    qtbot.waitUntil(lambda: predicted() == {2, 4}, timeout=60_000)
    wait_for(qtbot, widget)
    prob = viewer.layers["huge probability"].data
    labels = viewer.layers["huge labels"].data
    # results live on disk (OME-Zarr in the session folder), not as a stack-sized array in memory
    assert isinstance(labels, zarr.Array) and isinstance(prob, zarr.Array)
    assert (tmp_path / "sessions").exists() and any((tmp_path / "sessions").rglob("labels.zarr"))
    done = [z for z in range(labels.shape[0]) if np.asarray(prob[z]).any()]
    assert done == [2, 4] and np.asarray(labels[4]).max() > 0
    # ids stay unique across slices; the store remembers the largest, so no scan is needed
    ids2, ids4 = (set(np.unique(np.asarray(labels[z]))) - {0} for z in (2, 4))
    assert ids2 and not ids2 & ids4
    assert labels.attrs["napari_unet_max_label"] == int(np.asarray(labels[:]).max())
    widget.follow.value = False
    viewer.dims.set_point(0, 5)
    qtbot.wait(2 * widget.SCROLL_DELAY_MS)
    assert widget.worker is None and predicted() == {2, 4}  # off: scrolling predicts nothing


def test_whole_lazy_stack_goes_to_the_out_of_core_engine(make_napari_viewer, registry, stack, qtbot):
    from napari_unet.networks.model import load_model
    from napari_unet.objects.pipeline import segment

    viewer = make_napari_viewer()
    data = lazy_stack(stack, 4)
    viewer.add_image(data, name="huge")
    widget = PredictWidget(viewer)
    widget.model.value, widget.device.value = "tiny", "cpu"
    events = []
    worker = widget.run()
    worker.yielded.connect(lambda e: events.append(e.info.get("engine")))
    wait_for(qtbot, widget)
    assert "blocks" in events and widget.status.value == "done: 4 slice(s)"
    work = workflow_for(viewer).find(viewer.layers["huge probability"])
    prob = np.asarray(viewer.layers["huge probability"].data[:])
    labels = np.asarray(viewer.layers["huge labels"].data[:])
    for z in range(4):  # the same segment in memory: the same objects
        ref = segment(load_model("tiny"), np.asarray(data[z]), settings=work.settings)
        assert np.abs(prob[z] - ref.probabilities[0]).max() <= 1e-6
        np.testing.assert_array_equal(labels[z] > 0, ref.labels > 0)


def test_corrections_of_a_lazy_stack_are_saved_in_its_store(make_napari_viewer, registry, stack, qtbot):
    """On a lazily opened stack the labels are a zarr store that painting writes through:
    marking a slice checked saves the session without copying any slice, and restoring
    gives the same store back."""
    viewer = make_napari_viewer()
    viewer.add_image(lazy_stack(stack, 4), name="huge")
    predict = PredictWidget(viewer)
    predict.model.value, predict.device.value = "tiny", "cpu"
    predict.run()
    wait_for(qtbot, predict)
    labels = viewer.layers["huge labels"]
    assert not isinstance(labels.data, np.ndarray)
    correct = CorrectWidget(viewer)
    correct.labels_layer.value = labels
    viewer.dims.set_point(0, 1)
    labels.data[1, 10:20, 10:20] = 99  # a correction, written to the store
    correct.mark_checked()
    folder = correct.session.folder
    assert correct.session.state()["checked"] == [1] and not list(folder.glob("labels_*.npy"))
    assert correct.restore() and correct.work.checked_slices() == [1]
    assert (np.asarray(labels.data[1, 10:20, 10:20]) == 99).all()


def test_memory_of_a_removed_layer_is_returned_despite_the_frozen_start_up_objects(
    make_napari_viewer, registry, qtbot, monkeypatch
):
    import gc
    import weakref

    from napari_unet._widgets import _warmup

    class Holder:  # data caught in a reference cycle: only the cycle collector frees it
        pass

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((64, 64), np.float32), name="cells")
    holder = Holder()
    holder.me, holder.data = holder, layer.data
    alive = weakref.ref(holder)
    monkeypatch.setattr(_warmup, "_FROZEN", False)  # as in a fresh napari process
    PredictWidget(viewer)  # freezes the start-up objects (once per process)
    assert _warmup._FROZEN and gc.get_freeze_count() > 0
    del holder
    gc.collect()
    assert alive() is not None  # frozen: the collector does not see the cycle
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: alive() is None, timeout=5_000)

    # a layer added after the freeze is not frozen: its removal frees it without the
    # full collection (~0.2 s of frozen window) that a refreeze costs
    young = viewer.add_image(np.zeros((64, 64), np.float32), name="later")
    holder = Holder()
    holder.me, holder.data = holder, young.data
    alive = weakref.ref(holder)
    del holder
    unfreezes = []
    monkeypatch.setattr(gc, "unfreeze", lambda: unfreezes.append(1))
    viewer.layers.remove(young)
    qtbot.waitUntil(lambda: alive() is None, timeout=5_000)
    qtbot.wait(50)
    assert not unfreezes and not _warmup._REFREEZE_PENDING


def test_the_window_keeps_running_while_predicting_and_training(make_napari_viewer, registry, qtbot, report):
    """The GUI thread's event loop ticks all through a real prediction and a real fine-tune:
    the work runs in napari's thread workers. The longest gaps are reported, not asserted
    (benchmarks/bench_responsiveness.py measures them on the sample image)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the probe lives with the benchmark
    from _ticks import TickGaps

    from tests.conftest import synthetic_nuclei

    rng = np.random.default_rng(5)
    pairs = [synthetic_nuclei(rng, (256, 256), 40) for _ in range(8)]
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([p[0] for p in pairs]), name="cells")
    ticks = TickGaps()
    predict = PredictWidget(viewer)
    predict.model.value, predict.device.value = "tiny", "cpu"
    train = TrainWidget(viewer)
    train.base.value = "tiny"

    def run(widget, start, timeout):
        # The worker is already running when start() returns, so its `started` signal may have
        # gone by before anything could connect to it: the span opens before start() is called.
        ticks.start()
        began = time.perf_counter()
        worker = start()
        span = {}
        worker.finished.connect(lambda: span.setdefault("end", time.perf_counter()))
        wait_for(qtbot, widget, timeout)
        gaps = ticks.stop()
        return ticks.ticks_between(began, span.get("end", time.perf_counter())), gaps

    for job, start, widget in (
        ("predict 8x256x256, new layers", predict.run, predict),
        ("predict 8x256x256, existing layers", predict.run, predict),
    ):
        during, gaps = run(widget, start, 60_000)
        assert during >= 3, f"{job}: the event loop stopped while the job ran ({during} ticks)"
        report(f"{job}: {during} ticks while running; max gap {gaps['max ms']:.0f} ms, p99 {gaps['p99 ms']:.0f} ms")
    labels = viewer.layers["cells labels"]
    labels.data = np.stack([p[1] for p in pairs])
    mark_checked(viewer, labels, [0, 1, 2])
    train.image.value, train.labels_layer.value = viewer.layers["cells"], labels
    config = TrainConfig(epochs=3, steps_per_epoch=6, batch_size=2, crop=96, device="cpu", precision="fp32")
    during, gaps = run(train, lambda: train.run(config=config), 120_000)
    assert during >= 3, f"fine-tune: the event loop stopped while training ran ({during} ticks)"
    report(
        f"fine-tune 18 steps: {during} ticks while running; max gap {gaps['max ms']:.0f} ms, p99 {gaps['p99 ms']:.0f} ms"
    )


def test_counting_corrected_nuclei_gives_each_its_micronuclei(make_napari_viewer, registry, qtbot, errors):
    """The shipped model marks micronuclei: Count on the predicted (and corrected) labels of a
    real sample adds a micronuclei column, a total in the summary and a point on each."""
    from napari_unet._sample_data import sample_paths
    from napari_unet.io import read_image

    viewer = make_napari_viewer()
    viewer.add_image(np.asarray(read_image(sample_paths("rpe1")[0]).data), name="rpe1")
    predict = PredictWidget(viewer)
    predict.model.value, predict.device.value = "nuclei", "cpu"
    predict.run()
    wait_for(qtbot, predict)
    labels = viewer.layers["rpe1 labels"]
    first = int(labels.data[labels.data > 0][0])
    deleted = labels.data == first
    labels.data = np.where(deleted, 0, labels.data)  # a correction: one nucleus deleted
    widget = CountWidget(viewer)
    widget.labels_layer.value = labels
    widget.run()
    wait_for(qtbot, widget)
    _, table = widget.result
    assert "micronuclei" in table and "micronuclei" in widget.table_model.columns
    assert not widget.result[0][deleted].any()
    points = viewer.layers["rpe1 labels micronuclei"]
    found = len(points.data)
    assert 40 <= found <= 140  # mnfinder drew 89 on this image
    assert table["micronuclei"].sum() <= found and table["micronuclei"].sum() >= 0.7 * found
    assert widget.summary.value.endswith(f"{found} micronuclei")
    assert not errors
