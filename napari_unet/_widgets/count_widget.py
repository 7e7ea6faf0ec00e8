"""Step 5, Count: objects of a labels layer -> contours, a sortable table, counts, CSV."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton, create_widget

from napari_unet._widgets._common import (
    current_plane_index,
    flat_slice,
    notify_error,
    notify_info,
)
from napari_unet._widgets._label_files import save_labels
from napari_unet._widgets._step import Step, listen, workflow_for
from napari_unet._widgets._warmup import preload_core
from napari_unet.io._units import short_unit
from napari_unet.objects.settings import Settings

if TYPE_CHECKING:
    import napari


def is_probability_layer(layer: Any, workflow: Any = None) -> bool:
    """An Image layer of probabilities: the Predict step's, or one float channel within 0..1."""
    from napari.layers import Image

    if not isinstance(layer, Image) or layer.rgb:
        return False
    work = workflow.find(layer) if workflow is not None else None
    if work is not None and work.role_of(layer) == "probability":
        return True
    if not np.issubdtype(np.dtype(layer.dtype), np.floating):
        return False
    lo, hi = layer.contrast_limits_range
    return lo >= 0 and hi <= 1


SHOWN = ["id", "slice", "area", "perimeter", "circularity", "mean_intensity", "equivalent_diameter", "solidity"]


