"""Writing images and label images as compressed, ImageJ/Fiji-readable TIFF, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet._atomic import atomic_write, check_output_folder
from napari_unet.io._image import as_label_dtype
from napari_unet.io._units import _CANONICAL, _IMAGEJ_ORDER, _SHORT_UNITS, _unit

__all__ = ["keeps_geometry", "result_suffix", "write_result", "write_tiff"]


def write_tiff(
    path: str | os.PathLike,
    data: Any,
    *,
    axes: str | None = None,
    scale: tuple[float, ...] | None = None,
    units: tuple[str, ...] | str | None = None,
    labels: bool = False,
    compression: str = "zlib",
) -> Path:
    """Write an image or label image as a compressed, ImageJ-readable TIFF, atomically.

    The file is written to a temporary name in the same folder and renamed into place,
    so a crash or a full disk never leaves half a file where the old one was.

    Parameters
    ----------
    path : str or path-like
        Destination file.
    data : array-like
        Pixels; a dask array is computed.
    axes : str, optional
        Axis letters from ``"CTZYXS"``; by default ``YX``, ``ZYX`` or ``TZYX`` by ndim.
    scale, units : optional
        Physical step along each non-``C``/``S`` axis and its unit (one unit or one per axis).
    labels : bool
        Write as a label image: integer ids in the smallest unsigned type that holds them.
    compression : str
        tifffile compression; ``"zlib"`` (Deflate) is read by ImageJ/Fiji.
    """
    import tifffile

    path = Path(path)
    check_output_folder(path)
    array = np.asarray(data.compute() if hasattr(data, "compute") else data)
    if axes is None:
        axes = {2: "YX", 3: "ZYX", 4: "TZYX"}.get(array.ndim)
        if axes is None:
            raise ValueError(f"cannot guess axes for a {array.ndim}D array; pass axes='...'")
    if len(axes) != array.ndim or any(a not in _CANONICAL for a in axes):
        raise ValueError(f"axes {axes!r} do not fit an array of shape {array.shape}; use letters from CTZYXS")
    if labels:
        array = as_label_dtype(array)
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    elif array.dtype == bool:
        array = array.astype(np.uint8)
    spatial = [a for a in axes if a not in "CS"]
    scale = tuple(scale) if scale is not None else (1.0,) * len(spatial)
    if len(scale) != len(spatial):
        raise ValueError(f"scale {scale} needs one value per axis in {''.join(spatial)}")
    unit_list = [units] * len(spatial) if isinstance(units, str) or units is None else list(units)
    size = dict(zip(spatial, scale))
    unit = next((u for a, u in zip(spatial, unit_list) if a in "XY" and u and u != "pixel"), None)

    order = sorted(range(len(axes)), key=lambda k: _IMAGEJ_ORDER.index(axes[k]))
    array = array.transpose(order)
    ij_axes = "".join(axes[k] for k in order)
    imagej = array.dtype.name in ("uint8", "uint16", "int16", "float32") and "S" not in ij_axes
    kwargs: dict[str, Any] = {"compression": compression}
    resolution = (1.0 / size.get("X", 1.0), 1.0 / size.get("Y", 1.0))
    if imagej:
        meta: dict[str, Any] = {"axes": ij_axes}
        if unit:
            meta["unit"] = _SHORT_UNITS.get(_unit(unit), unit)
        if "Z" in size:
            meta["spacing"] = size["Z"]
        if "T" in size and size["T"] != 1.0:
            meta["finterval"] = size["T"]
        if labels:
            meta["Info"] = "napari-unet:labels"
        kwargs.update(imagej=True, metadata=meta, resolution=resolution)
    else:
        description = "napari-unet:labels" if labels else None
        kwargs.update(
            metadata=None,
            description=description,
            resolution=resolution,
            resolutionunit="CENTIMETER" if unit == "centimeter" else None,
        )
        kwargs["photometric"] = "rgb" if "S" in ij_axes else "minisblack"
    atomic_write(path, lambda tmp: tifffile.imwrite(tmp, array, **kwargs))
    return path


def keeps_geometry(image: Any) -> bool:
    """True for an image whose reader kept its place in the patient (NIfTI, DICOM): its results
    are written as NIfTI with its affine, so they lie on the scan in any clinical viewer."""
    return "affine" in getattr(image, "metadata", {})


def result_suffix(image: Any) -> str:
    """The file ending of results for an image: ``.nii.gz`` beside a clinical volume, else ``.tif``."""
    return ".nii.gz" if keeps_geometry(image) else ".tif"


def write_result(path: str | os.PathLike, data: Any, *, image: Any, axes: str, labels: bool = False) -> Path:
    """Write a result (probabilities, a mask, labels) on ``image``'s grid in the format its
    :func:`result_suffix` names: NIfTI with the image's affine, or TIFF with its pixel size."""
    if str(path).lower().endswith((".nii", ".nii.gz")):
        from napari_unet.io.nifti import affine_for, write_nifti

        return write_nifti(path, data, axes=axes, affine=affine_for(image), labels=labels)
    return write_tiff(path, data, axes=axes, scale=image.scale, units=image.units, labels=labels)
