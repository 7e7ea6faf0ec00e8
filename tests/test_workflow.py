"""The Qt-free workflow state: the rules between labels, checked data, predictions and the model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.pipeline import Settings
from napari_unet.workflow import Workflow


@pytest.fixture
def flow(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_SESSIONS", str(tmp_path / "sessions"))
    return Workflow(model_name="nuclei")


def test_a_checked_slice_is_never_planned_nor_written_unless_asked(flow):
    image = object()
    work = flow.work_for(image, name="cells", shape=(4, 8, 8))
    work.labels = np.zeros((4, 8, 8), np.int32)
    work.mark_checked(1)
    work.mark_checked(3)
    assert work.plan(range(4)) == ([0, 2], [1, 3])
    assert work.plan(range(4), overwrite_checked=True) == ([0, 1, 2, 3], [])
    new = np.ones((8, 8), np.int32)
    assert work.merge(1, new) is None
    np.testing.assert_array_equal(work.merge(1, new, overwrite_checked=True), new)
    np.testing.assert_array_equal(work.merge(0, new), new)
    work.unmark(3)
    assert work.checked_slices() == [1]


def test_a_checked_region_keeps_its_labels_and_the_rest_is_predicted(flow):
    work = flow.work_for("image", name="big", shape=(6, 6))
    work.labels = np.full((6, 6), 7, np.int32)
    work.region = np.zeros((6, 6), np.uint8)
    work.region[:3] = 1
    merged = work.merge(0, np.ones((6, 6), np.int32))
    assert (merged[:3] == 7).all() and (merged[3:] == 1).all()


def test_slices_outside_the_image_are_refused_with_the_range(flow):
    work = flow.work_for("image", name="cells", shape=(3, 8, 8))
    with pytest.raises(ValueError, match=r"slice 5 is outside cells \(0..2\)"):
        work.mark_checked(5)
    with pytest.raises(ValueError, match="outside"):
        work.plan([0, -1])


def test_training_takes_the_region_with_whole_checked_slices_or_says_what_to_do(flow):
    work = flow.work_for("image", name="cells", shape=(3, 4, 4))
    with pytest.raises(ValueError, match="nothing is checked yet"):
        work.training_region()
    work.mark_checked(2)
    assert work.training_region() == [2]
    work.region = np.zeros((3, 4, 4), np.uint8)
    work.region[0, :2] = 1
    region = work.training_region()
    assert region[0, :2].all() and not region[0, 2:].any() and region[2].all() and not region[1].any()


def test_handles_find_their_work_and_a_closed_layer_is_forgotten(flow):
    image, labels, prob = object(), object(), object()
    work = flow.work_for(image, name="cells", shape=(8, 8))
    flow.attach(work, labels, "labels")
    flow.attach(work, prob, "probability")
    assert flow.find(labels) is work and work.role_of(prob) == "probability"
    assert flow.work_for(image, name="other", shape=(1, 1)) is work  # one work per image
    flow.forget(prob)
    assert flow.find(prob) is None and flow.find(image) is work
    flow.forget(image)
    flow.forget(labels)
    assert flow.works == []


def test_a_model_switch_is_one_call_that_every_listener_hears(flow, tmp_path):
    heard = []
    flow.connect("model", heard.append)
    flow.switch_model("nuclei")
    assert heard == ["nuclei"] and flow.model().card.name == "nuclei"
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        flow.switch_model("nope")
    assert flow.model_name == "nuclei" and heard == ["nuclei"]


def test_a_prediction_records_its_settings_for_counting(flow):
    work = flow.work_for("image", name="cells", shape=(2, 8, 8))
    settings = Settings(threshold=0.7, min_area=33)
    work.record_prediction([0, 1], settings, card=None)
    assert work.settings is settings and work.predicted == {0, 1}


def test_a_prediction_request_needs_the_predict_step(flow):
    with pytest.raises(ValueError, match="open the Predict step"):
        flow.request_prediction(planes=[0])
    flow.handle("predict", lambda **kw: kw["planes"])
    assert flow.request_prediction(planes=[3]) == [3]


def test_sessions_of_two_images_are_kept_apart(flow, tmp_path):
    a = flow.work_for("a", name="a", shape=(8, 8), root=tmp_path)
    b = flow.work_for("b", name="b", shape=(8, 8), root=tmp_path)
    assert a.session.folder != b.session.folder
