"""Images in: one entry point, :func:`read_image`, over the reader table of
:mod:`napari_unet.io.formats` (TIFF, pictures, NRRD, NIfTI, DICOM, OME-Zarr); label-file helpers.

Everything here is free of napari, Qt and torch.

>>> import numpy as np, tempfile, os
>>> from napari_unet.io import write_tiff
>>> path = os.path.join(tempfile.mkdtemp(), "stack.tif")
>>> _ = write_tiff(path, np.zeros((3, 8, 8), np.uint16), axes="ZYX", scale=(2.0, 0.5, 0.5), units="um")
>>> img = read_image(path)
>>> img.axes, img.shape, img.scale, img.units[0]
('ZYX', (3, 8, 8), (2.0, 0.5, 0.5), 'micrometer')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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

__all__ = ["check_labels_shape", "decode_color_labels", "read_image", "read_picture"]


def read_image(path: str | os.PathLike, *, lazy: bool | None = None, lazy_threshold: int = LAZY_THRESHOLD) -> ImageData:
    """Read any image napari-unet knows (see :mod:`napari_unet.io.formats`): TIFF (any flavour),
    PNG/JPEG/BMP/GIF, NRRD, NIfTI, a DICOM file, series or folder, or an OME-Zarr store.

    Parameters
    ----------
    path : str or path-like
        The file or folder to read; ``FOLDER#LABEL`` names one DICOM series of a folder.
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
    from napari_unet.io.formats import describe_formats, format_for, split_series_path

    if split_series_path(path) is None and not Path(path).is_dir():
        path = _check_path(path)  # a missing, empty or unreadable file is named before any reader is chosen
    fmt = format_for(path)
    if fmt is None:
        if Path(path).is_dir():
            raise IsADirectoryError(
                f"{path}: is a folder that holds no DICOM series and is not an OME-Zarr store; choose an image "
                "file inside it (napari-unet reads " + describe_formats() + ")."
            )
        raise ImageReadError(f"{path}: not a kind of image napari-unet reads; it reads {describe_formats()}.")
    img = fmt.read_function()(path, lazy=lazy, lazy_threshold=lazy_threshold)
    if fmt.folder and Path(path).is_dir() and not img.is_labels and is_label_path(path):
        from dataclasses import replace

        img = replace(img, is_labels=True)
    return img


def read_picture(path: str | os.PathLike, **_: Any) -> ImageData:
    """A PNG, JPEG, BMP or GIF picture as ``YX`` or ``YXS`` (RGB) through imageio."""
    import imageio.v3 as iio

    path = _check_path(path)
    try:
        data = np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises many types for bad files
        raise ImageReadError(
            f"{path}: not a readable {path.suffix.lstrip('.').upper()} image ({_safe_reason(exc)})."
        ) from exc
    _check_dtype(path, data.dtype)
    metadata: dict = {}
    if (
        data.ndim == 3
        and data.shape[-1] in (3, 4)
        and _equal_channels(data, lossy=path.suffix.lower() in (".jpg", ".jpeg"))
    ):
        # an X-ray or a gray picture saved as RGB: one channel is the whole image
        data = np.ascontiguousarray(data[..., 0])
        metadata["note"] = f"{path.name}: its colour channels are equal, so it was read as a grayscale image"
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        axes = "YXS"
    elif data.ndim == 2:
        axes = "YX"
    else:
        raise ImageReadError(f"{path}: unexpected image shape {data.shape} for a 2D picture.")
    return ImageData(data, axes, (1.0, 1.0), ("pixel", "pixel"), path, is_label_path(path), metadata)


def _equal_channels(data: np.ndarray, *, lossy: bool) -> bool:
    """True when R, G and B are the same picture (alpha, if any, fully opaque): equal, or
    within 2 levels for a JPEG, whose compression can shift the channels apart a little."""
    if data.shape[-1] == 4 and not (data[..., 3] == data[..., 3].max()).all():
        return False
    rgb = data[..., :3]
    if lossy:
        a, b, c = (rgb[..., i].astype(np.int32) for i in range(3))
        return bool(np.abs(a - b).max() <= 2 and np.abs(a - c).max() <= 2)
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all())


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
