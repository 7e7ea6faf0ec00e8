"""The dock's rules, in a real viewer: checked slices survive predictions, errors in any job
reach the user and the step is ready again, the dock's objects are the pipeline's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet._widgets.correct_widget import CorrectWidget
from napari_unet._widgets.count_widget import CountWidget
from napari_unet._widgets.predict_widget import PredictWidget
from napari_unet._widgets.train_widget import TrainWidget
from napari_unet.training.train import TrainConfig
from tests._qt.conftest import wait_for

FAST = TrainConfig(epochs=2, steps_per_epoch=4, batch_size=2, crop=64, augment=False, device="cpu", precision="fp32")


def predicted_stack(viewer, stack, qtbot):
    viewer.add_image(stack[0], name="cells")
    predict = PredictWidget(viewer)
    predict.model.value, predict.device.value, predict.threshold.value = "tiny", "cpu", 0.05
    assert predict.run() is not None
    wait_for(qtbot, predict)
    return predict, viewer.layers["cells labels"]


def test_predicting_again_keeps_a_checked_slice(make_napari_viewer, registry, stack, qtbot):
    """The data-loss repro: paint a correction, mark the slice checked, press Predict again."""
    viewer = make_napari_viewer()
    predict, labels = predicted_stack(viewer, stack, qtbot)
    correct = CorrectWidget(viewer)
    correct.labels_layer.value = labels
    viewer.dims.set_point(0, 1)
    painted = (1, slice(20, 60), slice(20, 60))
    brush = np.zeros(labels.data.shape, bool)
    brush[painted] = True
    labels.data_setitem(np.nonzero(brush), 777)  # through napari's painting path, as the brush does
    assert (labels.data[painted] == 777).all()
    correct.mark_checked()
    before = labels.data.copy()
    assert predict.run() is not None
    wait_for(qtbot, predict)
    assert (labels.data[painted] == 777).all(), "the checked slice was overwritten"
    np.testing.assert_array_equal(labels.data[1], before[1])
    assert "1 checked slice(s) kept" in predict.status.value


def test_overwriting_a_checked_slice_needs_an_explicit_choice(make_napari_viewer, registry, stack, qtbot):
    viewer = make_napari_viewer()
    predict, labels = predicted_stack(viewer, stack, qtbot)
    correct = CorrectWidget(viewer)
    correct.labels_layer.value = labels
    viewer.dims.set_point(0, 2)
    labels.data[2] = 555
    correct.mark_checked()
    predict.scope.value = "slice in view"
    assert predict.run() is None and "every chosen slice is checked" in predict.status.value
    predict.overwrite_checked.value = True
    assert predict.run() is not None
    wait_for(qtbot, predict)
    assert not (labels.data[2] == 555).all() and "done: 1 slice(s)" in predict.status.value


def test_a_slice_checked_while_the_prediction_runs_is_kept(make_napari_viewer, registry, stack, qtbot):
    viewer = make_napari_viewer()
    predict, labels = predicted_stack(viewer, stack, qtbot)
    correct = CorrectWidget(viewer)
    correct.labels_layer.value = labels
    labels.data[3] = 321
    assert predict.run() is not None  # planned with no slice checked...
    viewer.dims.set_point(0, 3)
    correct.mark_checked()  # ...and slice 3 checked before its result arrives
    wait_for(qtbot, predict)
    assert (labels.data[3] == 321).all() and "1 checked slice(s) kept" in predict.status.value


class Broken(torch.nn.Module):
    """A network whose forward pass fails the way torch fails."""

    def __init__(self, error):
        super().__init__()
        from napari_unet.networks.model import ModelCard

        self.conv = torch.nn.Conv2d(1, 2, 1)
        self.card = ModelCard("broken", classes=("foreground", "boundary"), tile=64)
        self.size_divisor = 16
        self.error = error

    def forward(self, x):
        raise self.error


ERRORS = {
    "RuntimeError": lambda: RuntimeError("CUDA error: an illegal memory access was encountered"),
    "OutOfMemoryError": lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
}


@pytest.mark.parametrize("error", list(ERRORS))
@pytest.mark.parametrize("job", ["predict", "train", "count"])
def test_an_error_in_any_job_reaches_the_user_and_the_step_is_ready_again(
    make_napari_viewer, registry, stack, qtbot, errors, monkeypatch, job, error
):
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    labels = viewer.add_labels(stack[1].copy(), name="cells truth")
    exc = ERRORS[error]()

    def failing(*args, **kwargs):
        yield from ()
        raise exc

    if job == "predict":
        widget = PredictWidget(viewer)
        widget.device.value = "cpu"
        worker = widget.run(model=Broken(exc))
        button = widget.run_button
    elif job == "train":
        monkeypatch.setattr("napari_unet.training.train.Trainer.steps", failing)
        CorrectWidget(viewer).labels_layer.value = labels
        from napari_unet._widgets._step import labels_work, workflow_for

        labels_work(workflow_for(viewer), labels).mark_checked(0)
        widget = TrainWidget(viewer)
        widget.base.value = "tiny"
        widget.image.value, widget.labels_layer.value = viewer.layers["cells"], labels
        worker = widget.run(config=FAST)
        button = widget.train_button
    else:
        monkeypatch.setattr("napari_unet.objects.count.count_iter", failing)
        widget = CountWidget(viewer)
        widget.labels_layer.value = labels
        worker = widget.run()
        button = widget.count_button
    assert worker is not None
    wait_for(qtbot, widget, 60_000)  # today's main hangs here for a RuntimeError: the step never ends
    assert button.enabled
    (message,) = [e for e in errors if str(exc).split(".")[0] in e]
    assert "\n" not in message and "Traceback" not in message
    if error == "OutOfMemoryError":
        assert "ran out of memory" in message and "smaller tile" in message
    assert "stopped by an error" in widget.status.value and widget.worker is None


@pytest.mark.parametrize("job", ["predict", "train", "count"])
def test_closing_the_viewer_during_a_job_leaves_nothing_behind(make_napari_viewer, registry, stack, qtbot, errors, job):
    from napari_unet._widgets._step import labels_work, workflow_for

    viewer = make_napari_viewer()
    viewer.add_image(np.concatenate([stack[0]] * 4), name="cells")
    labels = viewer.add_labels(np.concatenate([stack[1]] * 4), name="cells truth")
    labels_work(workflow_for(viewer), labels).checked.update({0, 1})
    if job == "predict":
        widget = PredictWidget(viewer)
        widget.model.value, widget.device.value = "tiny", "cpu"
        widget.run()
        button = widget.run_button
    elif job == "train":
        widget = TrainWidget(viewer)
        widget.base.value = "tiny"
        widget.image.value, widget.labels_layer.value = viewer.layers["cells"], labels
        widget.run(config=FAST)
        button = widget.train_button
    else:
        widget = CountWidget(viewer)
        widget.labels_layer.value = labels
        widget.run()
        button = widget.count_button
    qtbot.wait(50)
    viewer.layers.clear()
    wait_for(qtbot, widget, 120_000)  # the job ends cleanly with its layers gone
    qtbot.wait(300)  # any step still queued on the event loop runs
    assert len(viewer.layers) == 0, [layer.name for layer in viewer.layers]  # no orphan result layer
    assert errors == []
    assert button.enabled and widget.worker is None
    assert workflow_for(viewer).works == []  # the state forgot the closed layers


def test_removing_a_result_layer_while_predicting_stops_without_an_orphan(make_napari_viewer, registry, qtbot, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((40, 128, 128)).astype(np.float32), name="big")
    widget = PredictWidget(viewer)
    widget.model.value, widget.device.value = "tiny", "cpu"
    widget.more.tile.value, widget.more.batch.value = 64, 1
    widget.run()
    qtbot.waitUntil(lambda: len(widget.prediction.written) >= 1, timeout=60_000)
    viewer.layers.remove(viewer.layers["big labels"])
    wait_for(qtbot, widget, 60_000)
    qtbot.wait(200)
    assert [layer.name for layer in viewer.layers] == ["big", "big probability"]
    assert "a result layer was closed" in widget.status.value and errors == []
    assert len(widget.prediction.written) < 40  # it stopped rather than predicting the rest for nothing


def test_switching_the_model_while_a_job_runs_is_taken_for_the_next_one(make_napari_viewer, registry, stack, qtbot):
    from napari_unet._widgets._step import workflow_for

    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    widget = PredictWidget(viewer)
    widget.model.value, widget.device.value = "tiny", "cpu"
    widget.run()
    workflow_for(viewer).switch_model("nuclei")
    assert widget.model.value == "nuclei"
    wait_for(qtbot, widget)
    work = workflow_for(viewer).find(viewer.layers["cells"])
    assert work.card.name == "tiny" and "done: 4 slice(s)" in widget.status.value


def test_the_dock_predict_and_count_give_exactly_the_objects_of_segment(make_napari_viewer, registry, qtbot):
    import napari_unet
    from napari_unet._sample_data import sample_paths
    from napari_unet.io import read_image

    image = np.asarray(read_image(sample_paths("rpe1")[0]).data)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="rpe1")
    viewer.add_labels(np.zeros(image.shape, np.int32), name="rpe1 truth")  # a ground-truth layer is there too
    predict, correct, train, count = (cls(viewer) for cls in (PredictWidget, CorrectWidget, TrainWidget, CountWidget))
    predict.model.value, predict.device.value = "nuclei", "cpu"
    predict.run()
    wait_for(qtbot, predict)
    labels, prob = viewer.layers["rpe1 labels"], viewer.layers["rpe1 probability"]
    # every step now points at the prediction just made, and Count measures on its image
    assert correct.labels_layer.value is labels and train.labels_layer.value is labels
    assert count.labels_layer.value is labels and count.image.value is viewer.layers["rpe1"]
    model = napari_unet.load_model("nuclei")
    assert count.min_area.value == model.card.postprocess["min_area"]  # what Predict used, not 10
    count.run()
    wait_for(qtbot, count)
    expected = napari_unet.segment(model, image).labels
    assert expected.max() > 20
    np.testing.assert_array_equal(count.result[0], expected)
    assert count.result[1]["mean_intensity"].notna().all()  # measured on the image
    # non-default settings: threshold 0.6 in Predict, min area 40 in Count
    predict.threshold.value = 0.6
    predict.run()
    wait_for(qtbot, predict)
    count.labels_layer.value = prob
    count.min_area.value = 40
    count.run()
    wait_for(qtbot, count)
    expected = napari_unet.segment(model, image, threshold=0.6, min_area=40).labels
    np.testing.assert_array_equal(count.result[0], expected)


def test_use_new_model_waits_for_a_choice_when_the_verdict_says_worse(make_napari_viewer, registry, errors):
    from napari_unet.networks.model import load_model
    from napari_unet.training.train import TrainResult

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    model = load_model("tiny")
    worse = TrainResult(model, model.card.replace(name="worse"), [], 1, 0.2, {"dice": 0.8, "f1": 0.7},
                        {"dice": 0.2, "f1": 0.1}, False, False, 10.0)  # fmt: skip
    widget._on_done(worse)
    assert "not better" in widget.verdict.value and not widget.use_button.enabled
    assert widget.use_model() is None and "not better than its parent" in errors[-1]
    widget.use_anyway.value = True
    assert widget.use_button.enabled and widget.use_model() == "worse"


def test_the_private_napari_api_we_use_is_still_there(make_napari_viewer):
    """Fails loudly when a napari release moves what _napari_compat reaches for."""
    from napari_unet._widgets._napari_compat import missing_private_api

    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((8, 8), np.int32))
    assert missing_private_api(viewer, labels) == []


def test_long_messages_wrap_and_the_dock_keeps_its_width(make_napari_viewer, registry):
    from napari_unet._widgets.dock import UNetDock

    viewer = make_napari_viewer()
    dock = UNetDock(viewer)
    viewer.window.add_dock_widget(dock, name="U-Net")
    before = dock.minimumSizeHint().width()
    long = "new model is not better: Dice 0.812 vs 0.845, object F1 0.701 vs 0.733 on held-out checked data " * 2
    dock.train_step.verdict.value = long
    dock.predict_step.status.value = long
    dock.correct_step.status.value = long
    assert dock.minimumSizeHint().width() <= max(before, 420), "a long message widened the dock"


def test_the_docks_older_toasts_close_when_it_posts_a_new_one(make_napari_viewer, qtbot):
    """napari brings an older toast back over the screen when a newer one closes: the dock's
    own older messages are closed as it posts a new one; napari's and other plugins' stay."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from napari.utils.notifications import show_info

    from napari_unet._widgets._common import notify_error, notify_info

    viewer = make_napari_viewer(show=True)  # (napari shows toasts only on a visible window)
    qtbot.waitUntil(lambda: viewer.window._qt_window.isVisible())

    def shown():
        return [t.message.text() for t in NapariQtNotification._instances]

    notify_error("Mark checked: choose the labels layer you corrected first.")
    show_info("a message of another plugin")
    notify_info("Saved corrections of cells labels.")
    notify_error("Count: choose a labels layer first.")
    assert shown()[-2:] == ["a message of another plugin", "Count: choose a labels layer first."]
    assert not any(m.startswith(("Mark checked", "Saved corrections")) for m in shown())


