"""Step 2, Predict: image -> probabilities (hidden) and editable instance labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    RadioButtons,
    SpinBox,
    create_widget,
)

from napari_unet._widgets._common import (
    current_plane_index,
    flat_slice,
    follow_layers,
    image_axes,
    notify_error,
    preload_core,
    preload_layers,
    start_job,
)
from napari_unet._widgets._result_layers import ResultLayers

if TYPE_CHECKING:
    import napari


def model_choices(widget: Any = None) -> list[str]:
    from napari_unet.model import list_models

    return [e.name for e in list_models()] or ["(no model found)"]


class PredictWidget(Container):
    """Choose image, model, device and threshold; predict the slice in view or the stack."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari_unet.predict import available_devices

        preload_core()
        preload_layers()
        self._viewer = viewer
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.model = ComboBox(label="model", choices=model_choices)
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.threshold = FloatSpinBox(label="threshold", value=0.5, min=0.05, max=0.95, step=0.05)
        self.scope = RadioButtons(label="predict", choices=["slice in view", "whole stack"], value="whole stack")
        self.follow = CheckBox(label="predict each slice I scroll to", value=False)
        self.advanced = CheckBox(label="advanced", value=False)
        self.tile = SpinBox(label="tile", value=256, min=32, max=2048, step=32, visible=False)
        self.overlap = FloatSpinBox(label="overlap", value=0.25, min=0.0, max=0.9, step=0.05, visible=False)
        self.batch = SpinBox(label="batch", value=4, min=1, max=64, visible=False)
        self.run_button = PushButton(text="Predict")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        super().__init__(widgets=[self.image, self.model, self.device, self.threshold, self.scope, self.follow, self.advanced,
                                  self.tile, self.overlap, self.batch, self.run_button, self.cancel_button, self.status])  # fmt: skip
        self.advanced.changed.connect(self._toggle_advanced)
        self.model.changed.connect(self._show_card)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.worker: Any = None
        self.protected: set[int] = set()  # slices the user checked: never overwritten
        self.predicted: dict[str, set[int]] = {}  # image layer name -> slices with results
        self._wanted: int | None = None  # the slice in view, waiting for the running job
        self._show_card()
        follow_layers(self, viewer)
        from qtpy.QtCore import QTimer

        self._scroll_timer = QTimer()  # scrolling fires many steps: predict where the user stops
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
        if p in self.protected or p in self.predicted.get(layer.name, set()):
            return None
        if self.worker is not None:
            self._wanted = p
            return None
        self._wanted = None
        return self.run(slices=[p])

    def _toggle_advanced(self, on: bool) -> None:
        for w in (self.tile, self.overlap, self.batch):
            w.visible = on

    def _show_card(self, *_: Any) -> None:
        from napari_unet.model import ModelLoadError, read_card, resolve_model_path

        try:
            card = read_card(resolve_model_path(self.model.value))
        except (ModelLoadError, OSError, ValueError):
            self.model.tooltip = "no model card"
            return
        self.model.tooltip = card.summary()
        self.threshold.value = card.threshold
        self.tile.value = card.tile
        self.overlap.value = card.overlap

    def cancel(self) -> None:
        if self.worker is not None:
            self._out["cancelled"] = True
            self.worker.quit()
            self.status.value = "cancelling..."

    def run(self, *_: Any, model: Any = None, slices: list[int] | None = None) -> Any:
        """Start a prediction; returns the worker (None when the input is refused).

        ``slices`` limits a stack prediction to those flat slice numbers (re-predict
        unchecked slices); ``model`` overrides the chosen one.
        """
        from napari_unet.model import ModelLoadError, load_model

        layer = self.image.value
        if layer is None:
            notify_error("Predict: open or choose an image layer first.")
            return None
        if self.worker is not None:
            notify_error("Predict: a prediction is already running; wait for it or press Cancel.")
            return None
        model_name = None if model is not None else self.model.value
        try:
            axes = image_axes(layer)
            model = model if model is not None else load_model(self.model.value)
        except (ModelLoadError, ValueError, OSError) as exc:
            notify_error(f"Predict: {exc}")
            return None
        data = layer.data
        spatial = tuple(data.shape[:-1] if layer.rgb else data.shape)
        n_planes = int(np.prod(spatial[:-2])) if len(spatial) > 2 else 1
        if slices is not None:
            planes = sorted(slices)
        elif self.scope.value == "slice in view" and len(spatial) > 2:
            index = current_plane_index(self._viewer, layer)
            planes = [flat_slice(spatial, index)]
        else:
            planes = list(range(n_planes))
        planes = [p for p in planes if p not in self.protected]
        if not planes:
            notify_error("Predict: every chosen slice is checked; unmark a slice to predict it again.")
            return None
        lazy = not isinstance(data, np.ndarray)
        if lazy and len(planes) > 1 and axes in ("ZYX", "TYX") and model_name is not None:
            gen = self._engine_job(model, model_name, data, axes, spatial, planes)
        else:
            gen = self._job(model, data, axes, spatial, planes)
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = f"predicting {len(planes)} slice(s)..."
        # finished planes go from the worker into _partial; the GUI thread moves them into
        # the layers a few at a time, so no single event-loop turn holds the window long
        self._partial: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._out = {"image": layer, "written": 0, "ended": False, "result": None, "cancelled": False}
        self._results = ResultLayers(self._viewer, layer, spatial, model.card)
        self.worker = start_job(
            gen,
            desc=f"Predict {layer.name}",
            on_yield=self._on_progress,
            on_done=lambda r: self._out.update(result=r),
            on_finally=self._ended,
            start=False,
        )
        # the result layers first (napari builds each on this thread, ~0.1-0.15 s), while no
        # prediction competes for the CPU; the worker starts once they exist
        self._schedule_flush(self.AFTER_NEW_LAYER_MS)  # not in the same turn as the click
        return self.worker

    def _engine_job(
        self, model: Any, name: str, data: Any, axes: str, spatial: tuple[int, ...], planes: list[int]
    ) -> Any:
        """A whole lazily opened stack through the out-of-core engine (``scale.predict_lazy``).

        The same dask computation the CLI runs for images larger than memory: blocks of a
        plane are predicted in parallel threads, each plane only when its turn comes, so
        memory holds about one plane whatever the stack's length. Stops between planes.
        """
        import dask

        from napari_unet.count import labels_from_probabilities
        from napari_unet.scale import predict_lazy
        from napari_unet.tiling import Progress

        threshold = float(self.threshold.value)
        device = "cpu" if self.device.value == "auto" else self.device.value
        probs = predict_lazy(data, name, axes="ZYX", tile=int(self.tile.value), overlap=float(self.overlap.value),
                             device=device)  # fmt: skip
        for k, p in enumerate(planes):
            yield Progress(k, len(planes), {"plane": p, "engine": "dask"})
            with dask.config.set(scheduler="threads"):
                prob = np.asarray(probs[:, p].compute())
            labels = labels_from_probabilities(prob, model.card, threshold=threshold)
            self._partial[p] = (prob, labels)
            yield Progress(k + 1, len(planes), {"plane": p, "planes_done": k + 1, "engine": "dask"})
        return len(planes)

    def _job(self, model: Any, data: Any, axes: str, spatial: tuple[int, ...], planes: list[int]) -> Any:
        """Predict plane by plane, yielding progress and each finished plane's result."""
        from napari_unet.count import labels_from_probabilities
        from napari_unet.predict import predict_iter
        from napari_unet.tiling import Progress

        stack_shape = spatial[:-2]
        plane_axes = axes.replace("T", "").replace("Z", "")
        threshold = float(self.threshold.value)
        tiles_per_plane = None
        for k, p in enumerate(planes):
            index = np.unravel_index(p, stack_shape) if stack_shape else ()
            plane = np.asarray(data[tuple(index)])
            gen = predict_iter(model, plane, axes=plane_axes, device=self.device.value, tile=int(self.tile.value),
                               overlap=float(self.overlap.value), batch_size=int(self.batch.value))  # fmt: skip
            while True:
                try:
                    ev = next(gen)
                except StopIteration as stop:
                    prob = stop.value
                    break
                tiles_per_plane = ev.total
                yield Progress(k * ev.total + ev.done, len(planes) * ev.total, {"plane": p})
            labels = labels_from_probabilities(prob, model.card, threshold=threshold)
            # stored here, in the worker, rather than sent through a signal: the GUI reads it only
            # after the job has ended (returned or aborted), so no result can arrive late
            self._partial[p] = (prob, labels)
            done = (k + 1) * (tiles_per_plane or 1)
            yield Progress(done, len(planes) * (tiles_per_plane or 1), {"plane": p, "planes_done": k + 1})
        return len(planes)

    def _on_progress(self, event: Any) -> None:
        if "planes_done" in getattr(event, "info", {}):
            self._schedule_flush()

    def _ended(self) -> None:
        self._out["ended"] = True
        self._schedule_flush()

    def _schedule_flush(self, delay_ms: int = 0) -> None:
        from qtpy.QtCore import QTimer

        if not getattr(self, "_flush_queued", False):
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
        reports and re-enables the buttons.
        """
        self._flush_queued = False
        out = self._out
        try:
            if self._results.build_step():
                self._schedule_flush(self.AFTER_NEW_LAYER_MS)
                return
            if self.worker is not None and not out.get("started"):
                out["started"] = True
                if out["cancelled"]:
                    out["ended"] = True
                else:
                    self.worker.start()
            written = self._results.write(self._partial, self.FLUSH_BUDGET)
            out["written"] += len(written)
            self.predicted.setdefault(out["image"].name, set()).update(written)
            if self._partial:
                self._schedule_flush()
                return
        except (RuntimeError, KeyError):  # the viewer or a layer went away under the job
            self._partial = {}
            if not out.get("started"):  # nothing will run: end here
                out["started"] = out["ended"] = True
        if out["ended"] and self.worker is not None:
            n, result = out["written"], out["result"]
            if result is not None:
                self.status.value = f"done: {n} slice(s)"
            elif out["cancelled"]:
                self.status.value = f"cancelled: kept {n} slice(s)" if n else "cancelled; nothing was finished"
            else:  # the job failed; its notification says why
                self.status.value = f"stopped by an error: kept {n} slice(s)"
            self._reset()

    def _reset(self) -> None:
        self.worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        if self._wanted is not None and self.follow.value:
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self.predict_slice_in_view)
