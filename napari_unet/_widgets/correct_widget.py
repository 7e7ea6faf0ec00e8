"""Step 3, Correct: mark slices (or painted regions) as checked, fix objects, autosave."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, PushButton, Select, SpinBox, create_widget

from napari_unet._widgets._common import (
    current_plane_index,
    flat_slice,
    follow_layers,
    notify_error,
    notify_info,
    wrapping_label,
)
from napari_unet._widgets._napari_compat import history_lengths, qt_window
from napari_unet._widgets._step import labels_work, listen, workflow_for

if TYPE_CHECKING:
    import napari

MARK_KEY = "Shift-C"


def class_names_of(layer: Any, work: Any = None) -> dict[int, str]:
    """Label value -> class name for a layer of class ids (from the model that made it, or
    the layer's ``class`` feature); empty for instance labels."""
    card = getattr(work, "card", None)
    if card is not None and getattr(card, "activation", None) == "softmax":
        return {k: n for k, n in enumerate(card.classes) if k > 0}
    features = getattr(layer, "features", None)
    if features is not None and "class" in getattr(features, "columns", ()) and "index" in features.columns:
        return {int(i): str(n) for i, n in zip(features["index"], features["class"]) if int(i) > 0}
    return {}


class CorrectWidget(Container):
    """Checked slices, a checked-region layer for single images, delete/merge, autosave."""

    def __init__(self, viewer: napari.viewer.Viewer, autosave_seconds: float = 2.5) -> None:
        self._viewer = viewer
        self.workflow = workflow_for(viewer)
        self.work: Any = None
        self.labels_layer = create_widget(annotation="napari.layers.Labels", label="labels")
        # a multi-class model's labels are class ids: paint by class name (hidden otherwise)
        self.paint_class = ComboBox(label="paint class", choices=[], visible=False)
        self.mark_button = PushButton(text=f"Mark slice checked ({MARK_KEY})")
        self.unmark_button = PushButton(text="Unmark slice")
        self.checked = Select(label="checked slices", choices=[], value=[])
        self.fill_button = PushButton(text="Fill between checked slices")
        self.fill_button.tooltip = (
            "Draw an object on two checked slices; the slices between get its shape, interpolated (one undo). "
            "They stay unchecked, marked 'filled', until you check them."
        )
        self.refine = CheckBox(label="follow the model's probabilities", value=False, visible=False)
        self.filled = wrapping_label()
        self.region_button = PushButton(text="Paint checked region (single image)")
        self.delete_button = PushButton(text="Delete selected object")
        self.merge_a = SpinBox(label="merge object", min=1, max=2**31 - 1, value=1)
        self.merge_b = SpinBox(label="into object", min=1, max=2**31 - 1, value=2)
        self.merge_button = PushButton(text="Merge")
        self.restore_button = PushButton(text="Restore saved corrections", enabled=False)
        self.status = wrapping_label()
        self.checked.native.setMaximumHeight(96)  # a few rows, scrolling: not half of the tab
        super().__init__(widgets=[self.labels_layer, self.paint_class, self.mark_button, self.unmark_button, self.checked,
                                  self.fill_button, self.refine, self.filled, self.region_button,
                                  self.delete_button, self.merge_a, self.merge_b, self.merge_button, self.restore_button, self.status])  # fmt: skip
        self.native.layout().addStretch(1)
        listen(self.workflow, "predicted", self._predicted)
        self.mark_button.changed.connect(self.mark_checked)
        self.unmark_button.changed.connect(self.unmark)
        self.region_button.changed.connect(self.add_region_layer)
        self.fill_button.changed.connect(self.fill_between)
        self.delete_button.changed.connect(self.delete_selected)
        self.merge_button.changed.connect(self.merge)
        self.restore_button.changed.connect(self.restore)
        self.labels_layer.changed.connect(self._attach)
        self.paint_class.changed.connect(self._paint_class_chosen)
        self._dirty: set[int] = set()
        self._undone = self._painting = False
        self._history: tuple[int, int] | None = None
        self._attached: Any = None
        self.session: Any = None
        self.autosave_seconds = autosave_seconds
        from qtpy.QtCore import QTimer

        self._timer = QTimer(self.native)  # dies with the widget
        self._timer.setInterval(int(autosave_seconds * 1000))
        self._timer.timeout.connect(self.autosave)
        self._timer.start()
        viewer.bind_key(MARK_KEY, lambda v: self.mark_checked(), overwrite=True)
        self._install_close_guard()
        self._attach()
        follow_layers(self, viewer)

    # ------------------------------------------------------------------ session

    def _predicted(self, work: Any) -> None:
        """A prediction was made: correct its labels next."""
        labels = work.handles.get("labels")
        if labels is not None and labels in self._viewer.layers and self.labels_layer.value is not labels:
            self.labels_layer.reset_choices()
            self.labels_layer.value = labels
        if labels is not None and labels is self.labels_layer.value:
            self._show_classes(labels)

    def _attach(self, *_: Any) -> None:
        layer = self.labels_layer.value
        if self._attached is not None:
            self.autosave()
            for event, callback in (("paint", self._on_paint), ("set_data", self._on_set_data)):
                try:
                    getattr(self._attached.events, event).disconnect(callback)
                except (TypeError, ValueError, RuntimeError):
                    pass
        self._attached = layer
        self._dirty = set()
        if layer is None:
            self.work = self.session = None
            return
        layer.events.paint.connect(self._on_paint)
        layer.events.set_data.connect(self._on_set_data)
        self._history = history_lengths(layer)
        self.work = labels_work(self.workflow, layer)
        self._show_classes(layer)
        self.session = self.work.session
        self._sync_checked()
        saved = self.session.state() if self.session is not None else {}
        self.restore_button.enabled = bool(saved) and "error" not in saved
        if "error" in saved:
            notify_error(f"Saved corrections of {layer.name}: {saved['error']}")
        elif saved:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(saved.get("saved_at", 0)))
            notify_info(
                f"Saved corrections of {layer.name} from {when} were found; press 'Restore saved corrections' to load them."
            )

    def _show_classes(self, layer: Any) -> None:
        """The class picker, for labels whose values are named classes (a multi-class model's)."""
        names = class_names_of(layer, self.work)
        self.paint_class.visible = bool(names)
        self.paint_class.choices = [f"{k}: {n}" for k, n in names.items()] if names else []
        if names and layer.selected_label in names:
            self.paint_class.value = f"{layer.selected_label}: {names[layer.selected_label]}"

    def _paint_class_chosen(self, *_: Any) -> None:
        layer, value = self.labels_layer.value, self.paint_class.value
        if layer is not None and value:
            layer.selected_label = int(str(value).split(":", 1)[0])

    def _on_paint(self, event: Any) -> None:
        layer = self._attached
        if layer is None:
            return
        self._painting = True  # (the set_data napari sends next is this paint's)
        if layer.ndim == 2:
            self._dirty.add(0)
            return
        stack_shape = layer.data.shape[:-2]
        for atom in event.value:
            indices = atom[0]
            stack = np.stack([np.asarray(i) for i in indices[: len(stack_shape)]], 0)
            if stack.size:
                flat = np.ravel_multi_index(tuple(stack), stack_shape)
                self._dirty.update(int(z) for z in np.unique(flat))

    def _on_set_data(self, event: Any) -> None:
        """An undo or redo changes the labels without a paint event: napari says only that the
        layer's data was set (as it does for a change of slice too), so the lengths of its
        undo and redo histories tell which it was. The next autosave then writes every slice."""
        layer = self._attached
        if layer is None:
            return
        lengths = history_lengths(layer)
        if lengths != self._history and not self._painting:
            self._undone = True
        self._history, self._painting = lengths, False

    def checked_slices(self) -> list[int]:
        return self.work.checked_slices() if self.work is not None else []

    def _sync_checked(self) -> None:
        values = self.checked_slices()
        self.checked.choices = [str(z) for z in values]
        self.checked.value = []
        filled = self.work.interpolated_slices() if self.work is not None else []
        self.filled.value = f"filled, not checked yet: {_ranges(filled)}" if filled else ""
        self.refine.visible = self._probabilities() is not None

    def _region(self) -> np.ndarray | None:
        region = self.work.region if self.work is not None else None
        return np.asarray(region) > 0 if region is not None else None

    def autosave(self, *, force: bool = False) -> bool:
        """Save the slices changed since the last save (all of them with ``force``)."""
        layer = self.labels_layer.value
        if self.work is not None and self.work.interpolated:
            before = set(self.work.interpolated)
            self.work.interpolated_slices()  # a filling taken back (undo) is unmarked, and saved so
            if before != self.work.interpolated:
                self._dirty.update(before - self.work.interpolated)
                self._sync_checked()
        if layer is None or self.session is None or (not self._dirty and not force and not self._undone):
            return False
        dirty = None if force or self._undone or not self.session.exists() else set(self._dirty)
        try:
            self.session.save(layer.data, checked=self.checked_slices(), region=self._region(), dirty=dirty,
                              extra={"interpolated": self.work.interpolated_slices()})  # fmt: skip
        except (OSError, ValueError) as exc:
            notify_error(f"Autosave failed: {exc}. Your corrections are still in the window; save the labels by hand.")
            return False
        self._dirty.clear()
        self._undone = False
        self.status.value = f"saved {time.strftime('%H:%M:%S')}"
        return True

    def restore(self, *_: Any) -> bool:
        from napari_unet.work.session import zarr_location

        layer = self.labels_layer.value
        if layer is None or self.session is None:
            return False
        try:
            loaded = self.session.load()
        except (ValueError, OSError) as exc:
            notify_error(f"Restore: {exc}")
            return False
        if loaded is None:
            return False
        labels, checked, region = loaded
        if isinstance(labels, np.ndarray):
            layer.data = labels.astype(layer.data.dtype, copy=False)
        elif zarr_location(labels) == zarr_location(layer.data):  # painted into this very store: already shown
            layer.refresh()
        else:
            layer.data = labels
        self.work.labels = layer.data
        self.work.checked = {int(z) for z in checked}
        self.work.interpolated = {int(z) for z in self.session.state().get("interpolated", [])} - self.work.checked
        if region is not None:
            region_layer = self.add_region_layer()
            region_layer.data = region.astype(np.uint8)
            self.work.region = region_layer.data
        self.workflow.emit("checked", self.work)
        self._sync_checked()
        self.status.value = f"restored {len(checked)} checked slice(s)"
        return True

    # ------------------------------------------------------------------ actions

    def _current(self) -> int:
        layer = self.labels_layer.value
        if layer.ndim == 2:
            return 0
        return flat_slice(layer.data.shape, current_plane_index(self._viewer, layer))

    def mark_checked(self, *_: Any) -> None:
        layer = self.labels_layer.value
        if layer is None:
            notify_error("Mark checked: choose the labels layer you corrected first.")
            return
        z = self._current()
        self.work.mark_checked(z)
        self._dirty.add(z)
        self._sync_checked()
        self.status.value = f"slice {z} checked ({len(self.work.checked)} in all)"
        self.workflow.emit("checked", self.work)
        self.autosave(force=not self.session.exists())

    def unmark(self, *_: Any) -> None:
        layer = self.labels_layer.value
        if layer is None:
            return
        z = self._current()
        self.work.unmark(z)
        self._dirty.add(z)
        self._sync_checked()
        self.workflow.emit("checked", self.work)
        self.autosave()

    def _probabilities(self) -> np.ndarray | None:
        """The model's foreground probability on every slice, when this work has one for all of them."""
        work = self.work
        if work is None or work.probabilities is None or len(work.shape) != 3:
            return None
        prob = work.probabilities
        if tuple(prob.shape[1:]) != tuple(work.shape) or len(work.predicted) < work.n_slices - len(work.checked):
            return None  # not every slice was predicted: the model has no say on the others
        card = work.card
        if card is not None and card.activation == "softmax":  # a class id's own probability
            return {k: np.asarray(prob[k]) for k in range(1, prob.shape[0])}
        return np.asarray(prob[0])

    def fill_between(self, *_: Any) -> list[int]:
        """Fill the slices between checked slices (one napari undo); they are marked filled."""
        layer = self.labels_layer.value
        if layer is None:
            notify_error("Fill between: choose the labels layer you drew on first.")
            return []
        try:
            probability = self._probabilities() if self.refine.value else None
            filled, changed = self.work.fill_between(probability)
        except ValueError as exc:
            notify_error(f"Fill between: {exc}")
            self.status.value = str(exc)
            return []
        if not changed:
            self.status.value = "nothing to fill: every slice between checked ones is labelled already"
            return []
        current = np.asarray(layer.data)
        new = filled != current
        layer.data_setitem(np.nonzero(new), filled[new].astype(current.dtype))  # one step of napari's undo history
        self.work.mark_interpolated(changed, new)
        self._dirty.update(changed)
        self._sync_checked()
        self.status.value = f"filled {len(changed)} slice(s): {_ranges(changed)}; check them to learn from them fully"
        self.workflow.emit("checked", self.work)
        self.autosave()
        return changed

    def add_region_layer(self, *_: Any) -> Any:
        layer = self.labels_layer.value
        if layer is None:
            notify_error("Checked region: choose a labels layer first.")
            return None
        region = self.work.handles.get("region")
        if region is None or region not in self._viewer.layers:
            region = self._viewer.add_labels(
                np.zeros(layer.data.shape, np.uint8),
                name=f"{layer.name} checked region",
                scale=layer.scale,
                opacity=0.3,
            )
            region.selected_label = 1
            region.mode = "paint"
            region.events.paint.connect(lambda e: self._dirty.add(0))
            self.workflow.attach(self.work, region, "region")
        self.work.region = region.data
        return region

    def delete_selected(self, *_: Any) -> None:
        layer = self.labels_layer.value
        if layer is None:
            return
        target = int(layer.selected_label)
        where = np.nonzero(np.asarray(layer.data) == target)
        if target == 0 or not where[0].size:
            notify_error(f"Delete: object {target} is not in {layer.name}; pick it with the colour picker first.")
            return
        layer.data_setitem(where, 0)  # goes through napari's undo history

    def merge(self, *_: Any) -> None:
        layer = self.labels_layer.value
        if layer is None:
            return
        a, b = int(self.merge_a.value), int(self.merge_b.value)
        data = np.asarray(layer.data)
        if a == b or not (data == a).any() or not (data == b).any():
            notify_error(f"Merge: objects {a} and {b} must both exist in {layer.name} and differ.")
            return
        layer.data_setitem(np.nonzero(data == a), b)

    # ------------------------------------------------------------------ closing

    def has_unsaved_changes(self) -> bool:
        return bool(self._dirty) or self._undone

    def _install_close_guard(self) -> None:
        from qtpy.QtCore import QEvent, QObject

        window = qt_window(self._viewer)
        if window is None:
            return
        widget = self

        class Guard(QObject):
            def eventFilter(self, obj: Any, event: Any) -> bool:
                if event.type() == QEvent.Type.Close and widget.has_unsaved_changes() and not widget.confirm_close():
                    event.ignore()
                    return True
                return False

        self._guard = Guard()
        window.installEventFilter(self._guard)

    def confirm_close(self) -> bool:
        """Ask whether to save corrections before closing; True lets the window close."""
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(
            None,
            "Unsaved corrections",
            "Some corrections have not been saved yet. Save them before closing?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self.autosave(force=True)
        return answer == QMessageBox.StandardButton.Discard


def _ranges(slices: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    out, run = [], []
    for z in sorted(slices):
        if run and z != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(z)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
