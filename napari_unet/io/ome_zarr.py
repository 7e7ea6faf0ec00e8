"""OME-Zarr (OME-NGFF 0.5, zarr v3) for results too large for a TIFF, written out of core.

One resolution level at path ``0`` of a group whose ``ome`` attributes say what each axis
is and how large a pixel is, so Fiji (MoBIE/n5-viewer), napari-ome-zarr, QuPath and
``ome-zarr-py`` read the calibration. Writing goes to ``<name>.partial`` and is renamed
into place at the end: a crash leaves no store that looks finished, so a re-run does not
skip it. No napari, no torch.

>>> import numpy as np, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> path = write_ome_zarr(folder / "x.zarr", np.ones((3, 4, 5), np.float32), axes="ZYX",
...                       scale=(2.0, 0.5, 0.5), units="um")
>>> img = read_ome_zarr(path)
>>> img.axes, img.scale, img.units, img.shape
('ZYX', (2.0, 0.5, 0.5), ('micrometer', 'micrometer', 'micrometer'), (3, 4, 5))
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet._atomic import check_output_folder
from napari_unet.io._units import _unit

__all__ = ["ome_attributes", "open_ome_zarr_array", "read_ome_zarr", "write_ome_zarr"]

_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
#: NGFF axis order: time, then channel, then space
_ORDER = "TCZYX"


def ome_attributes(axes: str, scale: tuple[float, ...] | None, units: Any, name: str) -> dict:
    """The ``ome`` group attributes (NGFF 0.5 multiscales, one level at path ``0``).

    ``scale`` and ``units`` cover every axis but ``C`` (as :class:`~napari_unet.io.ImageData`
    keeps them); units NGFF does not know (``pixel``) are left out.
    """
    axes = axes.upper()
    if any(a not in _TYPES for a in axes) or axes != "".join(a for a in _ORDER if a in axes):
        raise ValueError(f"OME-Zarr axes must be in the order {_ORDER} (a subset), got {axes!r}")
    spatial = [a for a in axes if a != "C"]
    scale = tuple(float(s) for s in (scale if scale is not None else (1.0,) * len(spatial)))
    unit_list = (units,) * len(spatial) if isinstance(units, str) or units is None else tuple(units)
    if len(scale) != len(spatial) or len(unit_list) != len(spatial):
        raise ValueError(f"scale and units need one entry per non-channel axis of {axes!r}")
    axis_meta, full_scale = [], []
    it = iter(zip(scale, unit_list))
    for a in axes:
        entry: dict[str, Any] = {"name": a.lower(), "type": _TYPES[a]}
        if a == "C":
            full_scale.append(1.0)
        else:
            s, u = next(it)
            full_scale.append(s)
            u = _unit(u, default="")
            if u and u != "pixel":
                entry["unit"] = u
        axis_meta.append(entry)
    dataset = {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": full_scale}]}
    return {"version": "0.5", "multiscales": [{"name": name, "axes": axis_meta, "datasets": [dataset]}]}


def write_ome_zarr(
    path: str | os.PathLike,
    data: Any,
    *,
    axes: str,
    scale: tuple[float, ...] | None = None,
    units: Any = None,
    name: str | None = None,
    chunks: tuple[int, ...] | None = None,
) -> Path:
    """Write ``data`` (numpy or dask, computed block by block) as an OME-Zarr image.

    An existing store at ``path`` is replaced only once the new one is complete.
    """
    import dask.array as da

    path = Path(path)
    check_output_folder(path)
    attrs = ome_attributes(axes, scale, units, name or path.name.removesuffix(".zarr"))
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=chunks or "auto")
    if chunks is not None:
        arr = arr.rechunk(chunks)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        target = _new_store(partial, arr.shape, arr.dtype, arr.chunksize, axes, attrs)
        arr = arr.rechunk(arr.chunksize)  # regular: every zarr chunk is written by exactly one task
        da.store(arr, target, lock=False)  # block by block: never the whole image in memory
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a full disk or a crash: the old store stays as it was
        raise
    if path.exists():
        shutil.rmtree(path)
    partial.rename(path)
    return path


def open_ome_zarr_array(
    path: str | os.PathLike,
    shape: tuple[int, ...],
    dtype: Any,
    *,
    axes: str,
    scale: tuple[float, ...] | None = None,
    units: Any = None,
    chunks: tuple[int, ...] | None = None,
) -> Any:
    """A writable OME-Zarr image on disk, filled later (e.g. plane by plane by the widget).

    An existing store of the same shape and type is reopened, so what was written before
    (a crash, a closed window) is still there; one that does not match is replaced.
    Unwritten chunks read as 0 and take no disk space.
    """
    import zarr

    path = Path(path)
    shape = tuple(int(n) for n in shape)
    if path.exists():
        try:
            arr = zarr.open_array(str(path), path="0", mode="r+")
            if arr.shape == shape and arr.dtype == np.dtype(dtype):
                return arr
        except Exception:  # not a store we can reuse: start again
            pass
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = chunks or tuple(1 if i < len(shape) - 2 else min(n, 1024) for i, n in enumerate(shape))
    return _new_store(
        path, shape, dtype, chunks, axes, ome_attributes(axes, scale, units, path.name.removesuffix(".zarr"))
    )


def _new_store(path: Path, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...], axes: str, attrs: dict) -> Any:
    """An empty OME-Zarr group at ``path`` with its image array at ``0`` (unwritten chunks read 0)."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.attrs["ome"] = attrs
    return group.create_array("0", shape=shape, dtype=dtype, chunks=chunks, fill_value=0,
                              dimension_names=[a.lower() for a in axes.upper()])  # fmt: skip


def read_ome_zarr(path: str | os.PathLike, **_: Any) -> Any:
    """Open an OME-Zarr image (NGFF 0.4 or 0.5, first multiscale, full resolution) lazily.

    Returns an :class:`~napari_unet.io.ImageData` with a dask array, its axes (canonical
    ``CTZYX`` order), pixel size and units.
    """
    import dask.array as da
    import zarr

    from napari_unet.io._image import ImageData, ImageReadError, _safe_reason

    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a folder that is not a store
        raise ImageReadError(f"{path}: not a zarr store ({type(exc).__name__}: {_safe_reason(exc)})") from exc
    attrs = dict(group.attrs)
    meta = attrs.get("ome", attrs)  # 0.5 keeps it under "ome", 0.4 at the top
    multiscales = meta.get("multiscales")
    if not multiscales:
        raise ImageReadError(f"{path}: a zarr store without OME-Zarr 'multiscales' metadata; cannot tell its axes")
    ms = multiscales[0]
    axes = "".join(str(a["name"] if isinstance(a, dict) else a)[0].upper() for a in ms["axes"])
    level = ms["datasets"][0]
    scale = [1.0] * len(axes)
    for t in level.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [float(s) for s in t["scale"]]
    units = [a.get("unit", "pixel") if isinstance(a, dict) else "pixel" for a in ms["axes"]]
    data = da.from_zarr(zarr.open_array(str(path), path=level["path"], mode="r"))
    # canonical order C first: NGFF puts T before C
    if "T" in axes and "C" in axes:
        order = [axes.index("C")] + [i for i, a in enumerate(axes) if a != "C"]
        data = data.transpose(order)
        axes = "".join(axes[i] for i in order)
        scale = [scale[i] for i in order]
        units = [units[i] for i in order]
    keep = [i for i, a in enumerate(axes) if a != "C"]
    return ImageData(data, axes, tuple(scale[i] for i in keep), tuple(_unit(units[i]) for i in keep), path=path)
