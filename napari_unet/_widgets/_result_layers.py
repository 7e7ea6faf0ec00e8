"""The Predict step's result layers: built a step at a time, then filled plane by plane.

napari builds a new layer on the GUI thread (~0.1-0.15 s here), so each layer, and each
of the Labels layer's drawing-tool overlays, goes in during an event-loop turn of its
own; finished planes are then written for at most a set time per turn. Results of a
lazily opened image live in OME-Zarr stores in the image's session folder.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from napari_unet._widgets._common import defer_tool_overlays, restore_tool_overlay


def shown_probability(role: str, prob: np.ndarray, card: Any) -> np.ndarray | None:
    """What a probability layer in ``role`` shows of one plane's output ``(K, Y, X)``:
    ``probability`` the foreground (a region model's: any class but background),
    ``probability:<class>`` that class; None for a class this model does not have (a layer
    another model made)."""
    if role == "probability":
        return 1.0 - prob[0] if getattr(card, "activation", None) == "softmax" else prob[0]
    name = role.split(":", 1)[1]
    return prob[list(card.classes).index(name)] if name in card.classes else None


class ResultLayers:
    """The probability and Labels layers of one image's prediction, in a viewer.

    The layers are the handles of the image's :class:`~napari_unet.work.workflow.Work`
    (``probability`` and ``labels``): found through it, never by name, and rebuilt when
    the user closed them. Every plane is written through :meth:`Work.merge`, so a checked
    slice or region is never overwritten.
    """

    def __init__(self, viewer: Any, workflow: Any, work: Any, image: Any, card: Any) -> None:
        self._viewer, self.workflow, self.work, self.image, self.card = viewer, workflow, work, image, card
        self.spatial = work.shape
        self._deferred: tuple[Any, list[str]] = (None, [])
        self._ready = False
        #: a semantic model's labels are class ids (0 = background), named in the card
        self.semantic = getattr(card, "activation", None) == "softmax"

    def _layer(self, role: str) -> Any:
        layer = self.work.handles.get(role)
        return layer if layer is not None and layer in self._viewer.layers else None

    @property
    def prob(self) -> Any:
        return self._layer("probability")

    def probability_layers(self) -> list[tuple[str, Any]]:
        """``(role, layer)`` of the probability layers still open (a semantic model's per-class
        ones too), in the roles :func:`shown_probability` knows."""
        return [(role, layer) for role, layer in self.work.handles.items()
                if role.split(":")[0] == "probability" and layer in self._viewer.layers]  # fmt: skip

    @property
    def labels(self) -> Any:
        return self._layer("labels")

    def build_step(self) -> bool:
        """Do the next building step, if one is left: probability layer, Labels layer
        (drawing-tool overlays deferred), each deferred overlay, labels on top and
        selected. True when a step was done (the caller gives it a turn of its own)."""
        layers, image, spatial, work = self._viewer.layers, self.image, self.spatial, self.work
        if image not in layers:
            raise KeyError("the image was closed")
        if self._ready:  # built once; a layer closed since is not made again (it would be an orphan)
            return False
        scale = image.scale[-len(spatial) :]
        k = len(self.card.classes)
        if self.prob is None:
            what = "probability (any class)" if self.semantic else "probability"
            layer = self._viewer.add_image(self._array("probability", np.float32), name=f"{image.name} {what}",
                                           visible=False, scale=scale, colormap="magma", contrast_limits=(0, 1))  # fmt: skip
            self.workflow.attach(work, layer, "probability")
            return True
        for c, class_name in enumerate(self.card.classes[1:] if self.semantic else (), start=1):
            role = f"probability:{class_name}"  # a semantic model: one probability layer per class
            if self._layer(role) is None:
                layer = self._viewer.add_image(self._array(f"probability_{c}", np.float32), visible=False, scale=scale,
                                               name=f"{image.name} probability {class_name}", colormap="magma",
                                               contrast_limits=(0, 1))  # fmt: skip
                self.workflow.attach(work, layer, role)
                return True
        if work.probabilities is None or tuple(work.probabilities.shape) != (k, *spatial):
            # every class of the prediction, for Count (in memory; not for a lazily opened image)
            lazy = not isinstance(image.data, np.ndarray)
            work.probabilities = None if lazy else np.zeros((k, *spatial), np.float32)
        if self.labels is None:
            from napari.layers import Labels

            labels = Labels(self._array("labels", np.int32), name=f"{image.name} labels", scale=scale)
            if self.semantic:  # each label value carries its class name (shown in the status bar)
                import pandas as pd

                labels.features = pd.DataFrame({"index": range(k), "class": list(self.card.classes)})
            self._deferred = (labels, defer_tool_overlays(labels))
            self.workflow.attach(work, labels, "labels")
            work.labels = labels.data
            layers.append(labels)
            return True
        layer, deferred = self._deferred
        if deferred:
            restore_tool_overlay(layer, deferred.pop(0))
            return True
        if not self._ready:
            self._ready = True
            prob, labels = self.prob, self.labels
            if prob is None or labels is None:
                raise KeyError("a result layer was closed")
            work.labels = labels.data
            if layers.index(labels) < layers.index(prob):
                layers.move(layers.index(labels), layers.index(prob) + 1)
            if layers.selection.active is not labels:
                layers.selection.active = labels  # the controls switch: a turn of its own
                return True
        return False

    def write(self, run: Any, budget: float) -> None:
        """Move the finished planes of ``run`` (a :class:`~napari_unet.work.workflow.PredictionRun`)
        into the layers, lowest first, for at most ``budget`` seconds, each through the run's
        rules (:meth:`PredictionRun.take`), which records what was written and kept."""
        prob_layer, labels_layer, spatial, work = self.prob, self.labels, self.spatial, self.work
        if prob_layer is None or labels_layer is None:
            raise KeyError("a result layer was closed")
        full = work.probabilities
        work.labels = labels_layer.data  # (the user may have given the layer new data)
        partial = run.partial
        start, written = time.perf_counter(), []
        while partial and time.perf_counter() - start < budget:
            p = min(partial)
            prob, labels = partial.pop(p)
            index = tuple(np.unravel_index(p, spatial[:-2])) if len(spatial) > 2 else ()
            merged = run.take(p, labels)
            if merged is None:  # checked (perhaps while the job ran): neither labels nor probabilities change
                continue
            for role, layer in self.probability_layers():
                shown = shown_probability(role, prob, self.card)
                if shown is not None:
                    layer.data[index] = shown
            if full is not None:
                full[(slice(None), *index)] = prob
            labels_layer.data[index] = merged
            written.append(p)
        if written:
            if getattr(labels_layer.data, "attrs", None) is not None:  # our zarr store: remember the ids used
                labels_layer.data.attrs["napari_unet_max_label"] = run.next_id - 1
            for _, layer in self.probability_layers():
                layer.refresh()
            labels_layer.refresh()

    def _array(self, what: str, dtype: Any) -> Any:
        """Storage for a result layer: in memory, or for a lazily opened image an OME-Zarr
        store in the image's session folder (only predicted slices take space; reopening
        the image finds them again)."""
        image, spatial = self.image, self.spatial
        if isinstance(image.data, np.ndarray):
            return np.zeros(spatial, dtype)
        from napari_unet.io.ome_zarr import open_ome_zarr_array

        folder = self.work.session.folder
        scale = tuple(float(v) for v in image.scale[-len(spatial) :])
        axes = {2: "YX", 3: "ZYX", 4: "TZYX"}[len(spatial)]
        return open_ome_zarr_array(folder / f"{what}.zarr", spatial, dtype, axes=axes, scale=scale)
