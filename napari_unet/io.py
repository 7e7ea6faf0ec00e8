"""Images in and out: TIFF stacks (ImageJ, OME, BigTIFF), common 2D formats, labels.

Everything here is free of napari, Qt and torch. Arrays come out in one canonical
axis order, ``C T Z Y X S`` with absent axes dropped (``C`` = fluorescence channels,
``S`` = RGB samples), and the physical size of every non-channel axis comes with them.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "stack.tif")
>>> _ = write_tiff(path, np.zeros((3, 8, 8), np.uint16), axes="ZYX", scale=(2.0, 0.5, 0.5), units="um")
>>> img = read_image(path)
>>> img.axes, img.shape, img.scale, img.units[0]
('ZYX', (3, 8, 8), (2.0, 0.5, 0.5), 'micrometer')
"""

from __future__ import annotations

import contextlib
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from napari_unet._units import _CANONICAL, _unit
from napari_unet.writing import write_tiff

__all__ = [
    "LAZY_THRESHOLD",
    "ImageData",
    "ImageReadError",
    "check_labels_shape",
    "decode_color_labels",
    "read_image",
    "read_tiff",
    "write_tiff",
]

#: Files larger than this many bytes open lazily (a dask array over tifffile's zarr store).
LAZY_THRESHOLD = 1 << 30

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif", ".ome.tiff")
OTHER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: OME-Zarr stores (folders), as ``predict`` writes them for images larger than memory
ZARR_SUFFIXES = (".zarr", ".ome.zarr")
SUPPORTED_SUFFIXES = TIFF_SUFFIXES + OTHER_SUFFIXES + ZARR_SUFFIXES

#: Pixel types a U-Net can be fed. Anything else (complex, bool, object) is refused.
SUPPORTED_DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64")

#: File-name endings that mark a label image (as ``predict`` and ``count`` write them).
LABEL_SUFFIXES = ("_labels", "_label", "_mask", "_masks")


class ImageReadError(ValueError):
    """A file exists but cannot be read as an image; the message names it and says why."""


@dataclass(frozen=True)
class ImageData:
    """An image as read from disk, with its axes and physical pixel size.

    Attributes
    ----------
    data : numpy.ndarray or dask.array.Array
        Pixels in canonical axis order (a subset of ``"CTZYXS"``).
    axes : str
        One letter per axis of ``data``.
    scale : tuple of float
        Physical size of one step along every axis except ``C`` and ``S``.
    units : tuple of str
        Unit of each entry of ``scale`` (``"pixel"`` when the file does not say).
    path : pathlib.Path or None
        Where the image came from.
    is_labels : bool
        True for label images (a ``_labels``/``_mask`` file, or one we wrote as labels).
    """

    data: Any
    axes: str
    scale: tuple[float, ...]
    units: tuple[str, ...]
    path: Path | None = None
    is_labels: bool = False
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def name(self) -> str:
        return _stem(self.path) if self.path is not None else "image"

    @property
    def lazy(self) -> bool:
        return not isinstance(self.data, np.ndarray)

    @property
    def rgb(self) -> bool:
        return "S" in self.axes

    @property
    def channel_axis(self) -> int | None:
        return self.axes.index("C") if "C" in self.axes else None

    @property
    def spatial_axes(self) -> str:
        """Axes that napari shows as dimensions (everything but ``C`` and ``S``)."""
        return "".join(a for a in self.axes if a not in "CS")


def _stem(path: Path) -> str:
    name = Path(path).name
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file. Check the path and try again.")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not an image file. Choose a file inside it.")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{path}: no permission to read this file. Check its permissions.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes); it was probably not saved completely.")
    return path


def _check_dtype(path: Path, dtype: np.dtype) -> None:
    if np.dtype(dtype).name not in SUPPORTED_DTYPES:
        raise ImageReadError(
            f"{path}: pixel type {np.dtype(dtype).name} is not supported; "
            f"save the image as one of {', '.join(SUPPORTED_DTYPES)} (e.g. in Fiji: Image > Type)."
        )


def is_label_path(path: str | os.PathLike) -> bool:
    """True if a file name marks a label image (``cells_mask.tif``, ``cells_labels.tif``)."""
    return _stem(Path(path)).lower().endswith(LABEL_SUFFIXES)


