"""DICOM series in a folder: which files are DICOM, how they group into series, and what a
folder holds besides (non-image objects, other files), read from headers only.

A folder (sub-folders too, or a DICOMDIR's folder) is searched for DICOM files; they are grouped
by ``SeriesInstanceUID``, and each image series is one input, named ``<number>_<description>``
from the series, never from the patient (``FOLDER#LABEL`` names one of them). The scan of a
folder is cached until the folder changes. No pixels are read here, and no patient tag.

pydicom is imported only when a folder or file is scanned.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_unet.io._image import ImageReadError
from napari_unet.io.formats import SERIES_MARK

__all__ = ["NON_IMAGE", "Scan", "Series", "find_series", "holds_dicom", "is_dicom_file", "non_image_kind",
           "quiet_read", "read_header", "series_label"]  # fmt: skip

#: modalities that are not pictures to segment (structured reports, contours, segmentations, ...)
NON_IMAGE = ("SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "KO", "PR", "DOC", "REG", "FID", "RWV", "PLAN")
#: a folder is searched this deep and this wide at most for DICOM files
MAX_FILES = 100_000
_HEADER_TAGS = ("SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "SOPClassUID", "Rows")


def is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def quiet_read(path: Path, **kwargs: Any) -> Any:
    """pydicom's dcmread without its warnings on stderr (a person sees our sentence, not pydicom's)."""
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, **kwargs)


def read_header(path: Path, tags: list[str] | None = None) -> Any:
    """The header of a DICOM file, or None for a file that is not DICOM. A file without the
    128-byte preamble (as some old exports write) is read too when it names its SOP class."""
    marked = is_dicom_file(path)
    try:
        ds = quiet_read(path, stop_before_pixels=True, specific_tags=tags, force=not marked)
    except Exception:
        return None
    return ds if marked or "SOPClassUID" in ds else None


def non_image_kind(ds: Any) -> str | None:
    """Why a DICOM object is not an image to segment, or None when it is one."""
    modality = str(ds.get("Modality", "") or "")
    if modality.upper() in NON_IMAGE:
        return modality.upper()
    if "Rows" not in ds:
        return f"{modality or 'objects'} without pixels"
    return None


def holds_dicom(folder: Path, *, probe: int = 64) -> bool:
    """True when a folder (or one below it) holds a DICOMDIR or a DICOM file among the first
    ``probe`` files looked at: cheap enough for napari's "can you read this?" question."""
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        if root.lower().endswith((".zarr", ".napari-unet")):
            dirs[:] = []
            continue
        for name in sorted(files):
            if name.upper() == "DICOMDIR" or is_dicom_file(Path(root) / name):
                return True
            seen += 1
            if seen >= probe:
                return False
    return False


@dataclass(frozen=True)
class Series:
    """One DICOM series found in a folder: what identifies it, never who it is of."""

    folder: Path
    uid: str
    label: str
    number: int | None
    description: str
    modality: str
    files: tuple[Path, ...]

    def named_in(self, folder: str | os.PathLike) -> str:
        """``FOLDER#LABEL``: the input name of this series, with the folder as the person gave
        it (messages and output paths say what they typed, not the resolved path)."""
        return f"{folder}{SERIES_MARK}{self.label}"


@dataclass(frozen=True)
class Scan:
    """What a folder holds: its image series, and what was left out (said once, in a sentence)."""

    series: tuple[Series, ...]
    not_dicom: int
    non_image: tuple[str, ...]

    def notes(self, folder: Path) -> list[str]:
        out = []
        if self.not_dicom:
            out.append(f"{folder}: {self.not_dicom} file(s) that are not DICOM were left out")
        if self.non_image:
            kinds = ", ".join(sorted(set(self.non_image)))
            out.append(f"{folder}: {len(self.non_image)} non-image DICOM object(s) ({kinds}) were left out")
        return out


def series_label(number: Any, description: str, modality: str) -> str:
    words = re.sub(r"[^A-Za-z0-9.+-]+", "_", description.strip()).strip("_.")[:48] or modality or "series"
    return f"{number}_{words}" if number not in (None, "") else words


def _walk(folder: Path) -> list[Path]:
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        if root != str(folder) and root.lower().endswith((".zarr", ".napari-unet")):
            dirs[:] = []
            continue
        out += [Path(root) / name for name in sorted(files) if not name.startswith(".")]
        if len(out) > MAX_FILES:
            raise ImageReadError(f"{folder}: holds more than {MAX_FILES} files; choose the folder of one study.")
    return out


@functools.lru_cache(maxsize=16)
def _scan_cached(folder: str, stamp: tuple) -> Scan:
    groups: dict[str, list[tuple[Path, Any]]] = {}
    not_dicom, non_image = 0, []
    for path in _walk(Path(folder)):
        if path.name.upper() == "DICOMDIR":
            continue  # an index of the files below, which are read themselves
        ds = read_header(path, list(_HEADER_TAGS))
        if ds is None:  # not DICOM, or a damaged header
            not_dicom += 1
            continue
        why = non_image_kind(ds)
        if why is not None:
            non_image.append(why)
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    series = []
    for uid, members in groups.items():
        first = members[0][1]
        number = first.get("SeriesNumber")
        number = int(number) if number not in (None, "") else None
        description = str(first.get("SeriesDescription", "") or "")
        modality = str(first.get("Modality", "") or "")
        series.append((number if number is not None else 1 << 30, uid, number, description, modality,
                       tuple(p for p, _ in members)))  # fmt: skip
    series.sort(key=lambda s: (s[0], s[1]))
    labels: dict[str, int] = {}
    out = []
    for _, uid, number, description, modality, files in series:
        label = series_label(number, description, modality)
        labels[label] = labels.get(label, 0) + 1
        if labels[label] > 1:
            label = f"{label}_{labels[label]}"
        out.append(Series(Path(folder), uid, label, number, description, modality, files))
    return Scan(tuple(out), not_dicom, tuple(non_image))


def find_series(folder: str | os.PathLike) -> Scan:
    """The image series under ``folder`` (a DICOMDIR's folder for a DICOMDIR), sorted by series
    number, and what was left out. Scanned once per change of the folder."""
    folder = Path(folder)
    if folder.is_file() and folder.name.upper() == "DICOMDIR":
        folder = folder.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder. Check the path and try again.")
    try:
        stamp = tuple((str(p), p.stat().st_mtime_ns) for p in [folder, *sorted(folder.iterdir())] if p.is_dir())
    except OSError as exc:
        raise PermissionError(f"{folder}: cannot be listed ({exc.strerror}); check its permissions.") from None
    return _scan_cached(str(folder.resolve()), stamp)