def test_each_step_shows_its_progress_and_an_honest_status(make_napari_viewer, registry, stack, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    predict = PredictWidget(viewer)
    predict.model.value, predict.device.value = "tiny", "cpu"
    seen = []
    worker = predict.run()
    shown = lambda: not predict.progress.native.isHidden()  # noqa: E731 - (the widget is not docked)
    worker.yielded.connect(lambda e: seen.append((shown(), predict.progress.value, e.done)))
    wait_for(qtbot, predict)
    assert seen and all(visible for visible, _, _ in seen) and seen[-1][1] == seen[-1][2]
    assert not shown()  # gone once the job has ended
    from napari_unet._widgets._step import labels_work, workflow_for

    labels = viewer.layers["cells labels"]
    labels.data = stack[1].copy()  # corrected by hand
    labels_work(workflow_for(viewer), labels).checked.update({0, 1, 2})
    train = TrainWidget(viewer)
    train.base.value = "tiny"
    statuses = []
    worker = train.run(config=FAST)
    worker.yielded.connect(lambda e: statuses.append((e.info.get("kind"), train.status.value)))
    wait_for(qtbot, train, 120_000)
    after_first_step = [s for _, s in statuses[1:]]
    assert after_first_step and not any(s.startswith("preparing") for s in after_first_step)
    assert any(s.startswith("training: epoch") for kind, s in statuses if kind == "epoch")


def test_a_multi_class_model_predicts_and_counts_in_the_dock(make_napari_viewer, registry, qtbot):
    """A semantic model's labels keep their class ids (named in the layer's features), and
    Count gives each object its class, as the CLI does."""
    from napari_unet._synthetic import lateral_phantom
    from napari_unet.networks.model import ModelCard, build_model, save_model

    torch.manual_seed(0)
    card = ModelCard("lungs", classes=("background", "left_lung", "right_lung"), activation="softmax",
                     arch_args={"features": [4, 8, 16]}, tile=64)  # fmt: skip
    save_model(build_model(card), registry / "lungs")
    viewer = make_napari_viewer()
    image = np.stack([lateral_phantom(s, 96)[0] for s in range(2)])
    viewer.add_image(image, name="chest")
    predict = PredictWidget(viewer)
    predict.model.value, predict.device.value = "lungs", "cpu"
    assert predict.run() is not None
    wait_for(qtbot, predict)
    labels = viewer.layers["chest labels"]
    assert set(np.unique(labels.data)) <= {0, 1, 2}, "class ids were shifted like object ids"
    assert list(labels.features["class"]) == ["background", "left_lung", "right_lung"]
    names = [layer.name for layer in viewer.layers]
    assert {"chest probability (any class)", "chest probability left_lung", "chest probability right_lung"} <= set(
        names
    )
    right = viewer.layers["chest probability right_lung"].data
    assert right.shape == image.shape and 0 <= right.min() and right.max() <= 1 and right.any()
    correct = CorrectWidget(viewer)
    correct.labels_layer.value = labels
    assert list(correct.paint_class.choices) == ["1: left_lung", "2: right_lung"]
    correct.paint_class.value = "2: right_lung"
    assert labels.selected_label == 2  # the brush paints the right lung
    labels.data = np.stack([lateral_phantom(s, 96)[1] for s in range(2)]).astype(np.int32)  # corrected by hand
    count = CountWidget(viewer)
    count.labels_layer.value = labels
    assert count.run() is not None
    wait_for(qtbot, count)
    _, table = count.result
    assert sorted(table["class"]) == ["left_lung", "left_lung", "right_lung", "right_lung"]  # a lung each, per slice
    assert count.table_model.columns[:3] == ["id", "slice", "class"]  # the table shows it beside id and slice
    assert count.table_model.row_values(0)["class"] in {"left_lung", "right_lung"}


def test_the_nuclei_model_on_an_xray_warns_in_the_dock(make_napari_viewer, registry, qtbot):
    from napari.utils.notifications import notification_manager

    from napari_unet._synthetic import lateral_phantom

    seen: list[str] = []

    def record(notification):
        if notification.severity == "warning":
            seen.append(notification.message)

    notification_manager.notification_ready.connect(record)
    try:
        viewer = make_napari_viewer()
        viewer.add_image(lateral_phantom(3, 256)[0], name="chest")
        predict = PredictWidget(viewer)
        predict.model.value, predict.device.value = "nuclei", "cpu"
        assert predict.run() is not None
        wait_for(qtbot, predict)
    finally:
        notification_manager.notification_ready.disconnect(record)
    assert any("unlike the images model 'nuclei' was trained on" in m for m in seen), seen


def test_a_new_model_for_images_no_model_knows_from_the_dock(make_napari_viewer, registry, qtbot):
    """A clinician's first model: the form asks what a person knows (classes and their names,
    whether left and right matter, the image kind); the card records it; Use makes it the
    model of every step."""
    from napari_unet._synthetic import lateral_phantom
    from napari_unet._widgets._step import labels_work, workflow_for
    from napari_unet.networks.model import load_model

    viewer = make_napari_viewer()
    pairs = [lateral_phantom(s, 96) for s in range(3)]
    image = viewer.add_image(np.stack([p[0] for p in pairs]), name="chest")
    labels = viewer.add_labels(np.stack([p[1] for p in pairs]).astype(np.int32), name="lungs drawn")
    labels_work(workflow_for(viewer), labels).checked.update({0, 1, 2})
    train = TrainWidget(viewer)
    train.image.value, train.labels_layer.value = image, labels
    train.start_from.value = "a new model for these images"
    shown = lambda w: not w.native.isHidden()  # noqa: E731 - (the widget is not docked)
    assert not shown(train.base) and shown(train.task) and not shown(train.class_names)
    train.task.value = "several named classes"
    assert shown(train.class_names) and not shown(train.architecture)
    train.advanced.value = True
    assert shown(train.architecture) and shown(train.input_size)
    train.class_names.value = "left_lung"
    assert train.run() is None and "at least two" in train.status.value
    train.class_names.value = "left_lung, left_lung"  # a class name used twice
    assert train.run() is None and "class names must differ" in train.status.value
    train.class_names.value = "left_lung, right_lung"
    train.lateral.value = True
    train.image_kind.value = "X-ray"
    train.seconds.value = 15  # a few epochs, even on a busy machine
    train.model_name.value = "first-lungs"
    assert train.run() is not None
    wait_for(qtbot, train, 120_000)
    card = train.result.card
    assert card.classes == ("background", "left_lung", "right_lung") and card.flips is False
    assert card.normalisation["kind"] == "percentile" and card.parent is None
    assert train.result.verdict().startswith("new model: Dice per class left_lung")
    assert set(train.curve.per_class) == {"left_lung", "right_lung"}  # the live curve, a line per class
    assert len(train.curve.per_class["left_lung"]) == len(train.curve.dice) >= 1
    assert train.use_model() == "first-lungs"
    assert load_model("first-lungs").card.activation == "softmax"


def test_the_fine_tune_step_exports_the_model_predict_uses_for_bioimageio(make_napari_viewer, registry, qtbot, errors,
                                                                          tmp_path):  # fmt: skip
    pytest.importorskip("bioimageio.core")
    import zipfile

    viewer = make_napari_viewer()
    train = TrainWidget(viewer)
    train.workflow.switch_model("tiny")
    assert str(train.export_path.value).endswith("tiny.bioimageio.zip")  # follows the model until a file is chosen
    train.export_path.value = str(tmp_path / "out" / "tiny")
    train.export_button.clicked.emit()
    wait_for(qtbot, train, timeout=120_000)
    assert any("no such folder" in e for e in errors)  # said in one sentence, no package, the step ready again
    assert not (tmp_path / "out").exists() and train.run_button.enabled
    (tmp_path / "out").mkdir()
    train.export_button.clicked.emit()
    wait_for(qtbot, train, timeout=120_000)
    with zipfile.ZipFile(tmp_path / "out" / "tiny.zip") as z:
        assert "rdf.yaml" in z.namelist() and "weights.torchscript" in z.namelist()
    assert train.status.value == "exported to tiny.zip"
    # an imported package is a model like any other: in the Predict and Fine-tune lists
    from napari_unet.exchange import import_package

    import_package(tmp_path / "out" / "tiny.zip", "tiny-back")
    predict = PredictWidget(viewer)
    train.base.reset_choices()
    assert "tiny-back" in train.base.choices and "tiny-back" in predict.model.choices


def test_a_multi_channel_stack_offers_the_channels_the_model_takes(make_napari_viewer, registry, qtbot, errors,
                                                                   tmp_path):  # fmt: skip
    """A model trained on channels 2 and 0 of a 3-channel stack: Predict shows the choice,
    takes those layers in that order, and says in one sentence what is wrong otherwise."""
    from napari_unet.io import write_tiff
    from napari_unet.networks.model import ModelCard, build_model, load_model, save_model
    from napari_unet.objects.pipeline import segment

    rng = np.random.default_rng(4)
    stack = rng.integers(0, 4000, (3, 2, 64, 64)).astype(np.uint16)  # C, Z, Y, X
    stack[2, :, 20:40, 20:40] += 8000
    write_tiff(tmp_path / "cells.tif", stack, axes="CZYX")
    torch.manual_seed(0)
    card = ModelCard("two-ch", arch_args={"features": [4, 8]}, in_channels=2, channels=[2, 0],
                     classes=("foreground", "boundary"), tile=64)  # fmt: skip
    save_model(build_model(card), registry / "two-ch", card)

    viewer = make_napari_viewer()
    layers = viewer.open(tmp_path / "cells.tif", plugin="napari-unet")
    assert [layer.name for layer in layers] == ["cells [ch0]", "cells [ch1]", "cells [ch2]"]
    predict = PredictWidget(viewer)
    predict.image.value = layers[1]
    assert predict.channels.native.isHidden()  # a one-channel model: nothing to choose
    predict.model.value = "two-ch"
    assert not predict.channels.native.isHidden() and predict.channels.value == "2,0"  # (the widget is not docked)
    predict.run()
    wait_for(qtbot, predict)
    probability = next(layer for layer in viewer.layers if "probability" in layer.name)
    expected = segment(load_model("two-ch"), stack, axes="CZYX").probabilities[0]
    assert np.abs(np.asarray(probability.data) - expected).max() < 1e-5

    predict.channels.value = "2"  # one number for a two-channel model
    assert predict.run() is None and "takes 2 channels" in errors[-1]
    predict.channels.value = "2,5"
    assert predict.run() is None and "no layer 'cells [ch5]'" in errors[-1]
    single = viewer.add_image(stack[0], name="plain")
    predict.image.value = single
    predict.channels.value = "2,0"
    assert predict.run() is None and "single-channel layer" in errors[-1]


@pytest.mark.slow
def test_the_ct_journey_through_the_buttons(make_napari_viewer, registry, qtbot, errors):
    """A clinician's first model on the CT sample, through the dock's buttons: the lesion
    painted on 2 slices, 3 lesion-free slices checked, a new model trained, the unchecked
    slices predicted, the lesion counted per class. The checked slices are kept, and the
    lesion on a slice held back between the painted ones is found where it is."""
    from napari_unet._widgets._step import labels_work, workflow_for

    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "ct")
    image, truth = viewer.layers[0], viewer.layers[1]
    truth_data = np.asarray(truth.data).copy()
    drawn = viewer.add_labels(np.zeros(truth_data.shape, np.int32), name="lesion drawn", scale=image.scale)
    painted, free, held_back = [5, 7], [0, 2, 10], 6
    for z in painted:
        drawn.data[z] = truth_data[z] > 0
    checked_before = {z: drawn.data[z].copy() for z in painted + free}
    correct = CorrectWidget(viewer)  # (no Predict step open: Re-predict is a workflow call)
    correct.labels_layer.value = drawn
    labels_work(workflow_for(viewer), drawn).checked.update(painted + free)

    train = TrainWidget(viewer)
    train.image.value, train.labels_layer.value = image, drawn
    train.start_from.value = "a new model for these images"
    train.task.value = "regions"
    train.class_names.value = "lesion"
    train.image_kind.value = "CT, soft-tissue window"
    train.seconds.value = 150
    train.model_name.value = "ct-lesion"
    train.train_button.clicked.emit()
    wait_for(qtbot, train, 600_000)
    assert not errors and train.result is not None and train.result.card.classes == ("background", "lesion")
    assert train.use_model() == "ct-lesion"
    train.repredict_button.clicked.emit()  # a workflow call: the unchecked slices only
    wait_for(qtbot, train, 600_000)
    for z, before in checked_before.items():
        assert np.array_equal(drawn.data[z], before), f"checked slice {z} was overwritten"
    found, lesion = drawn.data[held_back] == 1, truth_data[held_back] > 0
    assert (found & lesion).sum() > 0.3 * lesion.sum(), "the lesion on the held-back slice was not found"

    count = CountWidget(viewer)
    count.labels_layer.value = drawn
    count.run_button.clicked.emit()
    wait_for(qtbot, count, 120_000)
    _, table = count.result
    assert set(table["class"]) == {"lesion"} and held_back in set(table["slice"])


