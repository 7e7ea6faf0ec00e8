"""npe2 writer: labels layers as compressed, ImageJ-readable TIFF with the layer's pixel size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_unet.io import write_tiff


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Save a labels layer; returns the written path (napari's writer contract)."""
    out = Path(path)
    if out.suffix.lower() not in (".tif", ".tiff"):
        out = out.with_suffix(".tif")
    ndim = getattr(data, "ndim", 2)
    axes = {2: "YX", 3: "ZYX", 4: "TZYX"}.get(ndim)
    if axes is None:
        raise ValueError(f"cannot save {ndim}D labels as TIFF; napari-unet writes 2D to 4D labels")
    scale = tuple(float(s) for s in meta.get("scale", (1.0,) * ndim))[-ndim:]
    units = (meta.get("metadata") or {}).get("units")
    units = tuple(units)[-ndim:] if units else None
    write_tiff(out, data, axes=axes, scale=scale, units=units, labels=True)
    return [str(out)]
