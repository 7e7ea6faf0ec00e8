"""Step 3b, Suggest: which slice (or region) to check next, from where the model is unsure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, PushButton, Select, create_widget

from napari_unet._widgets._common import current_plane_index, flat_slice, image_axes, notify_info
from napari_unet._widgets._step import Step, choose_predicted, image_work, listen, paired_work

if TYPE_CHECKING:
    import napari

NEXT_KEY = "Shift-N"
METHOD_CHOICES = [
    ("mirrored views + probability margin", "both"),
    ("mirrored views (3 predictions)", "flips"),
    ("probability margin (1 prediction)", "margin"),
]


class SuggestWidget(Step):
    """Rank the unchecked slices by the pixels a check is likely to change; a heat-map layer of
    the model's doubt; a click on the list (or *Next*) goes to the slice."""

    title = "Suggest"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.labels_layer = create_widget(annotation="napari.layers.Labels", label="labels (checked slices)",
                                          options={"nullable": True})  # fmt: skip
        self.method = ComboBox(label="doubt from", choices=METHOD_CHOICES, value="both")
        run, cancel = PushButton(text="Suggest slices to check"), PushButton(text="Stop")
        self.ranked = Select(label="most worth checking", choices=[], value=[])
        self.ranked.native.setSelectionMode(self.ranked.native.SelectionMode.SingleSelection)
        self.ranked.native.setMaximumHeight(140)
        self.next_button = PushButton(text=f"Next slice to check ({NEXT_KEY})", enabled=False)
        super().__init__(viewer, [self.image, self.labels_layer, self.method, run, cancel, self.ranked,
                                  self.next_button], run_button=run, cancel_button=cancel)  # fmt: skip
        run.changed.connect(self.run)
        self.ranked.changed.connect(self._clicked)
        self.next_button.changed.connect(self.go_next)
        listen(self.workflow, "checked", self._checked_changed)
        listen(self.workflow, "predicted", self._predicted)
        self.work: Any = None
        self.scores: list[Any] = []  # SliceScore for a stack, Region for one image
        self.heatmap: Any = None
        viewer.bind_key(NEXT_KEY, lambda v: self.go_next(), overwrite=True)  # with Correct's Shift-C: no tab switch

    # ------------------------------------------------------------------ choosing

    def _predicted(self, work: Any) -> None:
        choose_predicted(self._viewer, work, {"image": self.image, "labels": self.labels_layer})

    def _work(self) -> Any:
        image, labels = self.image.value, self.labels_layer.value
        if image is None:
            raise ValueError("choose the image to rank first")
        return paired_work(self.workflow, image, labels) if labels is not None else image_work(self.workflow, image)

    # ------------------------------------------------------------------ the job

    def run(self, *_: Any) -> Any:
        from napari_unet.networks.model import ModelLoadError
        from napari_unet.objects.settings import Settings
        from napari_unet.objects.suggest import check_labels_fit, uncertainty_iter

        if self.busy():
            return None
        try:
            if self.image.value is None:
                raise ValueError("choose the image to rank first")
            axes = image_axes(self.image.value)
            spatial = tuple(n for n, a in zip(self.image.value.data.shape, axes) if a != "S")
            model = self.workflow.model()
            labels = self.labels_layer.value
            if labels is not None:  # before they are paired with the image
                check_labels_fit(np.asarray(labels.data), model.card, spatial, source=f"the labels {labels.name}")
            work = self._work()
        except (ValueError, OSError, ModelLoadError) as exc:
            self.refuse(str(exc))
            return None
        self.work = work
        settings = work.settings if work.settings is not None else Settings.for_model(model.card)
        gen = uncertainty_iter(model, self.image.value.data, axes=axes, method=self.method.value, settings=settings)
        self.status.value = f"predicting {self.image.value.name} in each mirrored view..."
        return self.start(gen, desc="Suggest", on_done=self._show)

    def _show(self, result: Any) -> None:
        from napari_unet.objects.suggest import rank_regions, rank_slices

        _, u, method = result
        work, image = self.work, self.image.value
        if image is None or image not in self._viewer.layers:
            self.status.value = "the image was closed; nothing to show"
            return
        name = f"{image.name} doubt"
        layer = work.handles.get("doubt")
        if layer is None or layer not in self._viewer.layers:
            layer = self._viewer.add_image(u, name=name, colormap="inferno", blending="additive", opacity=0.6,
                                           contrast_limits=(0.0, 0.5), scale=image.scale[-u.ndim:],
                                           translate=image.translate[-u.ndim:])  # fmt: skip
            self.workflow.attach(work, layer, "doubt")
        else:
            layer.data = u
        self.heatmap = layer
        if u.ndim == 2:
            region = np.asarray(work.region) > 0 if work.has_region() else None
            self.scores = rank_regions(u, checked=region)
        else:
            self.scores = rank_slices(u, checked=work.checked)
        self._fill_list()
        note = "" if method == self.method.value else " (this model was trained without mirror flips: margin only)"
        self.status.value = f"{len(self.scores)} {'slice' if u.ndim > 2 else 'region'}(s) ranked{note}"

    # ------------------------------------------------------------------ the list

    def _entry(self, s: Any) -> str:
        if hasattr(s, "z"):
            return f"slice {s.z}: {s.score:.0f} px"
        return f"y {s.y}, x {s.x} ({s.height}x{s.width}): {s.score:.0f} px"

    def _fill_list(self) -> None:
        checked = self.work.checked if self.work is not None else set()
        self.scores = [s for s in self.scores if getattr(s, "z", None) not in checked]
        with self.ranked.changed.blocked():
            self.ranked.choices = [self._entry(s) for s in self.scores]
            self.ranked.value = []
        self.next_button.enabled = bool(self.scores)

    def _checked_changed(self, work: Any) -> None:
        if work is self.work and self.scores:
            self._fill_list()

    def _clicked(self, *_: Any) -> None:
        chosen = self.ranked.value
        if chosen:
            entries = [self._entry(s) for s in self.scores]
            self.go_to(self.scores[entries.index(chosen[0])])

    def go_next(self, *_: Any) -> Any:
        """Go to the unchecked slice (or region) most worth checking, other than the one in view."""
        if not self.scores:
            notify_info("Suggest: nothing ranked yet; press 'Suggest slices to check' first.")
            return None
        here = self._current_slice()
        target = next((s for s in self.scores if getattr(s, "z", None) != here), self.scores[0])
        self.go_to(target)
        return target

    def _current_slice(self) -> int | None:
        image = self.image.value
        if image is None or self.work is None or len(self.work.shape) < 3:
            return None
        return flat_slice(self.work.shape, current_plane_index(self._viewer, self.heatmap or image))

    def go_to(self, target: Any) -> None:
        image = self.image.value
        if image is None:
            return
        if hasattr(target, "z"):
            stack = self.work.shape[:-2]
            index = np.unravel_index(target.z, stack)
            offset = self._viewer.dims.ndim - image.ndim
            for k, i in enumerate(index):  # the slice's place in the world, where the image lies
                self._viewer.dims.set_point(offset + k, int(i) * image.scale[k] + image.translate[k])
            self.status.value = f"slice {target.z}: about {target.score:.0f} pixel(s) likely to change"
        else:
            scale = image.scale[-2:]
            camera = getattr(self._viewer, "scene", self._viewer).camera  # viewer.scene from napari 0.9 on
            camera.center = ((target.y + target.height / 2) * scale[0], (target.x + target.width / 2) * scale[1])
            self.status.value = f"region y {target.y}, x {target.x}: about {target.score:.0f} pixel(s) likely to change"
