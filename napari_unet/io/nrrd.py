"""NRRD volumes (CT and MR, as 3D Slicer and pyradiomics write them), read without a
dependency: the text header, then raw or gzip-compressed pixels.

Only what a scanner export holds is supported: one file (no detached data), encodings
``raw`` and ``gzip``, integer and float pixel types, and any dimension whose axes are all
spatial (``domain``/``space``). The array comes back as ``ZYX`` (NRRD lists the fastest
axis first), with the voxel size from ``space directions`` in millimetres.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

from napari_unet.io._image import ImageData, ImageReadError, _check_path, is_label_path

__all__ = ["read_nrrd"]

_TYPES = {
    "signed char": "i1", "int8": "i1", "int8_t": "i1",
    "uchar": "u1", "unsigned char": "u1", "uint8": "u1", "uint8_t": "u1",
    "short": "i2", "short int": "i2", "signed short": "i2", "signed short int": "i2", "int16": "i2", "int16_t": "i2",
    "ushort": "u2", "unsigned short": "u2", "unsigned short int": "u2", "uint16": "u2", "uint16_t": "u2",
    "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4",
    "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4",
    "float": "f4", "double": "f8",
}  # fmt: skip

#: refuse headers that promise more than this many voxels (a corrupt or hostile file)
MAX_VOXELS = 4 << 30


def _header(path: Path, raw: bytes) -> tuple[dict[str, str], int]:
    if not raw.startswith(b"NRRD000"):
        raise ImageReadError(f"{path}: not an NRRD file (it does not start with 'NRRD000').")
    end = raw.find(b"\n\n")
    if end < 0:
        raise ImageReadError(f"{path}: the NRRD header never ends; the file is truncated or not NRRD.")
    fields: dict[str, str] = {}
    for line in raw[:end].decode("latin-1").splitlines()[1:]:
        if not line or line.startswith("#") or ":=" in line:
            continue
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields, end + 2


def _spacing(fields: dict[str, str], ndim: int) -> tuple[float, ...]:
    if "space directions" in fields:
        vectors = re.findall(r"\(([^)]*)\)", fields["space directions"])
        if len(vectors) == ndim:
            return tuple(float(np.linalg.norm([float(v) for v in vec.split(",")])) for vec in vectors)
    if "spacings" in fields:
        values = fields["spacings"].split()
        if len(values) == ndim:
            return tuple(float(v) if v.lower() != "nan" else 1.0 for v in values)
    return (1.0,) * ndim


def read_nrrd(path: str | Path, **_: object) -> ImageData:
    """Read a ``.nrrd`` volume or image as ``ZYX`` (or ``YX``), with its voxel size in mm.

    Raises :class:`~napari_unet.io.ImageReadError` with the reason for anything else.
    """
    path = _check_path(path)
    raw = path.read_bytes()
    fields, start = _header(path, raw)
    try:
        dtype = np.dtype(_TYPES[fields.get("type", "").lower()])
        sizes = [int(v) for v in fields["sizes"].split()]
    except (KeyError, ValueError) as exc:
        raise ImageReadError(f"{path}: the NRRD header lacks a usable type or sizes ({exc}).") from None
    if "data file" in fields or "datafile" in fields:
        raise ImageReadError(f"{path}: a detached NRRD header (its pixels are in another file); save it as one .nrrd.")
    if not 2 <= len(sizes) <= 3 or any(n < 1 for n in sizes):
        raise ImageReadError(f"{path}: only 2D and 3D NRRD images are supported, got sizes {sizes}.")
    if int(np.prod(sizes)) > MAX_VOXELS:
        raise ImageReadError(f"{path}: the header promises {np.prod(sizes)} voxels, more than this reader accepts.")
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder("<" if fields.get("endian", "little") == "little" else ">")
    encoding = fields.get("encoding", "raw").lower()
    body = raw[start:]
    count = int(np.prod(sizes))
    if encoding in ("gzip", "gz"):
        try:  # never more than the header promises: a small file that inflates to gigabytes stops there
            body = zlib.decompressobj(wbits=31).decompress(body, count * dtype.itemsize)
        except (OSError, EOFError, zlib.error) as exc:
            raise ImageReadError(f"{path}: its compressed pixels are damaged ({exc}).") from None
    elif encoding != "raw":
        raise ImageReadError(f"{path}: NRRD encoding {encoding!r} is not supported; save it as raw or gzip.")
    if len(body) < count * dtype.itemsize:
        raise ImageReadError(
            f"{path}: the file holds {len(body)} bytes of pixels where its header promises "
            f"{count * dtype.itemsize}; it is truncated."
        )
    data = np.frombuffer(body[: count * dtype.itemsize], dtype).reshape(sizes[::-1]).astype(dtype.newbyteorder("="))
    spacing = _spacing(fields, len(sizes))[::-1]
    axes = "ZYX" if data.ndim == 3 else "YX"
    units = "millimeter" if "space" in fields or "space dimension" in fields else "pixel"
    return ImageData(data, axes, tuple(spacing), (units,) * data.ndim, path, is_label_path(path),
                     {"source": "nrrd"})  # fmt: skip
