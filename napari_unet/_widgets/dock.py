"""The whole loop in one dock: Predict, Correct, Fine-tune, Count as tabs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QTabWidget

if TYPE_CHECKING:
    import napari


class UNetDock(QTabWidget):
    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari_unet._widgets.correct_widget import CorrectWidget
        from napari_unet._widgets.count_widget import CountWidget
        from napari_unet._widgets.predict_widget import PredictWidget
        from napari_unet._widgets.train_widget import TrainWidget

        super().__init__()
        self.predict_step = PredictWidget(viewer)
        self.correct_step = CorrectWidget(viewer)
        self.train_step = TrainWidget(viewer)
        self.count_step = CountWidget(viewer)
        self._napari_unet_steps = [self.predict_step, self.correct_step, self.train_step, self.count_step]
        for title, step in zip(("Predict", "Correct", "Fine-tune", "Count"), self._napari_unet_steps):
            self.addTab(step.native, title)

    def reset_choices(self, *_: object) -> None:
        for step in self._napari_unet_steps:
            step.reset_choices()
