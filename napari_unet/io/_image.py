"""The image model every reader returns, and the checks they share.

No napari, Qt or torch. Arrays come in one canonical axis order, ``C T Z Y X S`` with
absent axes dropped (``C`` = fluorescence channels, ``S`` = RGB samples), with the
physical size of every non-channel axis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.io.formats import FORMATS, split_series_path

#: Files larger than this many bytes open lazily (a dask array over tifffile's zarr store).
LAZY_THRESHOLD = 1 << 30

_BY_FORMAT = {f.name: f.suffixes for f in FORMATS}
TIFF_SUFFIXES = _BY_FORMAT["TIFF"]
OTHER_SUFFIXES = _BY_FORMAT["PNG, JPEG, BMP, GIF"]
#: medical volumes
MEDICAL_SUFFIXES = _BY_FORMAT["NRRD"] + _BY_FORMAT["NIfTI"] + _BY_FORMAT["DICOM"]
#: OME-Zarr stores (folders), as ``predict`` writes them for images larger than memory
ZARR_SUFFIXES = _BY_FORMAT["OME-Zarr"]
#: every file ending of the reader table (:mod:`napari_unet.io.formats`)
SUPPORTED_SUFFIXES = tuple(s for f in FORMATS for s in f.suffixes if s.startswith("."))

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
        return image_stem(self.path) if self.path is not None else "image"

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


def image_stem(path: Path) -> str:
    """A file's name without its image ending (``cells.ome.tif`` -> ``cells``); for a DICOM
    series (``FOLDER#LABEL``) its label, which comes from the series, never the patient."""
    series = split_series_path(path)
    if series is not None:
        return series[1]
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
    if not path.is_file():  # a FIFO or a device would block, or never end, when read
        raise ImageReadError(f"{path}: is not a regular file (a pipe or a device); save the image to a file first.")
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
    return image_stem(Path(path)).lower().endswith(LABEL_SUFFIXES)


def _safe_reason(exc: BaseException, limit: int = 200) -> str:
    """An exception's text for a message to the user, without any bytes of the file
    (a reader's error may quote the first bytes it found: never echo a file's contents)."""
    import re

    text = " ".join(str(exc).split())
    text = re.sub(r"""b(['"]).*?(?<!\\)\1""", "<bytes>", text)
    return text[:limit] or type(exc).__name__


def as_label_dtype(array: np.ndarray) -> np.ndarray:
    """Labels in the narrowest unsigned type that holds them (whole numbers >= 0 only)."""
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError("labels must be whole numbers; round or threshold the array first")
    elif array.dtype.kind not in "biu":
        raise ValueError(f"labels must be integers, got pixel type {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"labels must be >= 0 (0 = background), found {array.min()}")
    top = int(array.max()) if array.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return array.astype(dtype, copy=False)
    raise ValueError(f"too many labels to store ({top}); the maximum is {np.iinfo(np.uint32).max}")
