"""Reading TIFF files: single images, multi-page stacks, ImageJ hyperstacks, OME-TIFF, BigTIFF.

No napari, no torch. Axes come out in the canonical order of :mod:`napari_unet.io._image`, with
the pixel size, Z step and frame interval; files above a size open lazily as a dask array
over tifffile's zarr store (:class:`TiffArray`, picklable for dask workers). A file that
tifffile reads only with logged errors (missing pages) is refused rather than read short.
"""

from __future__ import annotations

import contextlib
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from napari_unet.io._image import (
    LAZY_THRESHOLD,
    ImageData,
    ImageReadError,
    _check_dtype,
    _check_path,
    _safe_reason,
    is_label_path,
)
from napari_unet.io._units import _CANONICAL, _unit

__all__ = ["TiffArray", "read_tiff"]


def read_tiff(path: str | os.PathLike, *, lazy: bool | None = None, lazy_threshold: int = LAZY_THRESHOLD) -> ImageData:
    """Read a TIFF file: single image, multi-page stack, ImageJ hyperstack, OME-TIFF, BigTIFF.

    Axes come out in canonical order (see module docstring); singleton ``T``, ``Z`` and
    ``C`` axes are dropped. The pixel size (ImageJ resolution or OME ``PhysicalSize``),
    the Z step and the time interval become ``scale`` and ``units``.
    """

    path = _check_path(path)
    with _tifffile_errors() as problems:
        image = _read_tiff(path, lazy, lazy_threshold)
    if problems:
        # tifffile logs (rather than raises) when pages are missing or do not fit: a file
        # read that way would silently lose slices, so it is refused instead.
        raise ImageReadError(f"{path}: the file is truncated or corrupt ({problems[0]}).")
    return image


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    logger = logging.getLogger("tifffile")
    handler = _ErrorCollector()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


#: A file whose pixels, uncompressed, take more than this many times its size on disk and
#: more than the lazy threshold is refused as a decompression bomb (a real image of that
#: size does not compress 200-fold). NAPARI_UNET_ALLOW_HUGE=1 lets such a file through.
BOMB_RATIO = 200


def _declared_bytes(series: list[Any]) -> int:
    return sum(int(np.prod(s.shape, dtype=np.float64)) * np.dtype(s.dtype).itemsize for s in series)


def _check_not_a_bomb(path: Path, declared: int, lazy_threshold: int) -> None:
    on_disk = max(1, path.stat().st_size)
    if declared > lazy_threshold and declared > BOMB_RATIO * on_disk and not os.environ.get("NAPARI_UNET_ALLOW_HUGE"):
        raise ImageReadError(
            f"{path}: declares {declared / 1e9:.1f} GB of pixels in a {on_disk / 1e6:.1f} MB file "
            f"({declared / on_disk:.0f}-fold compression), which a real image does not reach; it was not read. "
            "If it is a real image, set NAPARI_UNET_ALLOW_HUGE=1."
        )


def _read_tiff(path: Path, lazy: bool | None, lazy_threshold: int = LAZY_THRESHOLD) -> ImageData:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        raise ImageReadError(f"{path}: not a valid TIFF file ({_safe_reason(exc)}).") from exc
    except Exception as exc:
        raise ImageReadError(
            f"{path}: cannot be opened as a TIFF ({_safe_reason(exc)}); it may be truncated or corrupt."
        ) from exc
    try:
        if tif.is_ome:
            _check_ome_companions(path, tif)
        series = _main_series(path, tif)
        _check_dtype(path, series[0].dtype)
        declared = _declared_bytes(series)  # what the pixels take in memory, whatever the compression
        _check_not_a_bomb(path, declared, lazy_threshold)
        if lazy is None:
            lazy = declared > lazy_threshold
        source_axes = series[0].axes if len(series) == 1 else "I" + series[0].axes
        axes_in = _normalise_axes(source_axes)
        scale_by_axis, unit_by_axis = _physical_sizes(tif)
        is_labels = is_label_path(path) or _written_as_labels(tif)
        if lazy:
            import dask.array as da

            parts = [_open_lazily(path, tif.series.index(s), s) for s in series]
            data = parts[0] if len(parts) == 1 else da.stack(parts)
        else:
            parts = [s.asarray() for s in series]
            data = parts[0] if len(parts) == 1 else np.stack(parts)
            tif.close()
    except ImageReadError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise ImageReadError(
            f"{path}: the pixel data cannot be read ({_safe_reason(exc)}); the file is truncated or corrupt."
            if "imagecodecs" not in str(exc)
            else f"{path}: its compression needs the imagecodecs package ({_safe_reason(exc)}); pip install imagecodecs"
        ) from exc
    data, axes = _to_canonical(data, axes_in)
    scale = tuple(float(scale_by_axis.get(a, 1.0)) for a in axes if a not in "CS")
    units = tuple(unit_by_axis.get(a, "pixel") for a in axes if a not in "CS")
    return ImageData(data, axes, scale, units, path, is_labels, {"source_axes": source_axes})


