"""Pictures for a report: an image with the outlines of its prediction (and of the truth).

Pure numpy + scikit-image; written as PNG, atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["PALETTE", "TRUTH_COLOUR", "display_plane", "overlay", "write_overlay"]

#: outline colour of each predicted class (1, 2, ...), then round again
PALETTE = ((255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 64, 255), (255, 160, 0), (0, 230, 230))
#: outline colour of the ground truth
TRUTH_COLOUR = (255, 230, 0)


def display_plane(plane: np.ndarray, normalisation: dict | None = None) -> np.ndarray:
    """A ``(C, H, W)`` plane as uint8 RGB ``(H, W, 3)``: scaled as the model saw it for a CT
    window, else by the plane's own 1-99.8 percentiles (each channel; gray gives gray)."""
    from napari_unet.engine.planes import apply_limits, clips, plane_limits

    plane = np.asarray(plane, np.float32)
    norm = normalisation if normalisation and normalisation.get("kind") == "window" else {"kind": "percentile"}
    scaled = apply_limits(plane, plane_limits(plane, norm), clip=clips(norm))
    scaled = np.clip(scaled, 0, 1)
    rgb = scaled[:3] if scaled.shape[0] >= 3 else np.repeat(scaled[:1], 3, axis=0)
    return (np.moveaxis(rgb, 0, -1) * 255).astype(np.uint8)


def overlay(rgb: np.ndarray, mask: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """``rgb`` with the outlines of each class of ``mask`` (or of each object, for instance
    labels) drawn in :data:`PALETTE`, and those of ``truth`` in :data:`TRUTH_COLOUR`."""
    from skimage.segmentation import find_boundaries

    out = rgb.copy()
    if truth is not None:
        out[find_boundaries(np.asarray(truth), mode="inner")] = TRUTH_COLOUR
    mask = np.asarray(mask)
    for k in np.unique(mask[mask > 0]) if mask.max() < len(PALETTE) * 4 else [1]:
        edge = find_boundaries(mask == k, mode="inner") if mask.max() < len(PALETTE) * 4 else find_boundaries(mask)
        out[edge & (mask > 0)] = PALETTE[(int(k) - 1) % len(PALETTE)]
    return out


def write_overlay(path: str | os.PathLike, picture: np.ndarray) -> Path:
    """Write an RGB uint8 picture as PNG, atomically."""
    import imageio.v3 as iio

    from napari_unet._atomic import atomic_write, check_output_folder

    path = Path(path)
    check_output_folder(path)
    atomic_write(path, lambda tmp: iio.imwrite(tmp, picture, extension=".png"))
    return path
