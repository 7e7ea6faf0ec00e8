"""Images in: the image model every reader returns, the checks they share, and one entry
point, :func:`read_image`, for TIFF (:mod:`napari_unet.tiff`), OME-Zarr
(:mod:`napari_unet.ome_zarr`) and common 2D formats; label-file helpers.

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

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.writing import write_tiff

__all__ = [
    "LAZY_THRESHOLD",
    "ImageData",
    "ImageReadError",
    "check_labels_shape",
    "decode_color_labels",
    "read_image",
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
    from napari_unet.tiff import read_tiff

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


def __getattr__(name: str) -> Any:
    # the TIFF reader lives in napari_unet.tiff, which builds on this module; still reachable here
    if name in ("read_tiff", "TiffArray"):
        from napari_unet import tiff

        return getattr(tiff, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
