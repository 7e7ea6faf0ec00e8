"""DICOM in: a file, a series, or a folder (or DICOMDIR) of series, read with their geometry.

- A folder is searched (sub-folders too) for DICOM files; they are grouped by series, and each
  image series is one input, named ``<number>_<description>`` from the series, never from the
  patient. ``FOLDER#LABEL`` names one of them.
- Slices are ordered by their position along the slice normal (``ImagePositionPatient`` on the
  cross product of the ``ImageOrientationPatient`` directions), never by file name or
  ``InstanceNumber``; the Z step comes from those positions, not ``SliceThickness``.
- Stored values become scanner values through ``RescaleSlope``/``RescaleIntercept`` (Hounsfield
  units for CT), ``int16`` where that is exact, else ``float32``; the window centre and width are
  kept as the default contrast.
- Enhanced (multi-frame) CT and MR read the same way from their functional groups.
- Refused in one sentence: slices in several orientations or of several sizes in one series,
  slices missing (a gap of two steps or more), two slices at one position, non-image objects
  (SEG, SR, RTSTRUCT, ...) given on their own, a file that is not DICOM, pixels no installed
  decoder reads. Warned in one sentence: uneven slice spacing (its range), gantry tilt, non-image
  objects and non-DICOM files left out of a folder.
- Patient data never leaves this module: names, IDs and birth dates are not read into the
  image, its metadata, messages or output names. ``metadata["dicom"]`` holds only what a DICOM
  SEG needs to reference the series (UIDs, the files in slice order).

pydicom is imported only when a DICOM is read.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.io._image import ImageData, ImageReadError, _safe_reason
from napari_unet.io.dicom_geometry import Frame, frames_of, stack_order
from napari_unet.io.formats import SERIES_MARK, split_series_path

__all__ = ["Series", "find_series", "holds_dicom", "read_dicom", "series_affine"]

#: modalities that are not pictures to segment (structured reports, contours, segmentations, ...)
NON_IMAGE = ("SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "KO", "PR", "DOC", "REG", "FID", "RWV", "PLAN")
#: a folder is searched this deep and this wide at most for DICOM files
MAX_FILES = 100_000
_HEADER_TAGS = ("SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "SOPClassUID", "Rows")


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _quiet_read(path: Path, **kwargs: Any) -> Any:
    """pydicom's dcmread without its warnings on stderr (a person sees our sentence, not pydicom's)."""
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, **kwargs)


def _header(path: Path, tags: list[str] | None = None) -> Any:
    """The header of a DICOM file, or None for a file that is not DICOM. A file without the
    128-byte preamble (as some old exports write) is read too when it names its SOP class."""
    marked = _is_dicom_file(path)
    try:
        ds = _quiet_read(path, stop_before_pixels=True, specific_tags=tags, force=not marked)
    except Exception:
        return None
    return ds if marked or "SOPClassUID" in ds else None


def _what(ds: Any) -> str | None:
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
            if name.upper() == "DICOMDIR" or _is_dicom_file(Path(root) / name):
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

    @property
    def path(self) -> str:
        """``FOLDER#LABEL``: the input name of this series."""
        return f"{self.folder}{SERIES_MARK}{self.label}"


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


def _label(number: Any, description: str, modality: str) -> str:
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
        ds = _header(path, list(_HEADER_TAGS))
        if ds is None:  # not DICOM, or a damaged header
            not_dicom += 1
            continue
        why = _what(ds)
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
        label = _label(number, description, modality)
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


# --------------------------------------------------------------------------- reading


