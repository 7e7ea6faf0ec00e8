"""The dock tried as a new user would (#32): a toast that says its verdict whole, a click with
nothing to do said as information once, and Count's table using the dock's height."""

from __future__ import annotations

import dataclasses

import numpy as np

from napari_unet._widgets.correct_widget import CorrectWidget
from napari_unet._widgets.count_widget import CountWidget
from napari_unet._widgets.train_widget import TrainWidget
from napari_unet.training.train import TrainConfig
from tests._qt.conftest import wait_for
from tests._qt.test_dock_rules import predicted_stack
from tests._qt.test_widgets import mark_checked

FAST = TrainConfig(epochs=2, steps_per_epoch=4, batch_size=2, crop=64, augment=False, device="cpu", precision="fp32")


def _shown_text(message: str) -> str:
    """What napari's toast shows of ``message`` before a click expands it: one elided line."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication, QLabel

    toast = NapariQtNotification(message, "info")
    toast.show()
    for _ in range(5):
        QApplication.processEvents()
    shown = QLabel.text(toast.message)  # the label's own text: what superqt elided it to
    first_line = shown.splitlines()[0] if shown else ""
    toast.close()
    return first_line


def test_the_fine_tune_toast_says_its_verdict_whole(make_napari_viewer, registry, stack, notices, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    labels = viewer.add_labels(stack[1].copy(), name="cells labels")
    mark_checked(viewer, labels, [0, 2])
    widget = TrainWidget(viewer)
    widget.base.value = "tiny"
    assert widget.run(config=FAST) is not None
    wait_for(qtbot, widget, 120_000)
    toast = [m for s, m in notices if m.startswith("Fine-tune")][-1]
    assert widget.result.headline() in toast and _shown_text(toast) == toast
    assert "held-out checked data" in widget.verdict.value  # the detail stays in the step
    # each verdict a fine-tune can give fits the toast's first line whole
    for better in (True, False):
        headline = f"Fine-tune: {dataclasses.replace(widget.result, better=better).headline()}"
        assert _shown_text(headline) == headline, (headline, _shown_text(headline))
    # the long verdict the toast used to carry does not (it was cut to '...new model is not')
    long = f"Fine-tune finished: {widget.result.verdict()}"
    assert _shown_text(long) != long


def test_predicting_only_checked_slices_is_information_said_once(make_napari_viewer, registry, stack, notices, qtbot):
    viewer = make_napari_viewer()
    predict, labels = predicted_stack(viewer, stack, qtbot)
    correct = CorrectWidget(viewer)
    correct.labels_layer.value = labels
    viewer.dims.set_point(0, 2)
    correct.mark_checked()
    predict.scope.value = "slice in view"
    notices.clear()
    assert predict.run() is None and predict.run() is None  # pressed twice
    said = [(s, m) for s, m in notices if "every chosen slice is checked" in m]
    assert len(said) == 1 and said[0][0] == "info", notices
    assert not [m for s, m in notices if s == "error"]
    assert "nothing to predict" in predict.status.value


def test_counts_table_takes_the_free_height_of_the_dock(make_napari_viewer, registry, stack, qtbot):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1200, 1000)
    viewer.add_image(stack[0], name="cells")
    many = np.zeros_like(stack[1])
    for k in range(60):  # 60 small objects on slice 0: more rows than any dock shows
        y, x = divmod(k, 10)
        many[0, 4 + 10 * y : 10 + 10 * y, 4 + 10 * x : 10 + 10 * x] = k + 1
    labels = viewer.add_labels(many, name="many")
    widget = CountWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    widget.labels_layer.value = labels
    widget.min_area.value = 0
    widget.run()
    wait_for(qtbot, widget)
    for _ in range(10):
        QApplication.processEvents()
    assert widget.table_model.rowCount() == 60
    rows = widget.table.viewport().height() / widget.table.rowHeight(0)
    fields = widget.native.height() - widget.table.height()
    assert rows >= 15, f"{rows:.1f} rows shown in a dock {widget.native.height()} px high ({fields} px of fields)"


def test_the_dock_imports_a_package_and_runs_torchscript_only_when_trusted(
    make_napari_viewer, registry, tmp_path, notices, qtbot
):
    import pytest

    pytest.importorskip("bioimageio.core")
    from tests.test_exchange import _foreign_package

    package = _foreign_package(tmp_path, "torchscript")
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    widget.import_path.value = str(package)
    assert widget.import_package() is not None  # not trusted: refused in one sentence, nothing registered
    wait_for(qtbot, widget)
    refused = [m for s, m in notices if s == "error"]
    assert refused and "--trust" in refused[-1] and "\n" not in refused[-1]
    assert not (registry / "other-tool-net.safetensors").exists()
    widget.trust.value = True
    assert widget.import_package() is not None
    wait_for(qtbot, widget)
    assert (registry / "other-tool-net.safetensors").exists()
    assert widget.workflow.model_name == "other-tool-net" and "imported as other-tool-net" in widget.status.value
