"""DICOM in: a file, a series, or a folder (or DICOMDIR) of series, read with their geometry.

- A folder's series are found by :mod:`~napari_unet.io.dicom_series` (headers only); each image
  series is one input, ``FOLDER#LABEL``; how its slices stack is :mod:`~napari_unet.io.dicom_geometry`.
- Slices are ordered by their position along the slice normal (``ImagePositionPatient`` on the
  cross product of the ``ImageOrientationPatient`` directions), never by file name or
  ``InstanceNumber``; the Z step comes from those positions, not ``SliceThickness``.
- Stored values become scanner values through ``RescaleSlope``/``RescaleIntercept`` (Hounsfield
  units for CT), ``int16`` where that is exact, ``uint16`` for unsigned values that fit, else
  ``float32``, filled slice by slice; the window centre and width are kept as the default contrast.
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

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.io._image import ImageData, ImageReadError, _safe_reason
from napari_unet.io.dicom_geometry import Frame, frames_of, stack_order
from napari_unet.io.dicom_series import (
    Series,
    find_series,
    holds_dicom,
    is_dicom_file,
    non_image_kind,
    quiet_read,
    read_header,
    series_label,
)
from napari_unet.io.formats import split_series_path

__all__ = ["Series", "find_series", "holds_dicom", "read_dicom", "series_affine"]

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
        return _read_series(match[0], scan.notes(folder), Path(match[0].named_in(folder)))
    if path.is_dir() or path.name.upper() == "DICOMDIR":
        folder = path if path.is_dir() else path.parent
        scan = find_series(folder)
        if not scan.series:
            left = " ".join(scan.notes(folder))
            raise ImageReadError(f"{folder}: holds no DICOM image series{'; ' + left if left else ''}.")
        if len(scan.series) > 1:
            names = ", ".join(s.named_in(folder) for s in scan.series)
            raise ImageReadError(f"{folder}: holds {len(scan.series)} series; name one: {names}.")
        return _read_series(scan.series[0], scan.notes(folder), Path(scan.series[0].named_in(folder)))
    ds = read_header(path)
    if ds is None:
        raise ImageReadError(f"{path}: not a DICOM file, or one too damaged to read; choose the scan's DICOM files.")
    modality = str(ds.get("Modality", "") or "")
    why = non_image_kind(ds)
    if why is not None:
        kind = getattr(ds.get("SOPClassUID"), "name", "") or why
        raise ImageReadError(
            f"{path}: a DICOM {kind} object, not an image to segment; open the image series it belongs to."
        )
    number = ds.get("SeriesNumber")
    label = series_label(int(number) if number not in (None, "") else None, str(ds.get("SeriesDescription", "") or ""),
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
            cache[f.file] = _pixels(quiet_read(f.file, force=not is_dicom_file(f.file)), where)
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
        ds = read_header(file)
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
