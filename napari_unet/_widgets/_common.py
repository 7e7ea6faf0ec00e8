"""Helpers shared by the dock widgets: worker wiring, progress bars, notifications."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet._widgets._napari_compat import TOOL_OVERLAYS, layer_overlays, notification_toasts
from napari_unet._widgets._warmup import _note_young_layer, refreeze_soon

if TYPE_CHECKING:
    import napari


def wrapping_label() -> Any:
    """A status line that wraps long messages within the dock's width (instead of widening
    the dock for good) and takes the whole width of its row (a wrapping label otherwise
    shrinks to a narrow column)."""
    from magicgui.widgets import Label
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value="")
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    label.native.setMinimumWidth(200)
    return label


def notify_error(message: str) -> None:
    _notify("error", message)


def notify_info(message: str) -> None:
    _notify("info", message)


def notify_warning(message: str) -> None:
    _notify("warning", message)


def _notify(severity: str, message: str) -> None:
    from napari.utils import notifications

    getattr(notifications, f"show_{severity}")(message)
    _close_older_own_toasts(message)


#: marks the toasts this plugin posted (an attribute set on napari's toast widget)
_OWN_TOAST = "_napari_unet_toast"


def _close_older_own_toasts(message: str) -> None:
    """Close the toasts this dock posted before the one just shown.

    napari shows each new toast over the older ones, stops their timers, and brings each
    back when the one above it closes: a dock that reports every step left a queue of
    stale messages that came back, old over new, for a minute after. Only the dock's own
    toasts are closed (napari's and other plugins' stay). The toast widgets are napari's
    private ``NapariQtNotification._instances``; where that is missing nothing is closed.
    """
    try:
        toasts = notification_toasts()
        if not toasts or toasts[-1].message.text() != message:
            return  # not shown (the window is hidden or the level filters it out)
        setattr(toasts[-1], _OWN_TOAST, True)
        for toast in toasts[:-1]:
            if getattr(toast, _OWN_TOAST, False):
                toast.close()
    except (ImportError, AttributeError, RuntimeError):  # napari's private toast list changed, or a toast is gone
        return


class JobFailed(Exception):
    """An exception raised inside a job, carried out of the worker thread.

    superqt's generator worker *returns* a ``RuntimeError`` raised by the job instead of
    raising it, and then emits neither ``errored`` nor ``finished`` (it takes it for a
    deleted Qt object). Every torch error, ``torch.OutOfMemoryError`` included, is a
    ``RuntimeError``: the step would wait for ever. Wrapped in this (not a
    ``RuntimeError``), every exception reaches ``errored``.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def describe_error(exc: BaseException) -> str:
    """One sentence for the user about an exception from a job."""
    exc = exc.error if isinstance(exc, JobFailed) else exc
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return (
            "ran out of memory; try a smaller tile or batch (advanced), fewer slices at once, "
            f"or the CPU ({type(exc).__name__}: {text[:200]})"
        )
    if isinstance(exc, ValueError | OSError):
        return text
    return f"failed unexpectedly ({type(exc).__name__}: {text[:300]})"