def test_the_steps_keep_their_fields_at_the_top_and_the_checked_list_small(make_napari_viewer, registry):
    """Each step's fields sit at the top with the stretch below them (not spread over the
    dock's height; Count's table takes that height), and the checked-slices list shows a few
    rows instead of half the tab."""
    viewer = make_napari_viewer()
    for step in (PredictWidget(viewer), CorrectWidget(viewer), TrainWidget(viewer), CountWidget(viewer)):
        layout = step.native.layout()
        last = layout.itemAt(layout.count() - 1)
        assert last.spacerItem() is not None, f"{step.title}: no stretch below the fields"
        if isinstance(step, CountWidget):  # its table takes the free height instead (#32: it showed 5 rows)
            assert layout.stretch(layout.indexOf(step.table)) >= 1 and layout.stretch(layout.count() - 1) == 0
        else:
            assert layout.stretch(layout.count() - 1) >= 1
    correct = CorrectWidget(viewer)
    assert correct.checked.native.maximumHeight() <= 96


def test_predict_can_keep_only_the_regions_joined_to_what_was_drawn(make_napari_viewer, registry, qtbot, errors):
    """A region model on a stack, a lesion drawn on one checked slice and another slice
    checked empty: with *keep only regions joined to what I drew*, the predicted slices keep
    what continues the drawing across slices and lose the rest; checked slices stay as they are."""
    from napari_unet._widgets._step import labels_work, workflow_for
    from napari_unet.networks.model import save_model
    from tests.conftest import bright_region_model

    net, card = bright_region_model()  # marks the bright pixels as lesion (weights set by hand)
    save_model(net, registry / "regions", card)
    viewer = make_napari_viewer()
    image = np.full((6, 48, 48), 10.0, np.float32)
    image[:, 20:30, 20:30] = 200.0  # a lesion through the stack
    image[1, 35:45, 5:15] = 200.0  # and something bright on slice 1 only
    viewer.add_image(image, name="ct")
    predict = PredictWidget(viewer)
    predict.model.value, predict.device.value = "regions", "cpu"
    assert not predict.follow_drawn.native.isHidden()  # offered for a region model (the widget is not docked)
    assert predict.run() is not None
    wait_for(qtbot, predict)
    labels = viewer.layers["ct labels"]
    assert int((labels.data == 1).sum()) == 700  # every bright pixel, with the follow box off
    labels.data[2] = 0
    labels.data[2, 21:29, 21:29] = 1  # the lesion as drawn, a little inside
    labels.data[4] = 0  # checked empty
    labels_work(workflow_for(viewer), labels).checked.update({2, 4})
    drawn = {z: labels.data[z].copy() for z in (2, 4)}
    predict.follow_drawn.value = True
    assert predict.run() is not None
    wait_for(qtbot, predict)
    qtbot.waitUntil(lambda: "left out" in predict.status.value, timeout=30_000)  # (followed in a thread)
    assert not errors
    for z, d in drawn.items():
        assert np.array_equal(labels.data[z], d), f"checked slice {z} changed"
    assert (labels.data[[0, 1, 3], 20:30, 20:30] == 1).all()  # the lesion continues the drawing
    assert not labels.data[1, 35:45, 5:15].any() and not labels.data[5].any()  # joined to nothing drawn
    assert "2 region(s) not joined to what you drew left out" in predict.status.value
    nuclei = PredictWidget(viewer)
    nuclei.model.value = "tiny"
    assert nuclei.follow_drawn.native.isHidden()  # an objects model has no regions to follow


