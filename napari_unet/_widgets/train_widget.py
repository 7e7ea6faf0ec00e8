"""Step 4, Fine-tune: learn from the checked slices/region in the background; keep the best."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton, SpinBox, create_widget

from napari_unet._widgets._common import (
    follow_layers,
    image_axes,
    notify_error,
    notify_info,
    preload_core,
    preload_training,
    start_job,
)
from napari_unet._widgets._curve import CurveWidget
from napari_unet._widgets.predict_widget import model_choices

if TYPE_CHECKING:
    import napari


class TrainWidget(Container):
    """Base model, time budget and name; Train/Cancel; live curve; quality-gate verdict."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        preload_core()
        preload_training()
        self._viewer = viewer
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.labels_layer = create_widget(annotation="napari.layers.Labels", label="labels")
        self.base = ComboBox(label="base model", choices=model_choices)
        self.seconds = SpinBox(label="time budget (s)", value=60, min=5, max=24 * 3600, step=15)
        self.model_name = LineEdit(label="new model name", value="")
        self.train_button = PushButton(text="Train")
        self.cancel_button = PushButton(text="Stop (keep best)", enabled=False)
        self.verdict = Label(value="")
        self.use_button = PushButton(text="Use new model", enabled=False)
        self.repredict_button = PushButton(text="Re-predict unchecked slices", enabled=False)
        super().__init__(widgets=[self.image, self.labels_layer, self.base, self.seconds, self.model_name, self.train_button,
                                  self.cancel_button, self.verdict, self.use_button, self.repredict_button])  # fmt: skip
        self.curve = CurveWidget()
        self.native.layout().insertWidget(7, self.curve)
        self.train_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.stop)
        self.use_button.changed.connect(self.use_model)
        self.repredict_button.changed.connect(self.repredict)
        self.trainer: Any = None
        self._stop_requested = False
        self.worker: Any = None
        self.result: Any = None
        self.saved_name: str | None = None
        follow_layers(self, viewer)

    def _items(self) -> list[Any]:
        from napari_unet.train import TrainingItem

        image, labels = self.image.value, self.labels_layer.value
        if image is None or labels is None:
            raise ValueError("choose the image and its corrected labels layer first")
        checked = labels.metadata.get("checked", [])
        region_name = f"{labels.name} checked region"
        region: Any = None
        if region_name in self._viewer.layers and np.asarray(self._viewer.layers[region_name].data).any():
            region = np.asarray(self._viewer.layers[region_name].data) > 0
            if checked and labels.ndim > 2:  # painted region plus whole checked slices
                flat = region.reshape(-1, *region.shape[-2:])
                for z in checked:
                    flat[z] = True
        elif checked:
            region = list(checked)
        else:
            raise ValueError(
                "nothing is checked yet: mark the slices you corrected (Correct step), or paint a checked region"
            )
        data = np.asarray(labels.data).astype(np.int32, copy=False)
        return [TrainingItem(image.data, data, region, image.name, image_axes(image))]

    def run(self, *_: Any, config: Any = None) -> Any:
        from napari_unet.model import ModelLoadError, load_model
        from napari_unet.train import TrainConfig

        if self.worker is not None:
            notify_error("Fine-tune: training is already running; press Stop to end it first.")
            return None
        try:
            items = self._items()
            base = load_model(self.base.value)
        except (ValueError, OSError, ModelLoadError) as exc:
            notify_error(f"Fine-tune: {exc}")
            return None
        config = config or TrainConfig(
            epochs=1000, steps_per_epoch=10, max_seconds=float(self.seconds.value), crop=192, patience=1000
        )
        self.curve.clear()
        self.result = None
        self.trainer = None
        self._stop_requested = False
        self.train_button.enabled, self.cancel_button.enabled = False, True
        self.use_button.enabled = self.repredict_button.enabled = False
        self.verdict.value = "preparing the checked data..."
        job = self._job(items, base, config, self.model_name.value.strip() or None)
        self.worker = start_job(
            job, desc="Fine-tune", on_yield=self._on_event, on_done=self._on_done, on_finally=self._reset
        )
        return self.worker

    def _job(self, items: list, base: Any, config: Any, name: str | None) -> Any:
        """Build the trainer in the worker (copying the model and preparing the data takes
        seconds for a big stack: never on the GUI thread), then train."""
        from napari_unet.train import Trainer

        trainer = Trainer(items, base=base, config=config, name=name)
        self.trainer = trainer
        if self._stop_requested:
            trainer.stop()
        return (yield from trainer.steps())

    def _on_event(self, event: Any) -> None:
        info = event.info
        if info.get("kind") == "epoch":
            self.curve.add_dice(event.done, info["val_dice"])
        elif "loss" in info:
            self.curve.add_loss(info["loss"])

    def _on_done(self, result: Any) -> None:
        self.result = result
        self.verdict.value = result.verdict()
        self.use_button.enabled = True
        notify_info(f"Fine-tune finished: {result.verdict()}")

    def _reset(self) -> None:
        self.worker = None
        self.train_button.enabled, self.cancel_button.enabled = True, False

    def stop(self, *_: Any) -> None:
        self._stop_requested = True
        if self.trainer is not None:
            self.trainer.stop()
        if self.worker is not None:
            self.verdict.value = "stopping after this step..."

    def use_model(self, *_: Any) -> str | None:
        """Save the new model to the user registry and select it for prediction."""
        from napari_unet.model import save_model, user_model_dir

        if self.result is None:
            return None
        try:
            save_model(self.result.model, user_model_dir() / self.result.card.name, self.result.card)
        except OSError as exc:
            notify_error(f"Could not save the new model: {exc}")
            return None
        self.saved_name = self.result.card.name
        for widget in self._viewer.window._dock_widgets.values() if hasattr(self._viewer, "window") else []:
            inner = getattr(widget, "widget", lambda: None)()
            for candidate in getattr(inner, "_napari_unet_steps", []):
                if hasattr(candidate, "model"):
                    candidate.reset_choices()
                    candidate.model.value = self.saved_name
        self.base.reset_choices()
        self.repredict_button.enabled = True
        notify_info(f"Saved model '{self.saved_name}' to {user_model_dir()}")
        return self.saved_name

    def repredict(self, *_: Any, predict_widget: Any = None) -> Any:
        """Predict the unchecked slices again with the new model; checked slices are kept."""
        from napari_unet._widgets.predict_widget import PredictWidget

        labels = self.labels_layer.value
        if self.result is None or labels is None:
            return None
        widget = predict_widget or PredictWidget(self._viewer)
        widget.image.value = self.image.value
        widget.protected = set(labels.metadata.get("checked", []))
        n = int(np.prod(labels.data.shape[:-2])) if labels.ndim > 2 else 1
        widget.scope.value = "whole stack"
        return widget.run(model=self.result.model, slices=[z for z in range(n) if z not in widget.protected])