def _check_ome_companions(path: Path, tif: Any) -> None:
    """A multi-file OME-TIFF names the files that hold its other planes (``UUID
    FileName``). Only regular files in the same folder are read: a name with a folder in
    it (``../``, an absolute path) would pull pixels from elsewhere, a pipe would never
    end, and a missing file would be read as zeros."""
    try:
        root = ET.fromstring(tif.ome_metadata or "")
    except ET.ParseError as exc:
        raise ImageReadError(f"{path}: its OME metadata cannot be parsed ({_safe_reason(exc)}).") from exc
    names = {el.get("FileName") for el in root.iter() if el.tag.endswith("UUID") and el.get("FileName")}
    for name in sorted(names):
        if Path(name).name != name or name in (".", ".."):
            raise ImageReadError(
                f"{path}: its OME metadata points at pixel data outside its folder ({name!r}); only companion files "
                "in the same folder are read"
            )
        companion = path.parent / name
        if not companion.exists():
            raise ImageReadError(
                f"{path}: this multi-file OME-TIFF needs its companion file {name}, which is missing from "
                f"{path.parent}; copy it beside the image"
            )
        if not companion.is_file():
            raise ImageReadError(f"{path}: its companion {name} is not a regular file (a pipe or a device)")


def _main_series(path: Path, tif: Any) -> list[Any]:
    """The series that make up the image: one, or several equal pages written one by one."""
    series = [s for s in tif.series if s.shape]
    if not series:
        raise ImageReadError(f"{path}: the TIFF holds no image data.")
    if len(series) == 1 or tif.is_ome or tif.is_imagej:
        return series[:1]
    shapes = sorted({(s.shape, s.dtype.str) for s in series})
    if len(shapes) > 1:
        raise ImageReadError(
            f"{path}: its pages differ in shape or type ({', '.join(str(sh) for sh, _ in shapes[:4])}), so they "
            "do not form one stack; save each image as its own file, or resize them to one shape."
        )
    return series


class TiffArray:
    """A lazily read TIFF series that dask can ship to other processes.

    It keeps the path and series number, not an open file: each process opens tifffile's
    zarr store on its first read and reuses it. That is what lets a stack larger than RAM
    be predicted block by block on dask.distributed workers.
    """

    _stores: ClassVar[dict[tuple[str, int, int], Any]] = {}

    def __init__(
        self, path: str | os.PathLike, series: int, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]
    ) -> None:
        self.path, self.series = str(path), int(series)
        self.shape, self.dtype, self.chunks = tuple(shape), np.dtype(dtype), tuple(chunks)
        self.ndim = len(self.shape)
        self.mtime = Path(path).stat().st_mtime_ns  # a file rewritten in place gets a fresh store

    def _store(self) -> Any:
        key = (self.path, self.series, self.mtime)
        if key not in TiffArray._stores:
            import tifffile
            import zarr

            z = zarr.open(tifffile.imread(self.path, aszarr=True, series=self.series), mode="r")
            TiffArray._stores[key] = z if hasattr(z, "shape") else z["0"]
        return TiffArray._stores[key]

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._store()[key])

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("path", "series", "shape", "dtype", "chunks", "ndim", "mtime")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def _open_lazily(path: Path, index: int, series: Any) -> Any:
    import dask.array as da
    import zarr

    store = series.aszarr()
    z = zarr.open(store, mode="r")
    if not hasattr(z, "shape"):  # a pyramid: level 0 is full resolution
        z = z["0"]
    chunks = tuple(int(c) for c in z.chunks)
    store.close()
    return da.from_array(TiffArray(path, index, z.shape, z.dtype, chunks), chunks=chunks, lock=False, asarray=True)