def read_dicom(path: str | os.PathLike, **_: Any) -> ImageData:
    """Read a DICOM file, a series (``FOLDER#LABEL``) or a folder (or DICOMDIR) holding one image series.

    A folder with several series is refused with their names, to be given as ``FOLDER#LABEL``
    (the CLI and the napari reader expand such a folder themselves).
    """
    named = split_series_path(path)
    path = Path(path)
    if named is not None:
        folder, label = named
        scan = find_series(folder)
        match = [s for s in scan.series if s.label == label]
        if not match:
            names = ", ".join(s.label for s in scan.series) or "none"
            raise ImageReadError(f"{folder}: holds no series {label!r}; its series are {names}.")
        return _read_series(match[0], scan.notes(folder), Path(f"{folder}{SERIES_MARK}{label}"))
    if path.is_dir() or path.name.upper() == "DICOMDIR":
        folder = path if path.is_dir() else path.parent
        scan = find_series(folder)
        if not scan.series:
            left = " ".join(scan.notes(folder))
            raise ImageReadError(f"{folder}: holds no DICOM image series{'; ' + left if left else ''}.")
        if len(scan.series) > 1:
            names = ", ".join(f"{folder}{SERIES_MARK}{s.label}" for s in scan.series)
            raise ImageReadError(f"{folder}: holds {len(scan.series)} series; name one: {names}.")
        return _read_series(scan.series[0], scan.notes(folder), Path(f"{folder}{SERIES_MARK}{scan.series[0].label}"))
    ds = _header(path)
    if ds is None:
        raise ImageReadError(f"{path}: not a DICOM file, or one too damaged to read; choose the scan's DICOM files.")
    modality = str(ds.get("Modality", "") or "")
    why = _what(ds)
    if why is not None:
        kind = getattr(ds.get("SOPClassUID"), "name", "") or why
        raise ImageReadError(
            f"{path}: a DICOM {kind} object, not an image to segment; open the image series it belongs to."
        )
    number = ds.get("SeriesNumber")
    label = _label(int(number) if number not in (None, "") else None, str(ds.get("SeriesDescription", "") or ""),
                   modality)  # fmt: skip
    one = Series(path.parent, str(ds.get("SeriesInstanceUID", "")), label, None, "", modality, (path,))
    return _read_series(one, [], path)


def _pixels(ds: Any, where: str) -> np.ndarray:
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises RuntimeError, NotImplementedError, ValueError for codecs
        syntax = ds.file_meta.get("TransferSyntaxUID") if "file_meta" in dir(ds) else None
        name = getattr(syntax, "name", str(syntax))
        if syntax is not None and getattr(syntax, "is_compressed", False):
            if not _decoder_available(syntax):
                raise ImageReadError(
                    f"{where}: its pixels are compressed as {name}, which no installed decoder reads; "
                    "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pyjpegls adds the decoders."
                ) from None
            raise ImageReadError(
                f"{where}: its {name} pixels could not be decoded; the file may be damaged ({_safe_reason(exc, 160)})."
            ) from None
        raise ImageReadError(f"{where}: its pixel data cannot be read ({_safe_reason(exc)}).") from None


def _stored_planes(frames: list[Frame], where: str) -> Iterator[np.ndarray]:
    """Each slice's stored values, in order, a file decoded once (a multi-frame file is kept
    while its frames are taken)."""
    cache: dict[Path, np.ndarray] = {}
    for f in frames:
        if f.file not in cache:
            cache[f.file] = _pixels(_quiet_read(f.file, force=not _is_dicom_file(f.file)), where)
        data = cache[f.file]
        yield data[f.index] if f.index is not None else data
        if f.index is None:
            del cache[f.file]  # a classic file holds one slice: keep no copy


def _scaled_volume(frames: list[Frame], where: str) -> np.ndarray:
    """The slices' values through their rescale, filled slice by slice into one array: int16
    where every value fits exactly (Hounsfield units), else uint16 (unsigned stored values that
    fit), else float32. One slice is in float64 at a time, so a 200x512^2 CT peaks near its
    own size, not at the ten times a float64 copy of the whole stack took."""
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    exact = bool(np.all(slopes == 1) and np.all(intercepts == np.round(intercepts)))
    shape = (len(frames), *frames[0].shape)
    candidates: list[type] = [np.int16, np.uint16] if exact else []
    for dtype in (*candidates, np.float32):
        out = np.empty(shape, dtype)
        fits = True
        for k, (f, stored) in enumerate(zip(frames, _stored_planes(frames, where))):
            if dtype is np.uint16 and stored.dtype.kind != "u":
                fits = False
                break
            values = stored.astype(np.float64) * f.slope + f.intercept
            if dtype is not np.float32:
                limits = np.iinfo(dtype)
                if values.size and (values.min() < limits.min or values.max() > limits.max):
                    fits = False  # (read again as the next type: rare, e.g. uint16 MR above 32767)
                    break
            out[k] = values
        if fits:
            return out
    raise AssertionError("float32 holds every value")  # not reached


