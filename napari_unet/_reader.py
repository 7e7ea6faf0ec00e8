"""npe2 reader: every format of the reader table (TIFF, pictures, NRRD, NIfTI, DICOM files and
folders, OME-Zarr) into napari layers, errors as notifications. A DICOM folder opens each of its
series as a layer; a series' window is its contrast, its voxel size the layer's scale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_unet.io import ImageData, read_image

LayerData = tuple[Any, dict, str]


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader when every path is a file type we read, else None."""
    from napari_unet.io.formats import format_for

    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(format_for(str(p).rstrip("/\\")) is not None for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read files into layer data; a file that cannot be read is reported, the rest still open."""
    paths = [path] if isinstance(path, str) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        try:
            for one in _series_or_file(str(p).rstrip("/\\")):
                img = read_image(one)
                if img.metadata.get("note"):
                    _notify_warning(img.metadata["note"])
                layers.extend(image_to_layer_data(img))
        except (ValueError, OSError) as exc:
            _notify_error(str(exc))
    return layers


def _series_or_file(path: str) -> list[str]:
    """A folder of DICOM: each image series in it; anything else: itself."""
    from pathlib import Path

    from napari_unet.io.formats import format_for

    if Path(path).is_dir() and format_for(path, look_inside=False) is None:
        from napari_unet.io.dicom import find_series

        found = [s.named_in(path) for s in find_series(path).series]
        return found or [path]  # (none: read_image says why)
    return [path]


def _notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def looks_like_ct(img: ImageData) -> bool:
    """A grayscale image in memory whose values are Hounsfield units."""
    from napari_unet.engine.planes import in_hounsfield_units

    return not (img.rgb or img.channel_axis is not None or img.lazy) and in_hounsfield_units(img.data)


def _contrast_limits(img: ImageData) -> list[float] | None:
    """A DICOM series is shown in its own window; a CT in Hounsfield units otherwise in the lung
    window (its values are kept); for lazy data, the limits come from one middle plane so
    nothing else is read."""
    if img.metadata.get("window"):
        centre, width = img.metadata["window"]
        return [centre - width / 2, centre + width / 2]
    if looks_like_ct(img):
        from napari_unet.engine.planes import CT_WINDOWS

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
    if "affine" in img.metadata:  # where the voxels lie in the patient, for writing results back
        meta["affine"] = img.metadata["affine"]
    if "dicom" in img.metadata:  # the series' UIDs and files (no patient tag), for a DICOM SEG on it
        meta["dicom"] = img.metadata["dicom"]
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
