"""Images in and out: TIFF (every flavour), OME-Zarr, PNG/JPEG, written atomically.

No napari, Qt or torch. The pieces build on each other one way: ``_image`` (the image
model and the checks every reader shares) <- ``tiff``, ``ome_zarr`` and ``read`` (the one
entry point, :func:`read_image`); ``writing`` (TIFF out) and ``_units`` stand alone.
"""

from __future__ import annotations

from napari_unet.io._image import (
    LABEL_SUFFIXES,
    LAZY_THRESHOLD,
    OTHER_SUFFIXES,
    SUPPORTED_DTYPES,
    SUPPORTED_SUFFIXES,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    ImageData,
    ImageReadError,
    image_stem,
    is_label_path,
)
from napari_unet.io.read import check_labels_shape, decode_color_labels, read_image
from napari_unet.io.writing import write_tiff

__all__ = [
    "LABEL_SUFFIXES",
    "LAZY_THRESHOLD",
    "OTHER_SUFFIXES",
    "SUPPORTED_DTYPES",
    "SUPPORTED_SUFFIXES",
    "TIFF_SUFFIXES",
    "ZARR_SUFFIXES",
    "ImageData",
    "ImageReadError",
    "check_labels_shape",
    "decode_color_labels",
    "image_stem",
    "is_label_path",
    "read_image",
    "write_tiff",
]
