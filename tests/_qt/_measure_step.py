"""A dock step made only for the test of the step registry: one file, like a real step.

*Measure* counts the non-zero pixels of the chosen labels in a worker and shows the
number: a form, a job through the core's generator protocol, and a result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import PushButton, create_widget

from napari_unet._widgets._step import Step


class MeasureStep(Step):
    title = "Measure"

    def __init__(self, viewer: Any) -> None:
        self.labels_layer = create_widget(label="labels", annotation="napari.layers.Labels")
        run_button = PushButton(text="Measure")
        super().__init__(viewer, [self.labels_layer, run_button], run_button=run_button)
        self.run_button.changed.connect(self.run)
        self.result: int | None = None

    def run(self, *_: Any) -> Any:
        layer = self.labels_layer.value
        if layer is None:
            self.refuse("choose a labels layer first.")
            return None
        data = np.asarray(layer.data)

        def job() -> Any:
            from napari_unet.jobs import Progress

            yield Progress(0, 1, {})
            return int(np.count_nonzero(data))

        def done(n: int) -> None:
            self.result = n
            self.status.value = f"{n} labelled pixel(s)"

        return self.start(job(), desc="Measure", on_done=done)
