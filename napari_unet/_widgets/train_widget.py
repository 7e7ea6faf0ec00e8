"""Step 4, Fine-tune: learn from the checked slices/region in the background; keep the best."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    PushButton,
    SpinBox,
    create_widget,
)

from napari_unet._widgets._common import (
    image_axes,
    notify_error,
    notify_info,
    notify_warning,
    wrapping_label,
)
from napari_unet._widgets._curve import CurveWidget
from napari_unet._widgets._step import Step, choose_predicted, listen, paired_work
from napari_unet._widgets._warmup import preload_core, preload_training
from napari_unet._widgets.predict_widget import model_choices

if TYPE_CHECKING:
    import napari


START_CHOICES = ("improve an existing model", "a new model for these images")
TASKS = ("objects to count", "regions", "several named classes")


class TrainWidget(Step):
    """Improve a model, or start a new one for images no model knows; time budget and name;
    Train/Stop; live curve; quality-gate verdict."""

    title = "Fine-tune"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        preload_core()
        preload_training()
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.labels_layer = create_widget(annotation="napari.layers.Labels", label="labels")
        from napari_unet.networks.architectures import ARCHITECTURES
        from napari_unet.networks.recipes import FROM_SCRATCH, IMAGE_KINDS
        from napari_unet.training.losses import LOSSES

        self.start_from = ComboBox(label="start from", choices=START_CHOICES, value=START_CHOICES[0])
        self.base = ComboBox(label="base model", choices=model_choices)
        # a new model: what a person knows of the task; the rest under "advanced"
        self.task = ComboBox(label="the model finds", choices=TASKS, value=TASKS[0], visible=False)
        self.class_names = LineEdit(label="class names", value="", visible=False)
        self.class_names.tooltip = (
            "comma-separated, in the order of their label values 1, 2, ... e.g. left_lung, right_lung"
        )
        self.image_kind = ComboBox(label="image kind", choices=list(IMAGE_KINDS), visible=False)
        self.lateral = CheckBox(label="left and right matter (no mirror flips)", value=False, visible=False)
        self.advanced = CheckBox(label="advanced", value=False, visible=False)
        self.architecture = ComboBox(label="architecture", choices=ARCHITECTURES, value="unet", visible=False)
        self.loss = ComboBox(label="loss", choices=LOSSES, value="dice_ce", visible=False)
        self.lr = FloatSpinBox(
            label="learning rate", value=FROM_SCRATCH["lr"], min=1e-5, max=1e-1, step=1e-4, visible=False
        )
        self.input_size = SpinBox(label="whole-image size (0: tiles)", value=0, min=0, max=2048, step=16,
                                  visible=False)  # fmt: skip
        self._new_model_widgets = [self.task, self.class_names, self.image_kind, self.lateral, self.advanced]
        self._advanced_widgets = [self.architecture, self.loss, self.lr, self.input_size]
        self.seconds = SpinBox(label="time budget (s)", value=60, min=5, max=24 * 3600, step=15)
        self.filled_weight = FloatSpinBox(label="weight of filled slices", value=0.5, min=0.0, max=1.0, step=0.1)
        self.filled_weight.tooltip = (
            "Slices filled between checked ones (Correct) that nobody checked: how much training learns from them "
            "(1: as much as a checked slice, 0: not at all). A slice you check counts fully."
        )
        self.model_name = LineEdit(label="new model name", value="")
        self.verdict = wrapping_label()  # a long verdict wraps instead of widening the dock for good
        self.use_button = PushButton(text="Use new model", enabled=False)
        self.use_anyway = CheckBox(label="use it although it is not better", value=False, visible=False)
        self.repredict_button = PushButton(text="Re-predict unchecked slices", enabled=False)
        train_button, cancel_button = PushButton(text="Train"), PushButton(text="Stop (keep best)")
        # the model Predict uses, as a bioimage.io package for Fiji (deepImageJ), ilastik, QuPath
        self.export_path = FileEdit(label="package", mode="w", filter="*.zip")
        self.export_button = PushButton(text="Export for bioimage.io")
        self.export_button.tooltip = "Write the model Predict uses as a bioimage.io package (.zip), tested on export"
        # a package from bioimage.io or another tool, as a model of Predict's list
        self.import_path = FileEdit(label="import", mode="r", filter="*.zip")
        self.trust = CheckBox(label="run its TorchScript: I trust where it came from", value=False)
        self.trust.tooltip = (
            "TorchScript is a program that runs whatever its author wrote when it predicts (files and network "
            "included). A package with ONNX weights runs those and needs no trust."
        )
        self.import_button = PushButton(text="Import bioimage.io package")
        form = [self.image, self.labels_layer, self.start_from, self.base, *self._new_model_widgets,
                *self._advanced_widgets, self.seconds, self.filled_weight, self.model_name, train_button]  # fmt: skip
        super().__init__(viewer, [*form, cancel_button, self.verdict, self.use_anyway, self.use_button,
                                  self.repredict_button, self.export_path, self.export_button,
                                  self.import_path, self.trust, self.import_button],
                         run_button=train_button, cancel_button=cancel_button)  # fmt: skip
        self.train_button = train_button
        self.curve = CurveWidget()
        self.native.layout().insertWidget(len(form) + 2, self.curve)
        self.start_from.changed.connect(self._show_form)
        self.advanced.changed.connect(self._show_form)
        self.task.changed.connect(self._show_form)
        self.train_button.changed.connect(self.run)
        self.use_button.changed.connect(self.use_model)
        self.use_anyway.changed.connect(self._update_use_button)
        self.repredict_button.changed.connect(self.repredict)
        self.export_button.changed.connect(self.export)
        self.import_button.changed.connect(self.import_package)
        self._export_default = self._default_export(self.workflow.model_name)
        self.export_path.value = self._export_default
        listen(self.workflow, "predicted", self._predicted)
        listen(self.workflow, "model", self._model_switched)
        self.trainer: Any = None
        self._stop_requested = False
        self.result: Any = None
        self.saved_name: str | None = None

    @property
    def new_model(self) -> bool:
        return self.start_from.value == START_CHOICES[1]

    def _show_form(self, *_: Any) -> None:
        new = self.new_model
        self.base.visible = not new
        for widget in self._new_model_widgets:
            widget.visible = new
        self.class_names.visible = new and self.task.value != TASKS[0]
        for widget in self._advanced_widgets:
            widget.visible = new and bool(self.advanced.value)

    def new_card(self, image: Any) -> Any:
        """The card of the new model the form describes (checked: a ValueError says what to change)."""
        from napari_unet.networks.recipes import IMAGE_KINDS, new_model_card

        names = [n.strip() for n in self.class_names.value.split(",") if n.strip()]
        if self.task.value == TASKS[0]:
            classes, names = 1, None
        elif self.task.value == TASKS[1]:
            names = names or ["region"]
            if len(names) != 1:
                raise ValueError("'regions' takes one class name; choose 'several named classes' for more")
            classes = 2
        else:
            if len(names) < 2:
                raise ValueError("name the classes, separated by commas (at least two), e.g. left_lung, right_lung")
            classes = len(names) + 1
        in_channels = 3 if image.rgb else 1
        return new_model_card(
            classes=classes, class_names=names, in_channels=in_channels,
            normalisation=IMAGE_KINDS[self.image_kind.value], architecture=self.architecture.value,
            input_size=int(self.input_size.value) or None, flips=not self.lateral.value,
            name=self.model_name.value.strip() or "new",
        )  # fmt: skip

    @staticmethod
    def _default_export(name: str) -> str:
        from pathlib import Path

        return str(Path.home() / f"{name}.bioimageio.zip")

    def export(self, *_: Any) -> Any:
        """Write the model Predict uses as a bioimage.io package, in the background; the
        package is tested by bioimage.io's own test before the step says it is done."""
        from pathlib import Path

        if self.busy():
            return None
        path = Path(str(self.export_path.value or "")).expanduser()
        if not str(self.export_path.value or "").strip() or path.is_dir():
            self.refuse("choose a file for the package, ending in .zip")
            return None
        if path.suffix.lower() != ".zip":
            path = path.with_name(path.name + ".zip")
        name = self.workflow.model_name

        def job() -> Any:
            from napari_unet.exchange import export_package

            yield from ()
            return export_package(name, path)

        self.status.value = f"exporting {name} for bioimage.io..."
        return self.start(job(), desc="Export", on_done=self._exported)

    def _exported(self, result: Any) -> None:
        skipped = "".join(f"; no {fmt} weights ({why})" for fmt, why in result.skipped.items())
        skipped += "".join(f"; note: {note}" for note in result.notes)
        self.status.value = f"exported to {result.path.name}"
        notify_info(
            f"Exported to {result.path} (weights: {', '.join(result.weights)}{skipped}); bioimage.io's own test "
            f"{result.test}. Open it in Fiji (deepImageJ), ilastik or QuPath."
        )

    def import_package(self, *_: Any) -> Any:
        """Register a bioimage.io package as a model, in the background, and make it Predict's;
        its TorchScript runs only with *trust* ticked (said in one sentence otherwise)."""
        from pathlib import Path

        if self.busy():
            return None
        text = str(self.import_path.value or "").strip()
        if not text or not Path(text).expanduser().exists():
            self.refuse("choose a bioimage.io package (.zip) to import")
            return None
        path, trust = Path(text).expanduser(), bool(self.trust.value)

        def job() -> Any:
            from napari_unet.exchange import import_package

            yield from ()
            return import_package(path, trust=trust)

        self.status.value = f"importing {path.name}..."
        return self.start(job(), desc="Import", on_done=self._imported)

    def _imported(self, registered: Any) -> None:
        name = registered.stem
        self.base.reset_choices()
        self.workflow.switch_model(name)
        self.status.value = f"imported as {name}"
        notify_info(f"Imported as '{name}'; Predict now uses it.")

    def _model_switched(self, name: str) -> None:
        self.base.reset_choices()
        if str(self.export_path.value) == self._export_default:  # the user has not chosen a file: follow the model
            self._export_default = self._default_export(name)
            self.export_path.value = self._export_default

    def _predicted(self, work: Any) -> None:
        """A prediction was made: its image and labels are what will be corrected and learnt."""
        choose_predicted(self._viewer, work, {"image": self.image, "labels": self.labels_layer})

    def _items(self) -> list[Any]:
        from napari_unet.training.train import TrainingItem

        image, labels = self.image.value, self.labels_layer.value
        if image is None or labels is None:
            raise ValueError("choose the image and its corrected labels layer first")
        work = paired_work(self.workflow, image, labels)
        region = work.training_region()
        weights = work.training_weights(float(self.filled_weight.value))
        data = np.asarray(labels.data).astype(np.int32, copy=False)
        return [TrainingItem(image.data, data, region, image.name, image_axes(image), weights=weights or None)]

    def run(self, *_: Any, config: Any = None) -> Any:
        from napari_unet.networks.model import ModelLoadError, load_model
        from napari_unet.training.train import TrainConfig

        if self.busy():
            return None
        base = card = None
        try:
            items = self._items()
            if self.new_model:
                card = self.new_card(self.image.value)
            else:
                base = load_model(self.base.value)
        except (ValueError, OSError, ModelLoadError) as exc:
            self.refuse(str(exc))
            return None
        from napari_unet.networks.recipes import FROM_SCRATCH, training_crop

        if config is None and card is not None:  # a new model learns from nothing: no early give-up
            config = TrainConfig(epochs=100_000, steps_per_epoch=10, max_seconds=float(self.seconds.value),
                                 crop=training_crop(card), loss=self.loss.value,
                                 **{**FROM_SCRATCH, "lr": float(self.lr.value)})  # fmt: skip
        config = config or TrainConfig(
            epochs=1000,
            steps_per_epoch=10,
            max_seconds=float(self.seconds.value),
            crop=training_crop(None),
            patience=1000,
        )
        self.curve.clear()
        self.result = None
        self.trainer = None
        self._stop_requested = False
        self.use_button.enabled = self.repredict_button.enabled = False
        self.use_anyway.visible = False
        self.verdict.value = ""
        self.status.value = "preparing the checked data..."
        job = self._job(items, base, config, self.model_name.value.strip() or None, card)
        return self.start(job, desc="Fine-tune", on_yield=self._on_event, on_done=self._on_done)

    def _job(self, items: list, base: Any, config: Any, name: str | None, card: Any = None) -> Any:
        """Build the trainer in the worker (copying the model and preparing the data takes
        seconds for a big stack: never on the GUI thread), then train."""
        from napari_unet.training.train import Trainer

        if card is not None and name is None:
            import datetime as dt

            name = (
                f"{card.classes[1] if card.kind == 'semantic' else card.classes[0]}-{dt.datetime.now():%Y%m%d-%H%M%S}"
            )
        trainer = Trainer(items, base=base, card=card, config=config, name=name)
        self.trainer = trainer
        if self._stop_requested:
            trainer.stop()
        return (yield from trainer.steps())

    def _on_event(self, event: Any) -> None:
        info = event.info
        if info.get("kind") == "epoch":
            self.curve.add_dice(event.done, info["val_dice"])
            if info.get("val_dice_per_class"):
                self.curve.add_class_dice(event.done, info["val_dice_per_class"])
            self.status.value = f"training: epoch {event.done}, validation Dice {info['val_dice']:.3f}"
        elif "loss" in info:
            self.curve.add_loss(info["loss"])
            if not self._stop_requested and self.status.value.startswith("preparing"):
                self.status.value = "training..."

    def _on_done(self, result: Any) -> None:
        self.result = result
        self.verdict.value = result.verdict()
        self.use_anyway.visible = result.better is False
        self.use_anyway.value = False
        self._update_use_button()
        self.status.value = "done" if not result.stopped else "stopped: the best checkpoint is kept"
        notify_info(f"Fine-tune: {result.headline()}")  # whole in the toast; the detail is in the step

    def _update_use_button(self, *_: Any) -> None:
        """*Use new model* only for a model that is not worse, unless the user says otherwise."""
        ok = self.result is not None and (self.result.better is not False or bool(self.use_anyway.value))
        self.use_button.enabled = ok

    def stop(self, *_: Any) -> None:
        self.cancel()

    def cancel(self, *_: Any) -> None:
        """Stop after this step; the best checkpoint is kept (the job returns it)."""
        self._stop_requested = True
        if self.trainer is not None:
            self.trainer.stop()
        if self.worker is not None:
            self.status.value = "stopping after this step..."

    def use_model(self, *_: Any) -> str | None:
        """Save the new model to the user registry and make it the model of every step."""
        from napari_unet.networks.model import save_model, user_model_dir

        if self.result is None:
            return None
        if self.result.better is False and not self.use_anyway.value:
            self.refuse("the new model is not better than its parent; tick 'use it although it is not better' first.")
            return None
        try:
            save_model(self.result.model, user_model_dir() / self.result.card.name, self.result.card)
        except OSError as exc:
            notify_error(f"Could not save the new model: {exc}")
            return None
        self.saved_name = self.result.card.name
        self.base.reset_choices()
        self.workflow.switch_model(self.saved_name, self.result.model)
        self.repredict_button.enabled = True
        notify_info(f"Saved model '{self.saved_name}' to {user_model_dir()}; Predict now uses it.")
        return self.saved_name

    def repredict(self, *_: Any) -> Any:
        """Predict the unchecked slices again with the new model; checked slices are kept.
        A workflow call: it needs no other step open."""
        from napari_unet._widgets._result_layers import shown_probability

        labels = self.labels_layer.value
        if self.result is None or labels is None or self.busy():
            return None
        work = paired_work(self.workflow, self.image.value, labels)
        try:
            run, job = self.workflow.repredict(work, self.result.model)
        except ValueError as exc:
            self.refuse(str(exc))
            return None

        def done(_: Any) -> None:
            run.result = True
            written = run.write_all()  # here, on the thread that owns the labels layer
            run.finish()
            for role, layer in work.handles.items():  # the layers that show this work
                if role.split(":")[0] == "probability" and layer in self._viewer.layers:
                    for index, prob in written.items():
                        shown = shown_probability(role, prob, run.card)
                        if shown is not None:
                            layer.data[index] = shown
                if role.split(":")[0] in ("labels", "probability") and layer in self._viewer.layers:
                    layer.refresh()
            self.status.value = "re-predicted: " + run.outcome(self.failed)
            for warning in sorted(run.warnings):
                notify_warning(f"Re-predict {work.name}: {warning}")
            self.workflow.emit("predicted", work)

        self.status.value = f"re-predicting {len(run.planes)} unchecked slice(s)..."
        return self.start(job, desc=f"Re-predict {work.name}", on_done=done)