def _normalise_axes(axes: str) -> str:
    """Map tifffile's axis codes to ``CTZYXS``: generic page axes become Z, then T."""
    out = []
    for a in axes.upper():
        if a in _CANONICAL and a not in out:
            out.append(a)
        elif "Z" not in out and "Z" not in axes.upper():
            out.append("Z")
        elif "T" not in out and "T" not in axes.upper():
            out.append("T")
        else:
            out.append("?")
    return "".join(out)


def _to_canonical(data: Any, axes: str) -> tuple[Any, str]:
    # Merge axes we could not name into their neighbour by reshaping; rare (5+ page dims).
    while "?" in axes:
        i = axes.index("?")
        j = i + 1 if i + 1 < len(axes) and axes[i + 1] not in "YXS" else i - 1
        lo, hi = sorted((i, j))
        data = data.reshape((*data.shape[:lo], data.shape[lo] * data.shape[hi], *data.shape[hi + 1 :]))
        axes = axes[:lo] + axes[j] + axes[hi + 1 :]
    order = sorted(range(len(axes)), key=lambda k: _CANONICAL.index(axes[k]))
    data = data.transpose(order)
    axes = "".join(axes[k] for k in order)
    squeeze = tuple(k for k, a in enumerate(axes) if a in "CTZ" and data.shape[k] == 1)
    if squeeze:
        data = (
            data.squeeze(axis=squeeze)
            if isinstance(data, np.ndarray)
            else data[tuple(0 if k in squeeze else slice(None) for k in range(len(axes)))]
        )
        axes = "".join(a for k, a in enumerate(axes) if k not in squeeze)
    return data, axes


def _physical_sizes(tif: Any) -> tuple[dict[str, float], dict[str, str]]:
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    if tif.is_ome and tif.ome_metadata:
        try:
            pixels = ET.fromstring(tif.ome_metadata).find(".//{*}Pixels")
        except ET.ParseError:
            pixels = None
        if pixels is not None:
            for axis in "XYZ":
                size = pixels.get(f"PhysicalSize{axis}")
                if size:
                    scale[axis] = float(size)
                    units[axis] = _unit(pixels.get(f"PhysicalSize{axis}Unit"), "micrometer")
            if pixels.get("TimeIncrement"):
                scale["T"] = float(pixels.get("TimeIncrement"))
                units["T"] = _unit(pixels.get("TimeIncrementUnit"), "second")
            return scale, units
    page = tif.pages.first
    ij = tif.imagej_metadata or {}
    res_unit = page.tags.get("ResolutionUnit")
    res_unit = int(res_unit.value) if res_unit is not None else 1
    unit = _unit(ij.get("unit")) if ij.get("unit") else {3: "centimeter"}.get(res_unit)
    if unit:
        for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
            value = page.tags.get(tag)
            if value is not None:
                num, den = value.value
                if num:
                    scale[axis] = den / num
                    units[axis] = unit
    if ij.get("spacing"):
        scale["Z"] = float(ij["spacing"])
        units["Z"] = unit or "pixel"
    if ij.get("finterval"):
        scale["T"] = float(ij["finterval"])
        units["T"] = "second"
    return scale, units


def _written_as_labels(tif: Any) -> bool:
    ij = tif.imagej_metadata or {}
    info = str(ij.get("Info", "")) + str(tif.pages.first.description or "")
    return "napari-unet:labels" in info