def read_image(path: str | os.PathLike, *, lazy: bool | None = None, lazy_threshold: int = LAZY_THRESHOLD) -> ImageData:
    """Read a TIFF (any flavour), a PNG/JPEG/BMP/GIF image or an OME-Zarr store (lazily).

    Parameters
    ----------
    path : str or path-like
        The file to read.
    lazy : bool, optional
        Force (True) or forbid (False) lazy opening of TIFF files. By default a TIFF
        larger than ``lazy_threshold`` bytes opens lazily as a dask array.
    lazy_threshold : int
        Size in bytes above which TIFFs open lazily when ``lazy`` is None.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The path cannot be opened.
    ImageReadError
        The file is empty, not an image, truncated, or holds an unsupported pixel type.
    """
    if Path(path).is_dir() and Path(path).name.lower().endswith(ZARR_SUFFIXES):
        from dataclasses import replace

        from napari_unet.ome_zarr import read_ome_zarr

        img = read_ome_zarr(path)
        return replace(img, is_labels=is_label_path(path))
    path = _check_path(path)
    if path.name.lower().endswith(OTHER_SUFFIXES):
        return _read_imageio(path)
    return read_tiff(path, lazy=lazy, lazy_threshold=lazy_threshold)


def _read_imageio(path: Path) -> ImageData:
    import imageio.v3 as iio

    try:
        data = np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises many types for bad files
        raise ImageReadError(f"{path}: not a readable {path.suffix.lstrip('.').upper()} image ({exc}).") from exc
    _check_dtype(path, data.dtype)
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        axes = "YXS"
    elif data.ndim == 2:
        axes = "YX"
    else:
        raise ImageReadError(f"{path}: unexpected image shape {data.shape} for a 2D picture.")
    return ImageData(data, axes, (1.0, 1.0), ("pixel", "pixel"), path, is_label_path(path))


def read_tiff(path: str | os.PathLike, *, lazy: bool | None = None, lazy_threshold: int = LAZY_THRESHOLD) -> ImageData:
    """Read a TIFF file: single image, multi-page stack, ImageJ hyperstack, OME-TIFF, BigTIFF.

    Axes come out in canonical order (see module docstring); singleton ``T``, ``Z`` and
    ``C`` axes are dropped. The pixel size (ImageJ resolution or OME ``PhysicalSize``),
    the Z step and the time interval become ``scale`` and ``units``.
    """

    path = _check_path(path)
    if lazy is None:
        lazy = path.stat().st_size > lazy_threshold
    with _tifffile_errors() as problems:
        image = _read_tiff(path, lazy)
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


def _read_tiff(path: Path, lazy: bool) -> ImageData:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        raise ImageReadError(f"{path}: not a valid TIFF file ({exc}).") from exc
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot be opened as a TIFF ({exc}); it may be truncated or corrupt.") from exc
    try:
        series = _main_series(path, tif)
        _check_dtype(path, series[0].dtype)
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
            f"{path}: the pixel data cannot be read ({exc}); the file is truncated or corrupt."
        ) from exc
    data, axes = _to_canonical(data, axes_in)
    scale = tuple(float(scale_by_axis.get(a, 1.0)) for a in axes if a not in "CS")
    units = tuple(unit_by_axis.get(a, "pixel") for a in axes if a not in "CS")
    return ImageData(data, axes, scale, units, path, is_labels, {"source_axes": source_axes})


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


def check_labels_shape(labels_shape: tuple[int, ...], image: ImageData, *, labels_path: Any = None) -> None:
    """Raise ValueError unless a label image covers the same pixels as ``image``.

    Labels match when their shape equals the image's shape without ``C`` and ``S`` axes.
    """
    expected = tuple(n for n, a in zip(image.shape, image.axes) if a not in "CS")
    if tuple(labels_shape) != expected:
        what = f"{labels_path}: labels" if labels_path else "Labels"
        raise ValueError(
            f"{what} have shape {tuple(labels_shape)} but the image {image.name} has {expected}; "
            "open the labels that belong to this image, or predict new ones."
        )


def decode_color_labels(rgba: np.ndarray) -> np.ndarray:
    """Turn a mask painted one colour per object (RGB or RGBA) into an instance label image.

    Every distinct colour among foreground pixels (alpha > 0 for RGBA, non-black for RGB)
    gets its own id, 1..N, in order of first appearance scanning rows.

    >>> m = np.zeros((2, 3, 4), np.uint8)
    >>> m[0, 0] = m[0, 1] = (255, 0, 0, 255); m[1, 2] = (0, 9, 0, 255)
    >>> decode_color_labels(m)
    array([[1, 1, 0],
           [0, 0, 2]], dtype=int32)
    """
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[-1] not in (3, 4):
        raise ValueError(f"expected an RGB or RGBA image shaped (Y, X, 3|4), got shape {rgba.shape}")
    rgb = rgba[..., :3].astype(np.uint32)
    fg = rgba[..., 3] > 0 if rgba.shape[-1] == 4 else rgb.any(axis=-1)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    labels = np.zeros(code.shape, np.int32)
    values = code[fg]
    if values.size:
        uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        rank = np.empty(len(uniq), np.int32)
        rank[np.argsort(first)] = np.arange(1, len(uniq) + 1, dtype=np.int32)
        labels[fg] = rank[inverse.ravel()]
    return labels
