"""Where DICOM slices lie: each slice's (or frame's) position, orientation, spacing and rescale,
and the order and affine of a stack of them, with what cannot be one volume refused.

Slices are sorted by their position along the slice normal (the cross product of the two
``ImageOrientationPatient`` directions); the Z step is the median gap between positions. No
pixels are read here, and no patient data is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.io._image import ImageReadError

__all__ = ["Frame", "frames_of", "stack_order"]

#: orientation cosines that differ by more than this are another orientation
_ORIENTATION_TOL = 1e-3
#: gantry tilt above this (degrees) is warned about
_TILT_DEG = 0.5


@dataclass
class Frame:
    """One slice: where it lies, how its values scale, and how to get its pixels."""

    position: np.ndarray | None
    orientation: np.ndarray | None
    spacing: tuple[float, float] | None
    slope: float
    intercept: float
    shape: tuple[int, int]
    sop_uid: str
    file: Path
    index: int | None  # frame of a multi-frame file, else None


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        out = np.asarray([float(v) for v in value], float)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.all(np.isfinite(out)) else None


def frames_of(ds: Any, file: Path) -> list[Frame]:
    """The slices of a dataset: one for a classic image, one per frame for an enhanced one."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    shape = (int(ds.Rows), int(ds.Columns))
    sop = str(ds.get("SOPInstanceUID", ""))
    if n == 1 or "PerFrameFunctionalGroupsSequence" not in ds:
        spacing = _floats(ds.get("PixelSpacing", ds.get("ImagerPixelSpacing")), 2)
        frames = [Frame(_floats(ds.get("ImagePositionPatient"), 3), _floats(ds.get("ImageOrientationPatient"), 6),
                         None if spacing is None else (float(spacing[0]), float(spacing[1])),
                         float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0), shape, sop,
                         file, None if n == 1 else k) for k in range(n)]  # fmt: skip
        return frames
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]

    def group(item: Any, name: str) -> Any:
        for source in (item, shared):
            if source is not None and name in source and len(source[name].value):
                return source[name].value[0]
        return None

    frames = []
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position, orientation = group(item, "PlanePositionSequence"), group(item, "PlaneOrientationSequence")
        measures, values = group(item, "PixelMeasuresSequence"), group(item, "PixelValueTransformationSequence")
        spacing = _floats(measures.get("PixelSpacing") if measures is not None else None, 2)
        frames.append(Frame(
            _floats(position.get("ImagePositionPatient") if position is not None else None, 3),
            _floats(orientation.get("ImageOrientationPatient") if orientation is not None else None, 6),
            None if spacing is None else (float(spacing[0]), float(spacing[1])),
            float(values.get("RescaleSlope", 1) or 1) if values is not None else float(ds.get("RescaleSlope", 1) or 1),
            float(values.get("RescaleIntercept", 0) or 0) if values is not None else float(
                ds.get("RescaleIntercept", 0) or 0),
            shape, sop, file, k,
        ))  # fmt: skip
    return frames


def stack_order(frames: list[Frame], where: str) -> tuple[list[Frame], np.ndarray, list[str]]:
    """The slices sorted along their normal, the ``(z, y, x)`` affine to LPS mm, and warnings.

    Raises ImageReadError for what cannot be one volume."""
    sizes = sorted({f.shape for f in frames})
    if len(sizes) > 1:
        said = " and ".join(f"{r}x{c}" for r, c in sizes[:3])
        raise ImageReadError(
            f"{where}: its slices have {len(sizes)} sizes ({said}); a series must be one grid of slices of one size "
            "(export each size as its own series)."
        )
    spacing = frames[0].spacing or (1.0, 1.0)
    if len(frames) == 1:
        f = frames[0]
        affine = np.eye(4)
        if f.orientation is not None and f.position is not None:
            row, col = f.orientation[:3], f.orientation[3:]
            affine[:3, 1], affine[:3, 2] = col * spacing[0], row * spacing[1]
            affine[:3, 0], affine[:3, 3] = np.cross(row, col), f.position
        else:
            affine[1, 1], affine[2, 2] = spacing
        return frames, affine, []
    if len({f.file for f in frames}) == 1 and all(f.position is None for f in frames):
        affine = np.eye(4)  # a cine or secondary-capture file: its frames in stored order
        affine[1, 1], affine[2, 2] = spacing
        return frames, affine, []
    if any(f.orientation is None or f.position is None for f in frames):
        raise ImageReadError(
            f"{where}: {len(frames)} slices without their position or orientation in the patient, so their order is "
            "unknown; export the series again from the scanner or PACS."
        )
    orientations = np.stack([f.orientation for f in frames])
    distinct = [orientations[0]]
    for o in orientations[1:]:
        if not any(np.abs(o - d).max() <= _ORIENTATION_TOL for d in distinct):
            distinct.append(o)
    if len(distinct) > 1:
        raise ImageReadError(
            f"{where}: its {len(frames)} slices lie in {len(distinct)} orientations (a localizer or a radial series), "
            "not one stack of parallel slices; choose another series."
        )
    row, col = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row, col)
    positions = np.stack([f.position for f in frames])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    frames, positions, along = [frames[i] for i in order], positions[order], along[order]
    gaps = np.diff(along)
    step = float(np.median(gaps))
    same = int(np.sum(gaps < 1e-3 * max(step, 1e-3)))
    if same or step <= 0:
        raise ImageReadError(
            f"{where}: {same + 1} or more slices lie at the same position (several phases, echoes or acquisitions in "
            "one series); export each of them as its own series."
        )
    warnings = []
    big = int(np.argmax(gaps))
    if gaps[big] >= 1.9 * step:
        raise ImageReadError(
            f"{where}: slices are missing: {gaps[big]:.4g} mm between the slices at {along[big]:.4g} and "
            f"{along[big + 1]:.4g} mm where the others are {step:.4g} mm apart; export the whole series again."
        )
    if gaps.max() - gaps.min() > max(0.01, 0.01 * step):
        warnings.append(
            f"{where}: the slice spacing varies from {gaps.min():.4g} to {gaps.max():.4g} mm; it is read with the median "
            f"{step:.4g} mm, so lengths and volumes across slices are approximate"
        )
    through = (positions[-1] - positions[0]) / (len(frames) - 1)
    tilt = float(np.degrees(np.arccos(np.clip(abs(through @ normal) / np.linalg.norm(through), 0, 1))))
    if tilt > _TILT_DEG:
        warnings.append(
            f"{where}: the slices are sheared by a gantry tilt of {tilt:.1f} degrees; they are read as a straight "
            "stack (positions across slices follow the tilt)"
        )
    affine = np.eye(4)
    affine[:3, 0] = through  # z: from one slice to the next, tilt included
    affine[:3, 1] = col * spacing[0]  # y: down the rows
    affine[:3, 2] = row * spacing[1]  # x: along a row
    affine[:3, 3] = positions[0]
    return frames, affine, warnings