class CountWidget(Step):
    title = "Count"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from qtpy.QtWidgets import QTableView

        from napari_unet._widgets._table import MeasurementModel

        preload_core()
        self._viewer = viewer
        self.workflow = workflow_for(viewer)
        # what to count: a Labels layer, or a probability layer (the Predict step's, or a
        # probability map opened from a file); Labels layers first
        self.labels_layer = ComboBox(label="objects from", choices=self._sources)
        self.labels_layer.tooltip = (
            "A labels layer is counted as it is; a probability layer is split into objects first "
            "(with the model's boundary channel when it comes from Predict)."
        )
        self.image = create_widget(
            annotation="napari.layers.Image", label="intensity image", options={"nullable": True}
        )
        self.min_area = FloatSpinBox(label="min area (px)", value=Settings.min_area, min=0, max=1e9, step=5)
        self.max_area = FloatSpinBox(label="max area (px, 0 = none)", value=0, min=0, max=1e9, step=100)
        self.exclude_border = CheckBox(label="exclude border objects", value=False)
        self.count_button = PushButton(text="Count")
        self.summary = Label(value="")
        self.export_button = PushButton(text="Export CSV", enabled=False)
        self.save_button = PushButton(text="Save labels", enabled=False)
        super().__init__(viewer, [self.labels_layer, self.image, self.min_area, self.max_area, self.exclude_border,
                                  self.count_button, self.summary, self.export_button, self.save_button],
                         run_button=self.count_button)  # fmt: skip
        self.labels_layer.changed.connect(self._source_chosen)
        listen(self.workflow, "predicted", self._predicted)
        self.table_model = MeasurementModel(SHOWN, integer=("id", "slice", "micronuclei"), text=("class",),
                                            optional=("micronuclei",))  # fmt: skip
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSortingEnabled(True)
        self.table.setMinimumHeight(160)
        self.table.clicked.connect(lambda index: self._row_clicked(index.row(), index.column()))
        layout = self.native.layout()
        layout.insertWidget(layout.count() - 1, self.table, 1)  # above the stretch, and taking the free height
        layout.setStretch(layout.count() - 1, 0)  # (the stretch keeps the fields at the top of the other steps)
        self.count_button.changed.connect(self.run)
        self.export_button.changed.connect(lambda *_: self.export_csv())
        self.save_button.changed.connect(lambda *_: self.save_labels())
        viewer.dims.events.current_step.connect(self._update_summary)
        self.result: Any = None  # (labels, table)
        self.counted: Any = None  # the Labels layer holding the counted objects
        #: the layers this step made, by the name it gave them: only these are ever replaced
        self._made: dict[str, Any] = {}
        self._showing: list | None = None  # the steps still to run to show a finished count

    def _sources(self, *_: Any) -> list[tuple[str, Any]]:
        from napari.layers import Labels

        layers = list(self._viewer.layers)
        return [(la.name, la) for la in layers if isinstance(la, Labels)] + [
            (la.name, la) for la in layers if is_probability_layer(la, self.workflow)
        ]

    def _predicted(self, work: Any) -> None:
        """A prediction was made: count its objects next, measured on its image."""
        labels, image = work.handles.get("labels"), work.handles.get("image")
        self.reset_choices()
        if labels is not None and labels in self._viewer.layers:
            self.labels_layer.value = labels
        if image is not None and image in self._viewer.layers and not image.rgb:
            self.image.value = image
        self._source_chosen()

    def _source_work(self, layer: Any) -> Any:
        """The prediction a source layer comes from (its labels or probabilities), if any."""
        work = self.workflow.find(layer)
        if work is None or work.settings is None or work.role_of(layer) not in ("labels", "probability"):
            return None
        return work

    def _source_chosen(self, *_: Any) -> None:
        """Counting a prediction uses the settings Predict used: its areas and border rule."""
        work = self._source_work(self.labels_layer.value)
        if work is None:
            return
        s = work.settings
        self.min_area.value = s.min_area
        self.max_area.value = s.max_area or 0
        self.exclude_border.value = s.exclude_border
        image = work.handles.get("image")
        if self.image.value is None and image is not None and image in self._viewer.layers and not image.rgb:
            self.image.value = image

    def run(self, *_: Any) -> Any:
        from napari.layers import Labels

        layer = self.labels_layer.value
        if layer is None:
            self.refuse("choose a labels or probability layer (predict first, or open a mask).")
            return None
        if self.busy():
            return None
        max_area = float(self.max_area.value) or None
        if max_area is not None and max_area < self.min_area.value:
            self.refuse(
                f"min area ({self.min_area.value:g}) is larger than max area ({max_area:g}); lower one of them."
            )
            return None
        work = self._source_work(layer)
        card, settings = (work.card, work.settings) if work is not None else (None, None)
        areas = {"min_area": float(self.min_area.value), "max_area": max_area,
                 "exclude_border": bool(self.exclude_border.value)}  # fmt: skip
        if isinstance(layer, Labels):
            kind, data = "labels", np.asarray(layer.data)
        elif work is not None and work.probabilities is not None:
            kind, data = "probability", work.probabilities  # every class, from Predict
            settings = settings.replace(**areas)  # as Predict made them, with this step's areas
        else:  # one foreground probability per pixel (a map opened from a file, a lazy stack's prediction)
            kind, data = "map", np.asarray(layer.data)
            settings = settings.replace(**areas) if settings is not None else None
        spatial = tuple(data.shape[1:] if kind == "probability" else data.shape)
        intensity = None
        image = self.image.value
        if image is not None and image is not layer and not image.rgb and tuple(image.data.shape) == spatial:
            intensity = np.asarray(image.data)
        units = [str(u) for u in getattr(layer, "units", ())]
        physical = bool(units) and units[-1] not in ("pixel", "")
        unit = short_unit(units[-1]) if physical else "px"
        scale = tuple(layer.scale) if physical else None
        options = {"intensity": intensity, "scale": scale, "unit": unit, "settings": settings, **areas}
        # a model that marks micronuclei: those outside the (corrected) nuclei, counted per nucleus
        found_by = work.probabilities if kind == "labels" and work is not None else None
        if found_by is not None and tuple(found_by.shape[1:]) != spatial:
            found_by = None
        self.status.value = f"counting {layer.name}..."
        return self.start(self._count_job(kind, data, card, layer, options, found_by), desc=f"Count {layer.name}",
                          on_done=self._show)  # fmt: skip

    def _count_job(self, kind: str, data: Any, card: Any, layer: Any, options: dict, found_by: Any = None) -> Any:
        """The count, then the layers that show it, built here in the worker: napari
        triangulates every contour when a Shapes layer is made (0.5-2 s for a few thousand
        objects), which on the GUI thread would freeze the window."""
        from napari.layers import Labels

        from napari_unet.objects.count import count_iter
        from napari_unet.objects.micronuclei import has_micronuclei, micronuclei_labels

        if kind == "map":
            lo, hi = (float(v) for v in (np.nanmin(data), np.nanmax(data))) if data.size else (0.0, 0.0)
            if lo < 0 or hi > 1:
                raise ValueError(
                    f"{layer.name} holds values from {lo:g} to {hi:g}, not probabilities (0 to 1): "
                    "choose a labels layer or a probability layer."
                )
            # the foreground output of a model: objects through the pipeline's labels_iter, as
            # segment makes them from a foreground-only model (threshold, split, areas)
            data, kind, card = data[None], "probability", None
        if found_by is not None and has_micronuclei(card):  # outside the nuclei as corrected
            options = {**options, "micronuclei": micronuclei_labels(found_by, card, data)}
        # (from probabilities, count_iter finds the micronuclei itself)
        labels, table, polys = yield from count_iter(data, kind=kind, card=card, with_contours=True, **options)
        counted = None
        if not isinstance(layer, Labels):  # the objects found in the probabilities: a layer to correct
            counted = Labels(labels, name=f"{layer.name} objects", scale=layer.scale)
        name = layer.name if counted is None else counted.name
        marks = self._micronuclei_layer(table.attrs.get("micronuclei_centres"), f"{name} micronuclei", layer.scale)
        return labels, table, counted, self._contours_layer(polys, table, f"{name} contours", layer.scale), layer, marks

    @staticmethod
    def _micronuclei_layer(centres: Any, name: str, scale: Any) -> Any:
        """A point at the centre of each micronucleus the count found (a model that marks
        them: :func:`napari_unet.objects.micronuclei.add_to_table`), or None."""
        from napari.layers import Points

        if centres is None or not len(centres):
            return None
        return Points(centres, name=name, scale=scale, size=5, face_color="cyan", border_color="cyan")

    @staticmethod
    def _contours_layer(polys: list, table: Any, name: str, scale: Any) -> Any:
        from napari.layers import Shapes

        if not polys:
            return None
        shapes = Shapes([p for _, p in polys], shape_type="polygon", name=name, edge_color="yellow",
                        face_color="transparent", edge_width=1, scale=scale, features=table.reset_index(drop=True))  # fmt: skip
        shapes.editable = False
        return shapes

    def job_ended(self) -> None:
        if not self._showing:  # failed or stopped: nothing to show
            self.reset()

    def reset(self) -> None:
        self._showing = None
        super().reset()

    def _show(self, result: Any) -> None:
        """Show a finished count, one step per event-loop turn (napari needs ~0.1-0.2 s to
        add or remove a layer of a few thousand contours, and draws it next)."""
        from qtpy.QtCore import QTimer

        labels, table, counted, shapes, source, marks = result
        if source not in self._viewer.layers:  # closed while it was being counted
            self.summary.value = f"{source.name} was closed during the count; nothing to show."
            self.reset()
            return
        self.result = (labels, table)
        steps: list = []
        if counted is not None:
            counted = self._replace_layer(counted, steps)
        self.counted = counted if counted is not None else source
        if shapes is not None:
            self._replace_layer(shapes, steps)
        elif self._own(f"{self.counted.name} contours") is not None:  # nothing to outline any more
            old = self._own(f"{self.counted.name} contours")
            steps.append(lambda: self._viewer.layers.remove(old) if old in self._viewer.layers else None)
        if marks is not None:
            self._replace_layer(marks, steps)
        steps.append(lambda: self._fill_table(table))

        def finish() -> None:
            self.reset()  # the count ends here: a new one may start
            self._update_summary()
            self.export_button.enabled = self.save_button.enabled = True
            self.status.value = f"counted {len(table)} object(s)"
            if not len(table):
                notify_info(
                    f"Count: no objects in {source.name} (with min area {self.min_area.value:g}); the table is empty."
                )

        steps.append(finish)
        self._showing = steps

        def next_step() -> None:
            if self._showing is not steps or not steps:  # the widget was reset meanwhile
                return
            try:
                steps.pop(0)()
            except RuntimeError:  # the viewer or its window went away
                self.reset()
                return
            if steps:
                QTimer.singleShot(20, next_step)

        next_step()

    def _replace_layer(self, new: Any, steps: list) -> Any:
        """Steps that put ``new`` in the viewer in place of the layer of the same name.

        The new layer goes in hidden (napari builds its visuals in one turn and draws them
        in the next) and before the old one goes out: with napari 0.9.2 under Mesa,
        removing the last Shapes layer and adding another a few turns later crashed in the
        next draw (reproduced with napari alone). Returns ``new``.
        """
        name = new.name
        old = self._own(name)  # (a layer of the same name that this step did not make is left alone)
        new.name = name if old is None else f"{name} (new)"
        self._made[name] = new
        new.visible = False
        steps.append(lambda: self._viewer.layers.append(new))
        steps.append(lambda: setattr(new, "visible", True))
        if old is not None:
            steps.append(lambda: self._viewer.layers.remove(old) if old in self._viewer.layers else None)
            steps.append(lambda: setattr(new, "name", name))
        return new

    def _own(self, name: str) -> Any:
        """The layer called ``name`` that this step made, if it is still in the viewer."""
        layer = self._made.get(name)
        return layer if layer is not None and layer in self._viewer.layers else None

    def _fill_table(self, table: Any) -> None:
        self.table_model.set_table(table)
        header = self.table.horizontalHeader()
        if header.sortIndicatorSection() < len(self.table_model.columns):  # keep the user's sort order
            self.table_model.sort(header.sortIndicatorSection(), header.sortIndicatorOrder())

    def _row_clicked(self, row: int, col: int = 0) -> None:
        """Centre the view on the object of a table row, and select it in the labels layer."""
        if self.result is None:
            return
        _, table = self.result
        shown = self.table_model.row_values(row)
        object_id, z = shown["id"], shown["slice"]
        rec = table[(table["id"] == object_id) & (table["slice"] == z)].iloc[0]
        layer = self.counted
        sy, sx = (float(s) for s in layer.scale[-2:])
        physical = rec["unit"] != "px"
        cy = rec["centroid_row"] if physical else rec["centroid_row"] * sy
        cx = rec["centroid_col"] if physical else rec["centroid_col"] * sx
        if layer.ndim > 2:
            index = np.unravel_index(z, layer.data.shape[:-2])
            world = layer.data_to_world((*index, 0, 0))
            for axis, value in enumerate(world[:-2]):
                self._viewer.dims.set_point(axis, value)
        camera = getattr(self._viewer, "scene", self._viewer).camera  # viewer.scene from napari 0.9 on
        camera.center = (cy, cx)
        layer.selected_label = object_id
        self.selected = object_id

    def _update_summary(self, *_: Any) -> None:
        if self.result is None:
            return
        _labels, table = self.result
        layer = self.counted
        total = len(table)
        found = table.attrs.get("micronuclei_per_slice") if "micronuclei" in table else None
        if layer is not None and layer.ndim > 2:
            z = flat_slice(layer.data.shape, current_plane_index(self._viewer, layer))
            here = int((table["slice"] == z).sum()) if total else 0
            self.summary.value = f"{here} objects in this slice, {total} in the stack"
            if found is not None and z < len(found):
                self.summary.value += f"; {found[z]} micronuclei in this slice, {sum(found)} in the stack"
        else:
            self.summary.value = f"{total} objects"
            if found is not None:
                self.summary.value += f", {sum(found)} micronuclei"

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        if self.result is None:
            return None
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(
                None, "Export measurements", f"{self.counted.name}_objects.csv", "CSV (*.csv)"
            )
            if not path:
                return None
        path = Path(path)
        try:
            self.result[1].to_csv(path, index=False)
        except OSError as exc:
            notify_error(f"Export CSV: cannot write {path}: {exc}")
            return None
        notify_info(f"Saved {len(self.result[1])} rows to {path}")
        return path

    def save_labels(self, path: str | Path | None = None) -> Path | None:
        """Save the counted labels (see :func:`~napari_unet._widgets._label_files.save_labels`)."""
        if self.counted is None:
            return None
        table = self.result[1] if self.result is not None else None
        return save_labels(self.counted, self.image.value, table, path)
