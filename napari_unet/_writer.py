"""npe2 writer: labels layers as compressed, ImageJ-readable TIFF with the layer's pixel size, or
as NIfTI (``.nii.gz``) with the scan's affine when the layer came from a NIfTI or DICOM volume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.io import write_tiff


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Save a labels layer; returns the written path (napari's writer contract)."""
    out = Path(path)
    ndim = getattr(data, "ndim", 2)
    scale = tuple(float(s) for s in meta.get("scale", (1.0,) * ndim))[-ndim:]
    if out.name.lower().endswith((".nii", ".nii.gz")):
        from napari_unet.io.nifti import write_nifti

        if ndim not in (2, 3):
            raise ValueError(f"cannot save {ndim}D labels as NIfTI; napari-unet writes 2D and 3D labels")
        affine = (meta.get("metadata") or {}).get("affine")
        if affine is None:
            affine = np.diag([*([1.0] * (3 - ndim)), *scale, 1.0])
        write_nifti(out, np.asarray(data), axes="ZYX"[-ndim:], affine=affine, labels=True)
        return [str(out)]
    if out.suffix.lower() not in (".tif", ".tiff"):
        out = out.with_suffix(".tif")
    axes = {2: "YX", 3: "ZYX", 4: "TZYX"}.get(ndim)
    if axes is None:
        raise ValueError(f"cannot save {ndim}D labels as TIFF; napari-unet writes 2D to 4D labels")
    units = (meta.get("metadata") or {}).get("units")
    units = tuple(units)[-ndim:] if units else None
    write_tiff(out, data, axes=axes, scale=scale, units=units, labels=True)
    return [str(out)]
