"""npe2 reader: TIFF stacks, 2D pictures and OME-Zarr stores into napari layers, errors as notifications."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_unet.io import SUPPORTED_SUFFIXES, ImageData, read_image

LayerData = tuple[Any, dict, str]


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader when every path is a file type we read, else None."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(str(p).rstrip("/\\").lower().endswith(SUPPORTED_SUFFIXES) for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read files into layer data; a file that cannot be read is reported, the rest still open."""
    paths = [path] if isinstance(path, str) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        try:
            layers.extend(image_to_layer_data(read_image(str(p).rstrip("/\\"))))
        except (ValueError, OSError) as exc:
            _notify_error(str(exc))
    return layers


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def looks_like_ct(img: ImageData) -> bool:
    """A grayscale image in memory whose values are Hounsfield units."""
    from napari_unet.planes import in_hounsfield_units

    return not (img.rgb or img.channel_axis is not None or img.lazy) and in_hounsfield_units(img.data)


def _contrast_limits(img: ImageData) -> list[float] | None:
    """A CT in Hounsfield units is shown in the lung window (its values are kept); for lazy
    data, the limits come from one middle plane so nothing else is read."""
    if looks_like_ct(img):
        from napari_unet.planes import CT_WINDOWS

        level, width = CT_WINDOWS["lung"]
        return [level - width / 2, level + width / 2]
    if not img.lazy or img.data.dtype.kind not in "iuf":
        return None
    index = tuple(n // 2 if a not in "YXS" else slice(None) for n, a in zip(img.shape, img.axes))
    plane = np.asarray(img.data[index])
    lo, hi = float(np.min(plane)), float(np.max(plane))
    return [lo, hi if hi > lo else lo + 1]


def image_to_layer_data(img: ImageData) -> list[LayerData]:
    """napari layer data for an image: labels, RGB, channels split into layers, or plain."""
    meta = {"path": str(img.path) if img.path else None, "axes": img.axes, "units": img.units}
    kwargs: dict[str, Any] = {"name": img.name, "scale": img.scale, "metadata": meta}
    if all(u != "pixel" for u in img.units):  # napari wants a unit for every axis or none
        kwargs["units"] = img.units
    if img.is_labels and not img.rgb and "C" not in img.axes:
        data = img.data if img.data.dtype.kind in "iu" else img.data.astype(np.int32)
        return [(data, kwargs, "labels")]
    if img.rgb:
        kwargs["rgb"] = True
    elif img.channel_axis is not None:
        kwargs["channel_axis"] = img.channel_axis
        kwargs["name"] = [f"{img.name} [ch{i}]" for i in range(img.shape[img.channel_axis])]
    limits = _contrast_limits(img)
    if limits is not None and "channel_axis" not in kwargs:
        kwargs["contrast_limits"] = limits
    return [(img.data, kwargs, "image")]