def _rpe1_in_predict(make_napari_viewer):
    """The RPE1 sample in a viewer and a Predict dock on the shipped model (CPU)."""
    import napari_unet
    from napari_unet._sample_data import sample_paths
    from napari_unet.io import read_image

    image = np.asarray(read_image(sample_paths("rpe1")[0]).data)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="rpe1")
    predict = PredictWidget(viewer)
    predict.model.value, predict.device.value = "nuclei", "cpu"
    return image, napari_unet.load_model("nuclei"), viewer, predict


def _dock_and_segment(qtbot, predict, viewer, model, image, **changed):
    """The dock's labels of the RPE1 sample, ``segment``'s with the same tiling and ``changed``
    settings, and ``segment``'s with the card's own settings."""
    import napari_unet

    assert predict.run() is not None
    wait_for(qtbot, predict)
    edited = predict.more.overrides(model.card)  # (the tiling the dock used: per image unless edited)
    tiling = {k: edited[k] for k in ("tile", "overlap", "batch") if k in edited}
    return (
        np.asarray(viewer.layers["rpe1 labels"].data),
        napari_unet.segment(model, image, device="cpu", **changed, **tiling).labels,
        napari_unet.segment(model, image, device="cpu", **tiling).labels,
    )


def test_predict_advanced_sets_the_smallest_share_of_the_median_object(make_napari_viewer, registry, qtbot, errors):
    """The shipped model drops objects under 0.3 of the image's median one; *advanced* shows
    that share and lets a person keep every object (0), giving the objects of ``segment``
    with the same settings, at least as many as with the card's share."""
    image, model, viewer, predict = _rpe1_in_predict(make_napari_viewer)
    assert predict.more.min_share.native.isHidden()  # (the widget is not docked: asked of Qt)
    predict.advanced.value = True
    assert not predict.more.min_share.native.isHidden()
    assert predict.more.min_share.value == model.card.postprocess["min_relative_area"] == 0.3
    predict.more.min_share.value = 0.0
    kept_all, expected, with_share = _dock_and_segment(qtbot, predict, viewer, model, image, min_relative_area=0.0)
    assert not errors
    np.testing.assert_array_equal(kept_all, expected)
    assert kept_all.max() > with_share.max()  # the card's share drops a few specks on this sample