def start_job(
    gen: Generator,
    *,
    desc: str,
    on_yield: Callable[[Any], None] | None = None,
    on_done: Callable[[Any], None] | None = None,
    on_abort: Callable[[], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_finally: Callable[[], None] | None = None,
    start: bool = True,
) -> Any:
    """Run a core generator in napari's thread worker with a progress bar.

    Any exception the job raises becomes one error notification, ``"<desc>: <sentence>"``
    (:func:`describe_error`), and ``on_error(sentence)``; ``on_finally`` runs after
    every ending, errors included. With ``start=False`` the caller starts the returned
    worker itself (``worker.start()``).
    """
    from napari.qt.threading import create_worker
    from napari.utils import progress

    def job() -> Generator:
        from napari_unet.engine.process import borrowed

        lower_thread_priority()
        try:
            with borrowed():  # napari's process is left as it was: torch's threads, the allocator
                return (yield from gen)
        except Exception as exc:  # carried to errored, RuntimeError included (see JobFailed)
            raise JobFailed(exc) from exc

    worker = create_worker(job, _ignore_errors=True)  # errors go to our handler, not re-raised
    bar: dict[str, Any] = {}

    def yielded(event: Any) -> None:
        total = getattr(event, "total", None)
        if total and "bar" not in bar:
            bar["bar"] = progress(total=total, desc=desc)
        if "bar" in bar:
            bar["bar"].n = getattr(event, "done", 0)
            bar["bar"].refresh()
        if on_yield is not None:
            on_yield(event)

    def errored(exc: Exception) -> None:
        sentence = describe_error(exc)
        notify_error(f"{desc}: {sentence}")
        if on_error is not None:
            on_error(sentence)

    def finished() -> None:
        if "bar" in bar:
            bar["bar"].close()
        if on_finally is not None:
            on_finally()

    worker.yielded.connect(yielded)
    if on_done is not None:
        worker.returned.connect(on_done)
    if on_abort is not None:
        worker.aborted.connect(on_abort)
    worker.errored.connect(errored)
    worker.finished.connect(finished)
    if start:
        worker.start()
    return worker


#: how much lower than the GUI thread background jobs run (Linux nice steps)
JOB_NICENESS = 10


def lower_thread_priority() -> bool:
    """Give the calling (worker) thread a lower CPU priority than the GUI thread.

    With every core busy, the kernel's fair scheduler kept napari's GUI thread waiting up
    to ~0.2 s at a time even when it had nothing else to do (a 10 ms QTimer beside two
    busy processes on this 2-core machine: 207 ms longest gap; with the busy ones at nice
    10: 105 ms). Threads a job starts later (torch's OpenMP pool) inherit the setting.
    Linux only: elsewhere ``setpriority`` would lower the whole process.
    """
    import os
    import sys
    import threading

    if not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < JOB_NICENESS:
            os.setpriority(os.PRIO_PROCESS, tid, JOB_NICENESS)
        return True
    except (OSError, AttributeError):
        return False


def current_plane_index(viewer: napari.viewer.Viewer, layer: Any) -> tuple[int, ...]:
    """Index of the slice in view along every non-displayed axis of ``layer``."""
    ndim = layer.ndim
    world = viewer.dims.point[-ndim:]
    data = layer.world_to_data(world)
    spatial = ndim - 2
    return tuple(int(np.clip(round(c), 0, layer.data.shape[i] - 1)) for i, c in enumerate(data[:spatial]))


def flat_slice(shape: tuple[int, ...], index: tuple[int, ...]) -> int:
    """Flat slice number (as the core counts planes) of a stack index."""
    return int(np.ravel_multi_index(index, shape[:-2])) if index else 0


def image_axes(layer: Any) -> str:
    """Axes of an image layer's data for the core: those the reader stored (a ``TYX`` movie
    stays a movie), else ``[T|Z]YX`` or ``...YXS`` for RGB from the number of dimensions."""
    nd = layer.data.ndim
    stored = str((getattr(layer, "metadata", None) or {}).get("axes") or "").upper()
    if "C" in stored and len(stored) == nd + 1:  # the reader gave each channel a layer of its own
        stored = stored.replace("C", "")
    if len(stored) == nd and set(stored) <= set("TZYXS") and stored.endswith(("YX", "YXS")):
        if ("S" in stored) == bool(layer.rgb):
            return stored
    nd -= 1 if layer.rgb else 0
    stack = {2: "", 3: "Z", 4: "TZ"}.get(nd)
    if stack is None:
        raise ValueError(f"the image has {nd} dimensions; napari-unet predicts 2D images and 3D/4D stacks")
    return stack + "YX" + ("S" if layer.rgb else "")


def follow_layers(widget: Any, viewer: napari.viewer.Viewer) -> None:
    """Refresh a widget's layer choices when layers come and go (also when it is not docked)."""

    def refresh(*_: Any) -> None:
        try:
            widget.reset_choices()
        except RuntimeError:  # the widget was deleted with its window
            pass

    viewer.layers.events.inserted.connect(refresh)
    viewer.layers.events.inserted.connect(_note_young_layer)
    viewer.layers.events.removed.connect(refresh)
    viewer.layers.events.removed.connect(refreeze_soon)


def defer_tool_overlays(layer: Any) -> list[str]:
    """Hide a new Labels layer's drawing-tool overlays before it is added to the viewer.

    Returns their names; :func:`restore_tool_overlay` shows each again (napari then builds
    its visual), one per event-loop turn, so adding the layer is one shorter turn instead of
    one long one. napari keeps these overlays in the private ``_overlays``; where a napari
    version keeps them elsewhere nothing is hidden and the layer is added whole.
    """
    overlays = layer_overlays(layer)
    if overlays is None:
        return []
    names = [n for n in TOOL_OVERLAYS if n in overlays and getattr(overlays[n], "visible", False)]
    for name in names:
        overlays[name].visible = False
    return names


def restore_tool_overlay(layer: Any, name: str) -> None:
    """Show again an overlay that :func:`defer_tool_overlays` hid."""
    overlays = layer_overlays(layer)
    if overlays is not None and name in overlays:
        overlays[name].visible = True
