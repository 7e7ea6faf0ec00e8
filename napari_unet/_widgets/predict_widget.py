"""Step 2, Predict: image -> probabilities (hidden) and editable instance labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSpinBox,
    LineEdit,
    PushButton,
    RadioButtons,
    create_widget,
)

from napari_unet._widgets._advanced import AdvancedForm
from napari_unet._widgets._channels import channel_stack
from napari_unet._widgets._common import (
    current_plane_index,
    flat_slice,
    image_axes,
    notify_info,
    notify_warning,
)
from napari_unet._widgets._result_layers import ResultLayers
from napari_unet._widgets._step import Step, image_work, listen
from napari_unet._widgets._warmup import preload_core, preload_layers
from napari_unet.work.plane_jobs import engine_job, plane_job
from napari_unet.work.workflow import PredictionRun

if TYPE_CHECKING:
    import napari


def model_choices(widget: Any = None) -> list[str]:
    from napari_unet.networks.model import list_models

    return [e.name for e in list_models()] or ["(no model found)"]


class PredictWidget(Step):
    """Choose image, model, device and threshold; predict the slice in view or the stack."""

    title = "Predict"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari_unet.engine.inference import available_devices

        preload_core()
        preload_layers()
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.model = ComboBox(label="model", choices=model_choices)
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.threshold = FloatSpinBox(label="threshold", value=0.5, min=0.05, max=0.95, step=0.05)
        # a model that takes several channels of a multi-channel image (opened as one layer per
        # channel, "NAME [chK]"): which channels, in the model's order
        self.channels = LineEdit(label="channels", value="", visible=False)
        self.scope = RadioButtons(label="predict", choices=["slice in view", "whole stack"], value="whole stack")
        self.follow = CheckBox(label="predict each slice I scroll to", value=False)
        self.overwrite_checked = CheckBox(label="overwrite checked slices too", value=False)
        self.overwrite_checked.tooltip = "Checked slices are kept unless this is ticked."
        self.follow_drawn = CheckBox(label="keep only regions joined to what I drew", value=False, visible=False)
        self.follow_drawn_offered = False  # (the chosen model's card says, in _show_card)
        self.follow_drawn.tooltip = (
            "A region model on a stack: on the slices predicted, keep the regions that continue, slice to slice, "
            "a region drawn on a checked slice (a lesion drawn on a few slices), and leave out the others (vessels, "
            "bright tissue on slices unlike the drawn ones). Untick it to see every region the model found."
        )
        self.advanced = CheckBox(label="advanced", value=False)
        self.more = AdvancedForm()
        run_button, cancel_button = PushButton(text="Predict"), PushButton(text="Cancel")
        super().__init__(viewer, [self.image, self.model, self.channels, self.device, self.threshold, self.scope, self.follow,
                                  self.overwrite_checked, self.follow_drawn, self.advanced, *self.more.widgets,
                                  run_button, cancel_button],
                         run_button=run_button, cancel_button=cancel_button)  # fmt: skip
        self.advanced.changed.connect(self.more.show)
        self.model.changed.connect(self._model_chosen)
        self.run_button.changed.connect(self.run)
        listen(self.workflow, "model", self._model_switched)
        self._wanted: int | None = None  # the slice in view, waiting for the running job
        #: the prediction running or last run (the rules and what it wrote: workflow.PredictionRun)
        self.prediction: PredictionRun | None = None
        self._results: ResultLayers | None = None
        self._flush_queued = False
        if self.workflow.model_name in [c for c in self.model.choices]:
            self.model.value = self.workflow.model_name
        self._show_card()
        from qtpy.QtCore import QTimer

        self._scroll_timer = QTimer(self.native)  # dies with the widget; scrolling fires many steps
        self._scroll_timer.setSingleShot(True)
        self._scroll_timer.setInterval(self.SCROLL_DELAY_MS)
        self._scroll_timer.timeout.connect(self.predict_slice_in_view)
        viewer.dims.events.current_step.connect(self._on_scroll)
        self.follow.changed.connect(self._on_scroll)

    #: pause after the last scroll step before the slice in view is predicted
    SCROLL_DELAY_MS = 300

    def _on_scroll(self, *_: Any) -> None:
        if self.follow.value:
            self._scroll_timer.start()

    def predict_slice_in_view(self) -> Any:
        """Predict the slice in view unless it has a result or is checked ("follow" mode).

        While a job runs, the newest slice in view waits and is predicted after it: a
        lazily opened stack of any length is predicted only where the user looks.
        """
        layer = self.image.value
        if layer is None or not self.follow.value:
            return None
        try:
            spatial = tuple(layer.data.shape[:-1] if layer.rgb else layer.data.shape)
        except RuntimeError:  # the layer went away
            return None
        if len(spatial) < 3:
            return None
        p = flat_slice(spatial, current_plane_index(self._viewer, layer))
        work = self.workflow.find(layer)
        if work is not None and (p in work.checked or p in work.predicted):
            return None
        if self.worker is not None:
            self._wanted = p
            return None
        self._wanted = None
        return self.run(slices=[p])

    def _model_chosen(self, *_: Any) -> None:
        """The user chose a model here: it becomes the model of every step."""
        from napari_unet.networks.model import ModelLoadError

        name = self.model.value
        if name and name != self.workflow.model_name:
            try:
                self.workflow.switch_model(name)
            except (ModelLoadError, OSError, ValueError) as exc:
                self.refuse(str(exc))
        self._show_card()

    def _model_switched(self, name: str) -> None:
        """Another step switched the model (Fine-tune's *Use new model*)."""
        self.model.reset_choices()
        if self.model.value != name and name in list(self.model.choices):
            self.model.value = name
        self._show_card()

    def _show_card(self, *_: Any) -> None:
        from napari_unet.networks.model import ModelLoadError, read_card, resolve_model_path

        try:
            card = read_card(resolve_model_path(self.model.value))
        except (ModelLoadError, OSError, ValueError):
            self.model.tooltip = "no model card"
            return
        self.model.tooltip = card.summary()
        self.follow_drawn_offered = card.activation == "softmax"  # a region model: its regions can follow a drawing
        self.follow_drawn.visible = self.follow_drawn_offered
        self.more.show_card(card)
        several = card.image_channels > 1 and not (card.in_channels == 3 and card.channels is None and not card.context)
        self.channels.visible = several
        if several:
            self.channels.value = ",".join(str(c) for c in (card.channels or range(card.image_channels)))
            self.channels.label = f"channels ({card.image_channels})"
            self.channels.tooltip = (
                f"the {card.image_channels} channels of the image this model takes, in its order: the numbers K of "
                f"its layers 'NAME [chK]' (trained on channels {card.channels or list(range(card.image_channels))})"
            )
        self.threshold.value = card.threshold

    def settings(self, card: Any) -> Any:
        """The :class:`~napari_unet.objects.pipeline.Settings` of this form: the card's, with the
        threshold and device chosen here and, when *advanced* is ticked, what its form sets
        (:class:`~napari_unet._widgets._advanced.AdvancedForm`)."""
        from napari_unet.objects.pipeline import Settings

        return Settings.for_model(
            card, threshold=float(self.threshold.value), device=self.device.value, **self.more.overrides(card)
        )

    def cancel(self, *_: Any) -> None:
        if self.worker is not None and self.prediction is not None:
            self.prediction.cancelled = True
        super().cancel()

    def run(self, *_: Any, model: Any = None, slices: list[int] | None = None, work: Any = None) -> Any:
        """Start a prediction; returns the worker (None when the input is refused).

        ``slices`` limits a stack prediction to those flat slice numbers; ``model``
        overrides the chosen one. Checked slices are kept unless *overwrite checked
        slices too* is ticked.
        """
        from napari_unet.networks.model import ModelLoadError

        layer = self.image.value
        if layer is None:
            self.refuse("open or choose an image layer first.")
            return None
        if self.busy():
            return None
        try:
            axes = image_axes(layer)
            model = model if model is not None else self.workflow.model()
            settings = self.settings(model.card)
            work = work if work is not None else image_work(self.workflow, layer)
        except (ModelLoadError, ValueError, OSError) as exc:
            self.refuse(str(exc))
            return None
        data, channels = layer.data, None
        if model.card.image_channels > 1 and not layer.rgb:
            try:
                data, axes, channels = channel_stack(self._viewer.layers, layer, self.channels.value, model.card)
            except ValueError as exc:
                self.refuse(str(exc))
                return None
        spatial = work.shape
        if slices is not None:
            planes = sorted(slices)
        elif self.scope.value == "slice in view" and len(spatial) > 2:
            planes = [flat_slice(spatial, current_plane_index(self._viewer, layer))]
        else:
            planes = list(range(work.n_slices))
        overwrite = bool(self.overwrite_checked.value)
        planes, kept = work.plan(planes, overwrite_checked=overwrite)
        if not planes:  # nothing went wrong: said as information, and once however often it is pressed
            self.inform(
                f"every chosen slice is checked ({len(kept)}), so there is nothing to predict; tick 'overwrite checked "
                "slices too' to predict them again."
            )
            return None
        lazy = not isinstance(data, np.ndarray)
        # finished planes go from the worker into the run's partial; the GUI thread moves them
        # into the layers a few at a time, so no single event-loop turn holds the window long
        run = PredictionRun(work, settings, model.card, planes, overwrite=overwrite, kept=list(kept),
                            semantic=model.card.activation == "softmax")  # fmt: skip
        from napari_unet.engine.run import out_of_core_refusal

        if lazy and len(planes) > 1 and out_of_core_refusal(model.card, axes) is None and axes in ("ZYX", "TYX"):
            gen = engine_job(model, data, axes, settings, planes, run.partial)
        else:
            gen = plane_job(model, data, axes, spatial, planes, settings, run.partial, run.warnings, channels)
        self.prediction, self._image = run, layer
        self._results = ResultLayers(self._viewer, self.workflow, work, layer, model.card)

        def done(result: Any) -> None:
            run.result = result

        self.start(gen, desc=f"Predict {layer.name}", on_yield=self._on_progress, on_done=done, start=False)
        kept_note = f"; {len(kept)} checked slice(s) kept" if kept else ""
        self.status.value = f"predicting {len(planes)} slice(s){kept_note}..."
        # the result layers first (napari builds each on this thread, ~0.1-0.15 s), while no
        # prediction competes for the CPU; the worker starts once they exist
        self._schedule_flush(self.AFTER_NEW_LAYER_MS)  # not in the same turn as the click
        return self.worker

    def _on_progress(self, event: Any) -> None:
        if "planes_done" in getattr(event, "info", {}):
            self._schedule_flush()

    def job_ended(self) -> None:
        if self.prediction is not None:
            self.prediction.ended = True
        self._schedule_flush()

    def _schedule_flush(self, delay_ms: int = 0) -> None:
        from qtpy.QtCore import QTimer

        if not self._flush_queued:
            self._flush_queued = True
            QTimer.singleShot(delay_ms, self._flush)

    #: longest stretch (s) one event-loop turn spends writing finished planes into layers
    FLUSH_BUDGET = 0.05
    #: pause after creating a layer, so napari draws it (~0.1 s the first time) in a turn of
    #: its own rather than right before the next step
    AFTER_NEW_LAYER_MS = 50

    def _flush(self) -> None:
        """One short step of moving results into the layers; schedules the next one.

        A step builds one piece of the result layers (:meth:`ResultLayers.build_step`), or
        writes finished planes for at most :attr:`FLUSH_BUDGET` seconds. The worker starts
        once the layers exist. Once the job has ended and every plane is written, it
        reports and makes the step ready again.
        """
        self._flush_queued = False
        run = self.prediction
        if run is None or self._results is None:
            return
        try:
            if self._results.build_step():
                self._schedule_flush(self.AFTER_NEW_LAYER_MS)
                return
            if self.worker is not None and not run.started:
                run.started = True
                if run.cancelled:
                    run.ended = True
                else:
                    self.worker.start()
            self._results.write(run, self.FLUSH_BUDGET)
            if run.partial:
                self._schedule_flush()
                return
        except (RuntimeError, KeyError):  # the viewer or a layer went away under the job
            run.partial.clear()
            run.closed = True
            if not run.started:  # nothing will run: end here
                run.started = run.ended = True
            elif self.worker is not None and not run.ended:
                self.worker.quit()  # its results have nowhere to go
        if run.ended and self.worker is not None:
            self._report(run)
            self.reset()

    def _follow_drawing(self, run: PredictionRun) -> str:
        """With *keep only regions joined to what I drew*: on the slices this run wrote, the
        regions not joined across slices to one drawn on a checked slice are left out
        (:func:`napari_unet.objects.continuation.keep_continuing`, 0.1-0.4 s for a 48x512^2 stack, so
        in a thread, on a copy of the labels); checked slices, slices this run did not write and
        slices edited meanwhile are never touched. Returns a note for the status line."""
        if not (run.semantic and self.follow_drawn.value and run.written) or run.closed:
            return ""
        from napari_unet._widgets._common import start_job
        from napari_unet.objects.continuation import keep_continuing

        work, layer = run.work, self._results.labels
        if layer is None or len(work.shape) != 3 or not isinstance(layer.data, np.ndarray):
            return "; regions not followed (it needs a stack held in memory)"
        if not work.checked:
            return "; regions not followed: no slice is checked (mark the slices you drew)"
        snapshot, checked = layer.data.copy(), sorted(work.checked)
        slices = [z for z in run.written if z not in work.checked]

        def follow() -> Any:
            return keep_continuing(snapshot, snapshot, checked)
            yield  # (a generator, as jobs are)

        def write(result: tuple[np.ndarray, dict[int, int]]) -> None:
            followed, left_out = result
            if layer not in self._viewer.layers:
                return
            for z in slices:
                if np.array_equal(layer.data[z], snapshot[z]):  # not edited while this ran
                    layer.data[z] = followed[z]
            layer.refresh()
            n = sum(left_out.values())
            self.status.value += (
                f"; {n} region(s) not joined to what you drew left out" if n else ("; every region joins what you drew")
            )

        self._follow_job = start_job(follow(), desc="Follow the drawn regions", on_done=write)
        return "; following the drawn regions..."

    def _report(self, run: PredictionRun) -> None:
        run.finish()
        follow_note = self._follow_drawing(run)
        self.status.value = run.outcome(self.failed) + (follow_note if run.result is not None or run.cancelled else "")
        if run.kept:
            notify_info(f"Predict: {len(run.kept)} checked slice(s) kept as they were ({_short(run.kept)}).")
        for warning in sorted(run.warnings):
            notify_warning(f"Predict {self._image.name}: {warning}")
        if run.written:
            self.workflow.emit("predicted", run.work)

    def reset(self) -> None:
        super().reset()
        if self._wanted is not None and self.follow.value:
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self.predict_slice_in_view)


def _short(values: list[int], most: int = 8) -> str:
    values = sorted(values)
    text = ", ".join(str(v) for v in values[:most])
    return text + (f" and {len(values) - most} more" if len(values) > most else "")