def test_predict_advanced_sets_the_seed_threshold(make_napari_viewer, registry, qtbot, errors):
    """*advanced* shows the setting that places the chosen model's seeds (the shipped model's
    distance threshold, the card's 0.5); a higher one parts touching nuclei more, and the dock's
    objects are those of ``segment`` with the same settings. A region model has no seeds."""
    image, model, viewer, predict = _rpe1_in_predict(make_napari_viewer)
    predict.advanced.value = True
    assert not predict.more.seed.native.isHidden()
    assert predict.more.seed_setting == "seed_threshold"
    assert predict.more.seed.value == model.card.postprocess["seed_threshold"] == 0.5
    assert "distance" in predict.more.seed.tooltip
    predict.more.seed.value = 0.85
    parted, expected, at_card = _dock_and_segment(qtbot, predict, viewer, model, image, seed_threshold=0.85)
    assert not errors
    np.testing.assert_array_equal(parted, expected)
    assert parted.max() > at_card.max()  # touching nuclei the card's 0.5 leaves joined
    predict.advanced.value = False  # the card's own again
    assert predict.settings(model.card).seed_threshold == 0.5
    other = PredictWidget(viewer)
    other.advanced.value = True
    other.model.value = "tiny"  # a model with a boundary output: its seeds are where that is low
    assert other.more.seed_setting == "boundary_threshold" and "boundary" in other.more.seed.tooltip
    assert not other.more.seed.native.isHidden()
    other.more.seed.value = 0.3
    from napari_unet.networks.model import read_card, resolve_model_path, save_model

    assert other.settings(read_card(resolve_model_path("tiny"))).boundary_threshold == 0.3
    from tests.conftest import bright_region_model

    net, card = bright_region_model()
    save_model(net, registry / "regions", card)
    other.model.reset_choices()
    other.model.value = "regions"
    assert other.more.seed_setting is None and other.more.seed.native.isHidden()  # a region model has no seeds


