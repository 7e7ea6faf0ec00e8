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


class ResultLayers:
    """The probability and Labels layers of one image's prediction, in a viewer."""

    def __init__(self, viewer: Any, image: Any, spatial: tuple[int, ...], card: Any) -> None:
        self._viewer, self.image, self.spatial, self.card = viewer, image, spatial, card
        self.prob_name, self.labels_name = f"{image.name} probability", f"{image.name} labels"
        self._deferred: tuple[Any, list[str]] = (None, [])
        self._ready = False
        self._next_id: int | None = None

    @property
    def prob(self) -> Any:
        return self._viewer.layers[self.prob_name]

    @property
    def labels(self) -> Any:
        return self._viewer.layers[self.labels_name]

    def build_step(self) -> bool:
        """Do the next building step, if one is left: probability layer, Labels layer
        (drawing-tool overlays deferred), each deferred overlay, labels on top and
        selected. True when a step was done (the caller gives it a turn of its own)."""
        layers, image, spatial = self._viewer.layers, self.image, self.spatial
        scale = image.scale[-len(spatial) :]
        if self.prob_name not in layers:
            lazy = not isinstance(image.data, np.ndarray)
            meta = {} if lazy else {"probabilities": np.zeros((len(self.card.classes), *spatial), np.float32)}
            self._viewer.add_image(self._array("probability", np.float32), name=self.prob_name, visible=False,
                                   scale=scale, colormap="magma", contrast_limits=(0, 1), metadata=meta)  # fmt: skip
            return True
        if self.labels_name not in layers:
            from napari.layers import Labels

            labels = Labels(self._array("labels", np.int32), name=self.labels_name, scale=scale,
                            metadata={"source": image.name, "checked": []})  # fmt: skip
            self._deferred = (labels, defer_tool_overlays(labels))
            layers.append(labels)
            return True
        layer, deferred = self._deferred
        if deferred:
            restore_tool_overlay(layer, deferred.pop(0))
            return True
        if not self._ready:
            self._ready = True
            prob, labels = self.prob, self.labels
            prob.metadata["card"] = self.card  # how to split these probabilities (Count)
            if layers.index(labels) < layers.index(prob):
                layers.move(layers.index(labels), layers.index(prob) + 1)
            if layers.selection.active is not labels:
                layers.selection.active = labels  # the controls switch: a turn of its own
                return True
        return False

    def write(self, partial: dict[int, tuple[np.ndarray, np.ndarray]], budget: float) -> list[int]:
        """Move finished planes (``{plane: (probabilities, labels)}``) into the layers, lowest
        first, for at most ``budget`` seconds; returns the planes written. Object ids
        continue from the largest already in the Labels layer."""
        prob_layer, labels_layer, spatial = self.prob, self.labels, self.spatial
        if self._next_id is None:
            self._next_id = _max_label(labels_layer.data) + 1
        full = prob_layer.metadata.get("probabilities")
        k = len(self.card.classes)
        if full is not None and full.shape != (k, *spatial):
            full = prob_layer.metadata["probabilities"] = np.zeros((k, *spatial), np.float32)
        start, written = time.perf_counter(), []
        while partial and time.perf_counter() - start < budget:
            p = min(partial)
            prob, labels = partial.pop(p)
            index = tuple(np.unravel_index(p, spatial[:-2])) if len(spatial) > 2 else ()
            prob_layer.data[index] = prob[0]
            if full is not None:
                full[(slice(None), *index)] = prob
            labels_layer.data[index] = np.where(labels > 0, labels + (self._next_id - 1), 0)
            self._next_id += int(labels.max())
            written.append(p)
        if written:
            if getattr(labels_layer.data, "attrs", None) is not None:  # our zarr store: remember the ids used
                labels_layer.data.attrs["napari_unet_max_label"] = self._next_id - 1
            prob_layer.refresh()
            labels_layer.refresh()
        return written

    def _array(self, what: str, dtype: Any) -> Any:
        """Storage for a result layer: in memory, or for a lazily opened image an OME-Zarr
        store in the image's session folder (only predicted slices take space; reopening
        the image finds them again)."""
        image, spatial = self.image, self.spatial
        if isinstance(image.data, np.ndarray):
            return np.zeros(spatial, dtype)
        from napari_unet.ome_zarr import open_ome_zarr_array
        from napari_unet.session import Session

        source = image.source.path if getattr(image, "source", None) is not None else None
        folder = Session.for_image(source, name=image.name, shape=spatial).folder
        scale = tuple(float(v) for v in image.scale[-len(spatial) :])
        axes = {2: "YX", 3: "ZYX", 4: "TZYX"}[len(spatial)]
        return open_ome_zarr_array(folder / f"{what}.zarr", spatial, dtype, axes=axes, scale=scale)


def _max_label(data: Any) -> int:
    """Largest id in a labels array. A zarr store the Predict step fills records it in its
    attributes: scanning a huge store on the GUI thread would freeze the window."""
    if isinstance(data, np.ndarray):
        return int(data.max()) if data.size else 0
    attrs = getattr(data, "attrs", None)
    if attrs is not None:
        return int(attrs.get("napari_unet_max_label", 0))
    return int(np.max(np.asarray(data)))
