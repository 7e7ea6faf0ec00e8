"""The Qt-free workflow state: the rules between labels, checked data, predictions and the model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.objects.pipeline import Settings
from napari_unet.work.workflow import Workflow


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    import torch

    from napari_unet.networks.model import ModelCard, build_model, save_model

    torch.manual_seed(0)
    card = ModelCard("tiny", "unet", {"features": (4, 8, 16)}, classes=("foreground", "boundary"), tile=64)
    return save_model(build_model(card), tmp_path_factory.mktemp("models") / "tiny")


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


def test_repredict_is_a_workflow_call_that_keeps_checked_slices(flow, tiny_path):
    """Fine-tune's Re-predict needs no dock step: the workflow runs it and writes through
    the rules of prediction (checked slices kept, new ids past the old ones)."""
    from napari_unet.jobs import run_to_end
    from napari_unet.networks.model import load_model

    rng = np.random.default_rng(2)
    image = (rng.random((3, 64, 64)) * 1000).astype(np.uint16)
    image[:, 20:40, 20:40] += 3000
    work = flow.work_for("image", name="cells", shape=(3, 64, 64), session=False)
    work.image, work.axes = image, "ZYX"
    work.labels = np.zeros((3, 64, 64), np.int32)
    work.labels[1, :5, :5] = 7  # a person's object on a checked slice
    work.mark_checked(1)
    run, job = flow.repredict(work, load_model(tiny_path))
    assert run.planes == [0, 2] and run.kept == [1]
    run.result = run_to_end(job)
    written = run.write_all()
    run.finish()
    assert sorted(written) == [(0,), (2,)] and run.written == [0, 2]
    assert work.labels[1, :5, :5].tolist() == [[7] * 5] * 5 and work.labels[1, 5:].max() == 0
    new_ids = np.unique(work.labels[[0, 2]])
    assert new_ids.min() == 0 and (len(new_ids) == 1 or new_ids[1] > 7)
    assert work.predicted == {0, 2} and work.card.name == run.card.name
    assert run.outcome() == "done: 2 slice(s); 1 checked slice(s) kept"


def test_repredict_refuses_what_it_cannot_do(flow, tiny_path):
    from napari_unet.networks.model import load_model

    work = flow.work_for("image", name="cells", shape=(2, 8, 8), session=False)
    with pytest.raises(ValueError, match="choose the image and the labels it learnt from first"):
        flow.repredict(work, load_model(tiny_path))
    work.image, work.labels = np.zeros((2, 8, 8)), np.zeros((2, 8, 8), np.int32)
    work.checked.update({0, 1})
    with pytest.raises(ValueError, match="every slice of cells is checked"):
        flow.repredict(work, load_model(tiny_path))


def test_sessions_of_two_images_are_kept_apart(flow, tmp_path):
    a = flow.work_for("a", name="a", shape=(8, 8), root=tmp_path)
    b = flow.work_for("b", name="b", shape=(8, 8), root=tmp_path)
    assert a.session.folder != b.session.folder


def test_filled_slices_are_marked_until_checked_and_unmarked_when_taken_back(tmp_path):
    from napari_unet.work.workflow import Workflow

    flow = Workflow(model_name="nuclei")
    work = flow.work_for("layer", name="ct", shape=(7, 32, 32), root=tmp_path, session=True)
    labels = np.zeros((7, 32, 32), np.int32)
    labels[0, 8:24, 8:24] = 1
    labels[6, 10:20, 10:20] = 1
    work.labels = labels
    for z in (0, 6):
        work.mark_checked(z)
    filled, changed = work.fill_between()
    assert changed == [1, 2, 3, 4, 5] and not labels[1:6].any()  # nothing written until the caller does
    new = filled != labels
    labels[new] = filled[new]
    work.mark_interpolated(changed, new)
    work.mark_checked(3)
    assert work.interpolated_slices() == [1, 2, 4, 5]
    assert work.training_weights(0.5) == {1: 0.5, 2: 0.5, 4: 0.5, 5: 0.5} and work.training_weights(0) == {}
    labels[5][new[5]] = 0  # the filling of slice 5 taken back (an undo)
    assert work.interpolated_slices() == [1, 2, 4]
    with pytest.raises(ValueError, match="from 0 to 1"):
        work.training_weights(1.5)
    work.session.save(labels, checked=work.checked_slices(), extra={"interpolated": work.interpolated_slices()})
    assert work.session.state()["interpolated"] == [1, 2, 4]  # the autosave keeps the difference
    flat = flow.work_for("flat", name="one", shape=(32, 32), session=False)
    flat.labels = np.zeros((32, 32), np.int32)
    with pytest.raises(ValueError, match="one 2D image; filling between slices needs a Z stack"):
        flat.fill_between()
