"""A new dock step is one file plus one registry entry (#27): the dock builds its tabs from
:mod:`napari_unet._widgets.steps`, and a step registered there runs a job like the others."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet._widgets import steps
from tests._qt.test_widgets import wait_for


@pytest.fixture
def measure_registered():
    before = list(steps.STEPS)
    steps.add_step(steps.StepEntry("Measure", "tests._qt._measure_step:MeasureStep", "measure_step"), after="Correct")
    yield
    steps.STEPS[:] = before


def test_the_dock_holds_the_registered_steps_in_order(make_napari_viewer, registry):
    from napari_unet._widgets.dock import UNetDock

    dock = UNetDock(make_napari_viewer())
    assert [dock.tabText(i) for i in range(dock.count())] == ["Predict", "Correct", "Suggest", "Fine-tune", "Count"]
    assert dock.predict_step.title == "Predict" and dock.count_step.title == "Count"


def test_a_step_registered_with_one_entry_is_a_tab_that_runs(make_napari_viewer, registry, qtbot, measure_registered):
    from napari_unet._widgets.dock import UNetDock

    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((20, 20), np.int32), name="drawn")
    labels.data[2:6, 3:8] = 1
    dock = UNetDock(viewer)
    titles = [dock.tabText(i) for i in range(dock.count())]
    assert titles == ["Predict", "Correct", "Measure", "Suggest", "Fine-tune", "Count"]
    step = dock.measure_step
    assert dock.widget(2) is step.native and step.workflow is dock.predict_step.workflow  # one workflow per viewer
    dock.reset_choices()  # reaches the new step too
    step.labels_layer.value = labels
    step.run_button.clicked.emit()
    wait_for(qtbot, step)
    assert step.result == 20 and step.status.value == "20 labelled pixel(s)"


def test_a_step_that_would_shadow_another_is_refused():
    with pytest.raises(ValueError, match="already in the dock"):
        steps.add_step(steps.StepEntry("Predict", "x:Y", "other"))
    with pytest.raises(
        ValueError, match="no step titled 'Nope'; the steps are Predict, Correct, Suggest, Fine-tune, Count"
    ):
        steps.add_step(steps.StepEntry("New", "x:Y", "new_step"), after="Nope")
