"""The one reader table: which reader opens a file or folder, by its name or its first bytes.

``read_image``, the npe2 reader (``_reader.py``), the CLI's folder expansion and every
"napari-unet reads ..." message use this table, and a test holds ``napari.yaml``'s file
patterns against it, so a new format is one reader module plus one entry here. No heavy
imports: a reader's module is imported when a file of its kind is read.

>>> format_for("scan.nii.gz").name, format_for("cells.ome.tif").name, format_for("x.docx") is None
('NIfTI', 'TIFF', True)
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FORMATS",
    "SERIES_MARK",
    "Format",
    "describe_formats",
    "format_for",
    "manifest_patterns",
    "split_series_path",
]

#: ``FOLDER#LABEL`` names one DICOM series of a folder that holds several
SERIES_MARK = "#"


@dataclass(frozen=True)
class Format:
    """One kind of input: its name, the file endings (or a folder) it is known by, and its reader.

    Attributes
    ----------
    name : str
        What a person calls it (in messages and ``info``).
    suffixes : tuple of str
        Lower-case file (or folder) endings, longest first where one ends another.
    reader : str
        ``"module:function"``; the function takes the path and keyword options
        (``lazy``, ``lazy_threshold``) and returns an :class:`~napari_unet.io.ImageData`.
    magic : tuple of (int, bytes)
        Byte strings at an offset that mark a file of this kind whatever its name.
    folder : bool
        A folder can be this kind of input (an OME-Zarr store, a folder of DICOM files).
    probe : str or None
        ``"module:function"`` that tells, cheaply, whether a folder of any name holds this
        kind (DICOM files); None: a folder is known by its ending only.
    """

    name: str
    suffixes: tuple[str, ...]
    reader: str
    magic: tuple[tuple[int, bytes], ...] = ()
    folder: bool = False
    probe: str | None = None

    def read_function(self) -> Callable:
        return _function(self.reader)

    def holds(self, folder: Path) -> bool:
        """Whether ``folder`` holds this kind of input, by its :attr:`probe`."""
        return self.probe is not None and bool(_function(self.probe)(folder))


def _function(name: str) -> Callable:
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


FORMATS: tuple[Format, ...] = (
    Format("TIFF", (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".tf8"), "napari_unet.io.tiff:read_tiff",
           magic=((0, b"II*\0"), (0, b"MM\0*"), (0, b"II+\0"), (0, b"MM\0+"))),
    Format("PNG, JPEG, BMP, GIF", (".png", ".jpg", ".jpeg", ".bmp", ".gif"), "napari_unet.io.read:read_picture",
           magic=((0, b"\x89PNG"), (0, b"\xff\xd8\xff"), (0, b"BM"), (0, b"GIF8"))),
    Format("NRRD", (".nrrd",), "napari_unet.io.nrrd:read_nrrd", magic=((0, b"NRRD000"),)),
    Format("NIfTI", (".nii.gz", ".nii"), "napari_unet.io.nifti:read_nifti", magic=((344, b"n+1\0"), (344, b"n+2\0"))),
    Format("DICOM", (".dcm", ".dicom", "dicomdir"), "napari_unet.io.dicom:read_dicom", magic=((128, b"DICM"),),
           folder=True, probe="napari_unet.io.dicom_series:holds_dicom"),
    Format("OME-Zarr", (".ome.zarr", ".zarr"), "napari_unet.io.ome_zarr:read_ome_zarr", folder=True),
)  # fmt: skip

_BY_NAME = {f.name: f for f in FORMATS}


def split_series_path(path: str | os.PathLike) -> tuple[Path, str] | None:
    """``(folder, label)`` for a ``FOLDER#LABEL`` series path, else None.

    >>> import tempfile; d = tempfile.mkdtemp()
    >>> split_series_path(d + "#5_CT_chest")[1], split_series_path(d + "/a.tif")
    ('5_CT_chest', None)
    """
    text = str(path)
    if SERIES_MARK not in text or Path(text).exists():
        return None
    folder, label = text.rsplit(SERIES_MARK, 1)
    return (Path(folder), label) if label and Path(folder).is_dir() else None


def _suffix_format(name: str) -> Format | None:
    name = name.lower().rstrip("/\\")
    matches = [(len(s), f) for f in FORMATS for s in f.suffixes if name.endswith(s)]
    return max(matches, key=lambda m: m[0])[1] if matches else None


def _magic_format(path: Path) -> Format | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(352)
    except OSError:
        return None
    for f in FORMATS:
        if any(head[offset : offset + len(mark)] == mark for offset, mark in f.magic):
            return f
    return None


def format_for(path: str | os.PathLike, *, look_inside: bool = True) -> Format | None:
    """The format that reads ``path``: by its ending, else (with ``look_inside``) its first bytes,
    or, for a folder, whether it holds DICOM files. None when no reader fits."""
    if split_series_path(path) is not None:
        return _BY_NAME["DICOM"]
    p = Path(path)
    by_name = _suffix_format(p.name)
    if p.is_dir():
        if by_name is not None and by_name.folder:
            return by_name
        if look_inside:
            return next((f for f in FORMATS if f.holds(p)), None)
        return None
    if by_name is not None or not look_inside or not p.is_file():
        return by_name
    return _magic_format(p)


def describe_formats() -> str:
    """What napari-unet reads, for messages: ``"TIFF, PNG, ..., DICOM (files or folders) and OME-Zarr"``."""
    names = [f.name + (" (files or folders)" if f.folder and f.name == "DICOM" else "") for f in FORMATS]
    return ", ".join(names[:-1]) + " and " + names[-1]


def manifest_patterns() -> list[str]:
    """The ``filename_patterns`` napari.yaml must list for this table (tested against the manifest)."""
    out: list[str] = []
    for f in FORMATS:
        for s in f.suffixes:
            pattern = f"*{s}" if s.startswith(".") else s.upper()
            if s.startswith(".") and any(s.endswith(t) and s != t for t in f.suffixes):
                continue  # *.ome.tif is already matched by *.tif
            out.append(pattern)
    return out
