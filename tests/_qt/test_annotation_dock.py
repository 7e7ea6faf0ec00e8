"""Fewer slices to draw, in the dock (#30): Correct fills between checked slices (one undo,
marked filled until checked, kept by the autosave, weighted by Fine-tune) and the Suggest step
ranks the unchecked slices, shows the model's doubt as a layer and goes to the slice."""

from __future__ import annotations

import numpy as np

from napari_unet._widgets._step import workflow_for
from napari_unet._widgets.correct_widget import CorrectWidget
from napari_unet._widgets.suggest_widget import SuggestWidget
from napari_unet._widgets.train_widget import TrainWidget
from tests._qt.conftest import wait_for


def drawn_stack():
    """A lesion drawn on slices 0 and 6 of a 7-slice stack, and another object drawn on slice 3."""
    labels = np.zeros((7, 48, 48), np.int32)
    yy, xx = np.indices((48, 48))
    labels[0][(yy - 24) ** 2 + (xx - 20) ** 2 < 100] = 1
    labels[6][(yy - 24) ** 2 + (xx - 28) ** 2 < 64] = 1
    labels[3, 2:6, 2:6] = 2  # a person's object on a slice between: never overwritten
    return labels


def check(viewer, widget, z):
    viewer.dims.set_point(0, z)
    widget.mark_checked()


def test_fill_between_checked_slices_is_one_undo_and_stays_marked_until_checked(make_napari_viewer, registry, errors):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(drawn_stack(), name="lesion")
    widget = CorrectWidget(viewer)
    widget.labels_layer.value = layer
    check(viewer, widget, 0)
    assert widget.fill_between() == [] and "only one checked slice (0)" in errors[-1]  # nothing to fill between
    check(viewer, widget, 6)
    before = np.array(layer.data, copy=True)
    changed = widget.fill_between()
    assert changed == [1, 2, 3, 4, 5]
    assert all((layer.data[z] == 1).any() for z in changed) and (layer.data[3, 2:6, 2:6] == 2).all()
    np.testing.assert_array_equal(layer.data[[0, 6]], before[[0, 6]])  # the drawn slices as drawn
    assert widget.filled.value == "filled, not checked yet: 1-5"
    assert widget.autosave(force=True) and widget.session.state()["interpolated"] == [1, 2, 3, 4, 5]
    check(viewer, widget, 2)  # checking a filled slice makes it checked
    assert widget.work.interpolated_slices() == [1, 3, 4, 5] and widget.work.checked_slices() == [0, 2, 6]
    assert widget.session.state()["interpolated"] == [1, 3, 4, 5]
    layer.undo()  # the mark of slice 2 is not a paint: the one undo takes the whole filling back
    np.testing.assert_array_equal(layer.data, before)
    assert widget.autosave()  # the undone filling is unmarked and saved so
    assert widget.work.interpolated_slices() == [] and widget.session.state()["interpolated"] == []
    assert widget.filled.value == ""
    np.testing.assert_array_equal(widget.session.load()[0], before)


def test_fine_tune_learns_filled_slices_with_the_weight_chosen(make_napari_viewer, registry):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((7, 48, 48)).astype(np.float32), name="ct")
    layer = viewer.add_labels(drawn_stack(), name="lesion")
    correct = CorrectWidget(viewer)
    correct.labels_layer.value = layer
    for z in (0, 6):
        check(viewer, correct, z)
    correct.fill_between()
    train = TrainWidget(viewer)
    train.image.value, train.labels_layer.value = image, layer
    train.filled_weight.value = 0.3
    (item,) = train._items()
    assert item.region == [0, 6] and item.weights == {z: 0.3 for z in (1, 2, 3, 4, 5)}
    train.filled_weight.value = 0.0  # none, as the person chooses
    assert train._items()[0].weights is None


def test_suggest_ranks_unchecked_slices_shows_doubt_and_goes_to_them(
    make_napari_viewer, registry, stack, qtbot, errors
):
    viewer = make_napari_viewer()
    image = viewer.add_image(stack[0], name="cells", scale=(2, 1, 1))
    layer = viewer.add_labels(stack[1].copy(), name="cells labels", scale=(2, 1, 1))
    correct = CorrectWidget(viewer)
    correct.labels_layer.value = layer
    viewer.dims.set_point(0, 2)  # (world: slice 1 at a 2-unit Z step)
    correct.mark_checked()
    workflow_for(viewer).switch_model("tiny")
    widget = SuggestWidget(viewer)
    widget.image.value, widget.labels_layer.value = image, layer
    widget.method.value = "both"
    assert widget.run() is not None
    wait_for(qtbot, widget)
    assert not errors
    doubt = viewer.layers["cells doubt"]
    assert doubt.data.shape == stack[0].shape and 0 <= doubt.data.min() and doubt.data.max() <= 1
    assert len(widget.ranked.choices) == 3 and not any(c.startswith("slice 1:") for c in widget.ranked.choices)
    scores = [s.score for s in widget.scores]
    assert scores == sorted(scores, reverse=True)
    first = widget.scores[0]
    widget.ranked.value = [widget.ranked.choices[0]]  # a click on the list goes to that slice
    assert viewer.dims.point[0] == first.z * 2
    target = widget.go_next()  # Next: the top unchecked slice other than the one in view
    assert target.z == widget.scores[1].z and viewer.dims.point[0] == target.z * 2
    correct.mark_checked()  # the person checks it: it leaves the list
    assert len(widget.ranked.choices) == 2 and all(s.z != target.z for s in widget.scores)
    viewer.dims.set_point(0, 0)
    viewer.window._qt_viewer.canvas.native.setFocus()
    assert widget.go_next().z == widget.scores[0].z  # (Shift-N does the same)


def test_suggest_refuses_labels_of_another_image_in_one_sentence(make_napari_viewer, registry, stack, errors):
    viewer = make_napari_viewer()
    image = viewer.add_image(stack[0], name="cells")
    other = viewer.add_labels(np.zeros((4, 50, 50), np.int32), name="other labels")
    workflow_for(viewer).switch_model("tiny")
    widget = SuggestWidget(viewer)
    widget.image.value, widget.labels_layer.value = image, other
    assert widget.run() is None
    assert "have shape (4, 50, 50) but the image has (4, 96, 96)" in errors[-1]
    assert widget.go_next() is None  # nothing ranked yet: said, not failed


def test_one_large_image_gets_its_regions_ranked_and_a_click_centres_on_one(make_napari_viewer, registry, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(1)
    image = viewer.add_image(rng.normal(100, 10, (300, 520)).astype(np.float32), name="slide")
    workflow_for(viewer).switch_model("tiny")
    widget = SuggestWidget(viewer)
    widget.image.value = image
    widget.method.value = "margin"
    assert widget.run() is not None
    wait_for(qtbot, widget)
    assert viewer.layers["slide doubt"].data.shape == (300, 520)
    assert len(widget.ranked.choices) == 6  # 2 x 3 regions of 256 px (the last ones cut by the edge)
    target = widget.go_next()
    camera = getattr(viewer, "scene", viewer).camera
    assert tuple(np.round(camera.center[-2:])) == (target.y + target.height / 2, target.x + target.width / 2)
