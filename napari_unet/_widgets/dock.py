"""The whole loop in one dock: one tab per registered step (:mod:`napari_unet._widgets.steps`:
Predict, Correct, Fine-tune, Count)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QTabWidget

if TYPE_CHECKING:
    import napari


class UNetDock(QTabWidget):
    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari_unet._widgets.steps import STEPS, step_class

        super().__init__()
        self._napari_unet_steps = []
        for entry in STEPS:
            step = step_class(entry)(viewer)
            setattr(self, entry.attribute, step)
            self._napari_unet_steps.append(step)
            self.addTab(step.native, entry.title)

    def reset_choices(self, *_: object) -> None:
        for step in self._napari_unet_steps:
            step.reset_choices()