def test_opening_the_advanced_form_changes_nothing_until_a_field_is_edited(make_napari_viewer, registry, stack):
    """It showed the card's tile and overlap and gave them back, replacing the tiling chosen per
    image: opening a form changed the result (#27)."""
    viewer = make_napari_viewer()
    viewer.add_image(stack[0], name="cells")
    predict = PredictWidget(viewer)
    predict.model.value, predict.device.value = "tiny", "cpu"
    from napari_unet.networks.model import read_card, resolve_model_path

    card = read_card(resolve_model_path("tiny"))
    closed = predict.settings(card)
    predict.advanced.value = True
    assert predict.more.overrides(card) == {} and predict.settings(card) == closed
    predict.more.tile.value = 96  # one field edited: that one is given back, nothing else
    assert predict.more.overrides(card) == {"tile": 96}
    predict.model.value = "nuclei"  # another model's card is shown afresh, nothing edited
    assert predict.more.overrides(read_card(resolve_model_path("nuclei"))) == {}


def test_count_replaces_only_the_layers_it_made(make_napari_viewer, registry, qtbot):
    """Count found its old outlines by name, so a person's own layer of that name was removed."""
    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((40, 40), np.int32), name="drawn")
    labels.data[5:15, 5:15] = 1
    mine = viewer.add_shapes([np.array([[0, 0], [0, 9], [9, 9]])], shape_type="polygon", name="drawn contours")
    count = CountWidget(viewer)
    count.labels_layer.value = labels
    for _ in range(2):  # the second count replaces the first one's outlines, never the person's
        count.run_button.clicked.emit()
        wait_for(qtbot, count)
        qtbot.waitUntil(lambda: "counted" in count.status.value, timeout=30_000)
    assert mine in viewer.layers and len(mine.data) == 1
    made = [layer for layer in viewer.layers if layer.name.startswith("drawn contours") and layer is not mine]
    assert len(made) == 1 and len(made[0].data) == 1
