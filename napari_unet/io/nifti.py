"""NIfTI volumes (``.nii``, ``.nii.gz``) in and out through nibabel, with their geometry.

A NIfTI array is indexed ``(i, j, k[, t])`` with ``i`` the fastest axis; napari-unet's axes are
``ZYX``, so the array is transposed to ``(k, j, i)`` and nothing else is done to the voxels
(no reorientation, no flips): a mask written back lies on the same voxels. The affine (voxel
to RAS+ millimetres) is kept in ``metadata["affine"]``, re-indexed for ``(z, y, x)``, and
:func:`write_nifti` gives it back, so a result opens in 3D Slicer, ITK-SNAP or FSLeyes on the
scan. nibabel is imported only when a NIfTI is read or written.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "ct.nii.gz")
>>> affine = np.diag([2.5, 0.7, 0.7, 1.0])  # (z, y, x) index -> mm
>>> _ = write_nifti(path, np.arange(24, dtype=np.int16).reshape(2, 3, 4), axes="ZYX", affine=affine)
>>> img = read_nifti(path)
>>> img.axes, img.shape, img.scale, int(img.data[1, 2, 3])
('ZYX', (2, 3, 4), (2.5, 0.7, 0.7), 23)
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet._atomic import atomic_write, check_output_folder
from napari_unet.io._image import (
    ImageData,
    ImageReadError,
    _check_dtype,
    _check_path,
    _safe_reason,
    as_label_dtype,
    is_label_path,
)

__all__ = ["affine_for", "read_nifti", "spacing_of", "write_nifti"]

_UNITS = {"mm": "millimeter", "micron": "micrometer", "meter": "meter"}
#: the ``(i, j, k)`` columns of a NIfTI affine in ``(z, y, x)`` order, and back
_ZYX = [2, 1, 0, 3]


def spacing_of(affine: Any) -> tuple[float, float, float]:
    """The voxel size along ``(z, y, x)`` of an affine indexed ``(z, y, x)``."""
    a = np.asarray(affine, float)
    return tuple(float(np.linalg.norm(a[:3, k])) for k in range(3))  # type: ignore[return-value]


def affine_for(img: ImageData) -> np.ndarray:
    """The ``(z, y, x)``-indexed affine (to RAS+ mm) of an image: the one its reader kept, else its
    voxel size on the diagonal (a TIFF has no orientation)."""
    if "affine" in img.metadata:
        return np.asarray(img.metadata["affine"], float)
    spatial = img.spatial_axes[-3:]
    size = dict(zip(img.spatial_axes, img.scale))
    return np.diag([float(size.get(a, 1.0)) if a in spatial else 1.0 for a in "ZYX"] + [1.0])


def read_nifti(path: str | os.PathLike, **_: Any) -> ImageData:
    """Read a NIfTI-1 or NIfTI-2 image as ``YX``, ``ZYX``, ``TZYX`` (a 4D series) or ``CZYX``
    (a 5D vector image with one time point), with the voxel size and the affine.

    Raises :class:`~napari_unet.io.ImageReadError` with the reason for a file that is not NIfTI,
    is truncated, or holds a pixel type or dimension that cannot be segmented.
    """
    import nibabel as nib

    path = _check_path(path)
    try:
        nii = nib.load(str(path))
        data = np.asanyarray(nii.dataobj)
        affine = np.asarray(nii.affine, float)[:, _ZYX]
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, OSError, zlib.error, ValueError ...
        raise ImageReadError(
            f"{path}: not a readable NIfTI image ({_safe_reason(exc)}); it may be truncated or not NIfTI."
        ) from exc
    if data.dtype.names:  # RGB24 / RGBA32 records
        raise ImageReadError(f"{path}: an RGB NIfTI image; napari-unet reads grayscale NIfTI volumes.")
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype.kind in "iu" and data.dtype.itemsize == 8:
        if data.size and (data.min() < np.iinfo(np.int32).min or data.max() > np.iinfo(np.int32).max):
            raise ImageReadError(f"{path}: 64-bit values beyond the 32-bit range; save it as int32 or float32.")
        data = data.astype(np.int32)
    _check_dtype(path, data.dtype)
    while data.ndim > 3 and data.shape[-1] == 1 and not (data.ndim == 5 and data.shape[3] == 1):
        data = data[..., 0]  # trailing singleton time or vector axes
    if data.ndim == 5 and data.shape[3] == 1:  # (i, j, k, 1, c): a vector image, as write_nifti writes channels
        data, axes = data[:, :, :, 0].transpose(3, 2, 1, 0), "CZYX"
    elif data.ndim == 4:
        data, axes = data.transpose(3, 2, 1, 0), "TZYX"
    elif data.ndim == 3:
        data, axes = data.transpose(2, 1, 0), "ZYX"
    elif data.ndim == 2:
        data, axes = data.T, "YX"
    else:
        raise ImageReadError(f"{path}: a {data.ndim}D NIfTI image (shape {data.shape}); napari-unet reads 2D to 4D.")
    space_unit, time_unit = nii.header.get_xyzt_units()
    known = bool(nii.header.get("sform_code", 0) or nii.header.get("qform_code", 0))
    unit = _UNITS.get(space_unit, "millimeter" if known else "pixel")
    zyx = tuple(float(f"{v:.7g}") for v in spacing_of(affine))  # the header holds float32: 0.7, not 0.69999999
    scale = zyx[-2:] if axes == "YX" else zyx
    units: tuple[str, ...] = (unit,) * len(scale)
    if axes == "TZYX":
        step = float(nii.header.get_zooms()[3]) if len(nii.header.get_zooms()) > 3 else 1.0
        scale, units = (step or 1.0, *scale), ({"sec": "second", "msec": "millisecond"}.get(time_unit, "pixel"),
                                               *units)  # fmt: skip
    metadata = {"source": "nifti", "affine": affine.tolist(), "space": "RAS"}
    return ImageData(np.ascontiguousarray(data), axes, tuple(scale), units, path, is_label_path(path), metadata)


def write_nifti(path: str | os.PathLike, data: Any, *, axes: str, affine: Any, labels: bool = False) -> Path:
    """Write ``YX``, ``ZYX``, ``CYX`` or ``CZYX`` data as NIfTI-1 (gzip for ``.nii.gz``), atomically.

    Parameters
    ----------
    path : path-like
        ``.nii`` or ``.nii.gz``.
    data : array-like
        Voxels in napari-unet's order; ``C`` (probability channels) becomes NIfTI's vector axis.
    affine : (4, 4) array-like
        ``(z, y, x)`` index to RAS+ mm, as :func:`read_nifti` keeps it (see :func:`affine_for`).
    labels : bool
        Integer ids in the smallest unsigned type that holds them, marked as a label map.
    """
    import nibabel as nib

    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: a NIfTI file name ends in .nii or .nii.gz")
    check_output_folder(path)
    array = np.asarray(data.compute() if hasattr(data, "compute") else data)
    if len(axes) != array.ndim or axes not in ("YX", "ZYX", "CYX", "CZYX"):
        raise ValueError(f"axes {axes!r} do not fit NIfTI output of shape {array.shape}; use YX, ZYX, CYX or CZYX")
    if labels:
        array = as_label_dtype(array)
    elif array.dtype == np.float64 or array.dtype == bool:
        array = array.astype(np.float32 if array.dtype == np.float64 else np.uint8)
    if "Z" not in axes:  # a 2D plane is one slice
        array = array[..., None, :, :]
    channels = axes.startswith("C")
    if channels:  # (c, z, y, x) -> (x, y, z, 1, c)
        out = array.transpose(3, 2, 1, 0)[:, :, :, None, :]
    else:  # (z, y, x) -> (x, y, z)
        out = array.transpose(2, 1, 0)
    xyz = np.asarray(affine, float)[:, _ZYX]
    nii = nib.Nifti1Image(np.ascontiguousarray(out), xyz)
    nii.header.set_xyzt_units("mm")
    nii.set_sform(xyz, code=1)
    nii.set_qform(xyz, code=1)
    if channels:
        nii.header.set_intent("vector")
    elif labels:
        nii.header.set_intent("label")
    raw = nii.to_bytes()
    body = gzip.compress(raw, compresslevel=6, mtime=0) if path.name.lower().endswith(".gz") else raw
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(body))
    return path
