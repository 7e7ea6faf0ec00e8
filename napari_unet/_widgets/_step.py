"""What every step of the dock shares: its viewer's workflow state, one job at a time,
Cancel, a status line, errors as one sentence, and being ready again afterwards."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container, ProgressBar, PushButton

from napari_unet._widgets._common import follow_layers, notify_error, notify_info, start_job, wrapping_label

if TYPE_CHECKING:
    import napari

    from napari_unet.work.workflow import Work, Workflow

_WORKFLOWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def workflow_for(viewer: napari.viewer.Viewer) -> Workflow:
    """The one workflow state of a viewer, shared by every step docked in it."""
    from napari_unet.work.workflow import Workflow

    flow = _WORKFLOWS.get(viewer)
    if flow is None:
        flow = _WORKFLOWS[viewer] = Workflow()

        def forget(event: Any) -> None:
            flow.forget(event.value)

        viewer.layers.events.removed.connect(forget)
    return flow


def listen(flow: Workflow, event: str, callback: Callable[..., Any]) -> None:
    """Connect a widget's method to a workflow event. The workflow holds the widget only
    weakly, and once the widget or its Qt object is gone (its window closed) the listener
    removes itself instead of raising."""
    ref = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else (lambda: callback)

    def call(*args: Any) -> None:
        method = ref()
        if method is None:
            flow.disconnect(event, call)
            return
        try:
            method(*args)
        except RuntimeError:  # "wrapped C/C++ object ... has been deleted"
            flow.disconnect(event, call)

    flow.connect(event, call)


def image_work(flow: Workflow, layer: Any) -> Work:
    """The work of an image layer (made on first use; its session beside the image file)."""
    from napari_unet._widgets._common import image_axes

    axes = image_axes(layer)
    shape = tuple(layer.data.shape[:-1] if "S" in axes else layer.data.shape)
    source = getattr(layer, "source", None)
    path = getattr(source, "path", None) if source is not None else None
    work = flow.work_for(layer, name=layer.name, shape=shape, path=path, role="image")
    work.image, work.axes = layer.data, axes
    return work


def labels_work(flow: Workflow, layer: Any) -> Work:
    """The work a Labels layer belongs to: the prediction that made it, else its own."""
    work = flow.find(layer)
    if work is None:
        source = getattr(layer, "source", None)
        path = getattr(source, "path", None) if source is not None else None
        work = flow.work_for(layer, name=layer.name, shape=tuple(layer.data.shape), path=path, role="labels")
    if work.role_of(layer) == "labels":
        work.labels = layer.data
    return work


def paired_work(flow: Workflow, image: Any, labels: Any) -> Work:
    """The work of a labels layer the user chose together with an image (Fine-tune):
    the labels' work, with the image as its image when it has none yet."""
    work = labels_work(flow, labels)
    if work.handles.get("image") is None and flow.find(image) is None:
        flow.attach(work, image, "image")
    if work.handles.get("image") is image:
        from napari_unet._widgets._common import image_axes

        work.image, work.axes = image.data, image_axes(image)
    return work


def choose_predicted(viewer: Any, work: Work, choosers: dict[str, Any]) -> None:
    """After a prediction, point each chooser (``{role: layer chooser}``) at the work's layer
    in that role, the image and the labels a person corrects and learns from next."""
    for role, chooser in choosers.items():
        layer = work.handles.get(role)
        if layer is not None and layer in viewer.layers and chooser.value is not layer:
            chooser.reset_choices()
            chooser.value = layer


class Step(Container):
    """A dock step: a form, a Run and a Cancel button, a status line and one job at a time.

    Subclasses build their fields and pass them with ``run_button``/``cancel_button``;
    :meth:`start` runs a core generator in a worker. Whatever happens to the job, its
    exception reaches the user as one sentence (notification and status line) and the
    step is ready again (:meth:`reset`).
    """

    title = "Step"

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        widgets: list[Any],
        *,
        run_button: PushButton,
        cancel_button: PushButton | None = None,
    ) -> None:
        self._viewer = viewer
        self.workflow = workflow_for(viewer)
        self.run_button, self.cancel_button = run_button, cancel_button
        self.status = wrapping_label()
        self.progress = ProgressBar(value=0, min=0, max=1, visible=False)  # in the step, not only napari's panel
        super().__init__(widgets=[*widgets, self.progress, self.status])
        self.native.layout().addStretch(1)  # fields at the top, not spread over the dock's height
        self.worker: Any = None
        self.failed: str | None = None
        if cancel_button is not None:
            cancel_button.enabled = False
            cancel_button.changed.connect(self.cancel)
        follow_layers(self, viewer)

    def refuse(self, message: str) -> None:
        """Say why a click did nothing: a notification and the status line."""
        notify_error(f"{self.title}: {message}")
        self.status.value = message

    def inform(self, message: str) -> None:
        """Say that a click had nothing to do (not an error): the status line, and one info
        notification, not posted again while the status still says it."""
        if self.status.value != message:
            notify_info(f"{self.title}: {message}")
        self.status.value = message

    def busy(self) -> bool:
        if self.worker is not None:
            self.refuse("a job is already running; wait for it or press Cancel.")
            return True
        return False

    def start(
        self,
        gen: Generator,
        *,
        desc: str,
        on_yield: Callable[[Any], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        start: bool = True,
    ) -> Any:
        """Run ``gen`` in a worker; ``job_ended`` runs when it ends, however it ends."""
        self.failed = None
        self.run_button.enabled = False
        if self.cancel_button is not None:
            self.cancel_button.enabled = True
        self.progress.value, self.progress.max, self.progress.visible = 0, 1, True

        def yielded(event: Any) -> None:
            total, done = getattr(event, "total", 0), getattr(event, "done", 0)
            if total:
                self.progress.max = int(total)
                self.progress.value = min(int(done), int(total))
            if on_yield is not None:
                on_yield(event)

        self.worker = start_job(
            gen,
            desc=desc,
            on_yield=yielded,
            on_done=on_done,
            on_error=self._failed,
            on_finally=self.job_ended,
            start=start,
        )
        return self.worker

    def _failed(self, sentence: str) -> None:
        self.failed = sentence
        self.status.value = f"stopped by an error: {sentence}"

    def job_ended(self) -> None:
        """Called when the worker has finished (returned, cancelled or failed)."""
        self.reset()

    def cancel(self, *_: Any) -> None:
        if self.worker is not None:
            self.worker.quit()
            self.status.value = "cancelling..."

    def reset(self) -> None:
        """Ready for the next job."""
        self.worker = None
        self.progress.visible = False
        self.run_button.enabled = True
        if self.cancel_button is not None:
            self.cancel_button.enabled = False
