"""Count's *Save labels*: a labels layer written in the format its image came in.

NIfTI with the scan's affine (the default beside a NIfTI or DICOM image), a DICOM SEG on the
source series (``.dcm``, beside a DICOM image), else a TIFF with the layer's pixel size. The
writing itself is the core's (:mod:`napari_unet.io`); this module only picks and asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_unet._widgets._common import notify_error, notify_info


def save_labels(layer: Any, image_layer: Any, table: Any, path: str | Path | None = None) -> Path | None:
    """Write ``layer``'s labels to ``path`` (asked for when None); a failure is one notification."""
    from napari_unet.io import write_tiff
    from napari_unet.io.nifti import write_nifti

    meta = getattr(image_layer, "metadata", None) or {}
    affine = meta.get("affine") or (layer.metadata or {}).get("affine")
    if path is None:
        from qtpy.QtWidgets import QFileDialog

        kinds = ["TIFF (*.tif)"]
        if affine is not None:
            kinds.insert(0, "NIfTI (*.nii.gz)")
        if meta.get("dicom"):
            kinds.insert(1, "DICOM SEG (*.dcm)")
        default = f"{layer.name}.nii.gz" if affine is not None else f"{layer.name}.tif"
        path, _ = QFileDialog.getSaveFileName(None, "Save labels", default, ";;".join(kinds))
        if not path:
            return None
    units = [str(u) for u in getattr(layer, "units", ())] or None
    data = np.asarray(layer.data)
    try:
        if str(path).lower().endswith(".dcm"):
            return _save_seg(Path(path), data, image_layer, layer.name, table)
        if str(path).lower().endswith((".nii", ".nii.gz")):
            if affine is None:
                affine = np.diag([*([1.0] * (3 - data.ndim)), *map(float, layer.scale[-3:]), 1.0])
            return write_nifti(path, data, axes="ZYX"[-data.ndim :], affine=affine, labels=True)
        return write_tiff(path, data, scale=tuple(layer.scale), units=units, labels=True)
    except (OSError, ValueError) as exc:
        notify_error(f"Save labels: {exc}")
        return None


def _save_seg(path: Path, data: np.ndarray, image_layer: Any, name: str, table: Any) -> Path:
    """The objects as a DICOM SEG on the series the image layer was read from (its metadata
    names the series' files: nothing is read again here), one segment per class."""
    from napari_unet.io.dicom_seg import segments_from_objects, write_dicom_seg

    if image_layer is None or not (getattr(image_layer, "metadata", None) or {}).get("dicom"):
        raise ValueError("a DICOM SEG needs an image read from a DICOM series; save as NIfTI or TIFF instead")
    classes = dict(zip(table["id"], table["class"])) if table is not None and "class" in table else None
    mask, names = segments_from_objects(data, classes, name=name)
    written = write_dicom_seg(path, mask, image_layer, class_names=names, model_name="napari-unet count")
    if written is None:
        raise ValueError("there are no objects to save; a DICOM SEG needs at least one")
    notify_info(f"Saved {len(names)} segment(s) as a DICOM SEG on series {image_layer.name} to {path}")
    return written