def _decoder_available(syntax: Any) -> bool:
    try:
        from pydicom.pixels import get_decoder

        return bool(get_decoder(syntax).is_available)
    except Exception:  # an unknown syntax has no decoder at all
        return False


def _read_series(series: Series, notes: list[str], given: Path) -> ImageData:
    """The series as one image; ``given`` is how the person named it (messages and the image's path)."""
    where = str(given)
    datasets: dict[Path, Any] = {}
    frames: list[Frame] = []
    for file in series.files:
        ds = _header(file)
        if ds is None:
            raise ImageReadError(f"{file}: a damaged DICOM file; export the series again.")
        datasets[file] = ds
        frames += frames_of(ds, file)
    frames, affine_lps, warnings = stack_order(frames, where)
    first = datasets[frames[0].file]
    samples = int(first.get("SamplesPerPixel", 1) or 1)
    if samples == 1:
        data = _scaled_volume(frames, where)
        if str(first.get("PhotometricInterpretation", "")) == "MONOCHROME1":  # white is low: shown as usual
            data = (data.max() + data.min() - data).astype(data.dtype)
    else:
        stored = np.stack(list(_stored_planes(frames, where)))
        data = stored.astype(np.uint8) if stored.dtype.itemsize == 1 else stored
    spacing = frames[0].spacing
    unit = "millimeter" if spacing is not None else "pixel"
    units: tuple[str, ...]
    if len(frames) == 1:
        data = data[0]
        axes = "YX" if samples == 1 else "YXS"
        scale: tuple[float, ...] = tuple(spacing) if spacing is not None else (1.0, 1.0)
        units = (unit, unit)
    else:
        axes = "ZYX" if samples == 1 else "ZYXS"
        z = float(np.linalg.norm(affine_lps[:3, 0]))
        scale = (z, *(spacing or (1.0, 1.0)))
        units = ("millimeter" if frames[0].position is not None else "pixel", unit, unit)
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps  # DICOM's LPS to NIfTI's RAS
    metadata: dict[str, Any] = {
        "source": "dicom",
        "affine": affine_ras.tolist(),
        "space": "RAS",
        "dicom": {
            "series_uid": series.uid,
            "study_uid": str(first.get("StudyInstanceUID", "")),
            "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "")),
            "sop_class_uid": str(first.get("SOPClassUID", "")),
            "modality": series.modality or str(first.get("Modality", "")),
            "series_number": series.number,
            "series_description": series.description,
            "label": series.label,
            "files": [str(f.file) for f in frames],
            "frames": [f.index for f in frames],
            "sop_instance_uids": [f.sop_uid for f in frames],
        },
    }
    window = _window(first)
    if window is not None:
        metadata["window"] = window
    said = notes + warnings
    if said:
        metadata["note"] = "; ".join(said)
    return ImageData(np.ascontiguousarray(data), axes, scale, units,
                     given, False, metadata)  # fmt: skip


def _window(ds: Any) -> tuple[float, float] | None:
    """The series' default contrast (window centre and width, in rescaled values)."""
    centre, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centre is None and "SharedFunctionalGroupsSequence" in ds:
        voi = ds.SharedFunctionalGroupsSequence[0].get("FrameVOILUTSequence")
        if voi:
            centre, width = voi[0].get("WindowCenter"), voi[0].get("WindowWidth")
    try:
        c = float(centre[0] if hasattr(centre, "__len__") and not isinstance(centre, str) else centre)
        w = float(width[0] if hasattr(width, "__len__") and not isinstance(width, str) else width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if w > 0 and np.isfinite(c) else None


def series_affine(img: ImageData) -> np.ndarray:
    """The ``(z, y, x)`` affine of a DICOM image in DICOM's LPS millimetres (for a SEG)."""
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(img.metadata["affine"], float)
