"""Planes in: how an image's axes split into the planes (or volumes) a network sees, each
plane read in its own type, and its scaling as the model card says.

Pure numpy, no torch. Used by the tile engine (:mod:`napari_unet.tiling`), the
out-of-core engine (:mod:`napari_unet.scale`) and training (:mod:`napari_unet.train_data`),
so that all three read and scale a plane the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MIN_SIDE",
    "PlaneLayout",
    "apply_limits",
    "infer_axes",
    "normalise_plane",
    "percentile_sample",
    "plane_layout",
    "plane_limits",
]

MIN_SIDE = 4


@dataclass(frozen=True)
class PlaneLayout:
    """How an image of given axes splits into the planes (or volumes) the network sees."""

    axes: str
    spatial_shape: tuple[int, ...]  # the output's spatial shape (no C/S)
    plane_index: list[tuple]  # one index tuple per plane into the image
    channel_axis: str | None  # "C", "S" or None

    @property
    def n_planes(self) -> int:
        return len(self.plane_index)


def infer_axes(shape: tuple[int, ...], in_channels: int = 1) -> str:
    """Guess axes from a shape: ``YX``, ``ZYX``, ``YXS`` (RGB) or ``ZYXS``."""
    ndim = len(shape)
    if ndim == 2:
        return "YX"
    if ndim == 3:  # a last axis of 3 or 4 under a real plane is colour, whatever the model takes
        return "YXS" if shape[-1] in (3, 4) and (in_channels > 1 or min(shape[:2]) >= 16) else "ZYX"
    if ndim == 4 and shape[-1] in (3, 4):
        return "ZYXS"
    if ndim == 4:
        return "TZYX"
    raise ValueError(
        f"cannot tell the axes of a {ndim}D array shaped {shape}; pass axes='...' with letters from CTZYXS "
        "(e.g. 'TZYX'), or pick one time point or channel first"
    )


def plane_layout(
    shape: tuple[int, ...], axes: str | None, in_channels: int = 1, *, spatial_dims: int = 2
) -> PlaneLayout:
    """Check an image's shape against a model's input channels and list its planes
    (2D ``YX`` planes, or ``ZYX`` volumes with ``spatial_dims=3``)."""
    shape = tuple(int(n) for n in shape)
    axes = (axes or infer_axes(shape, in_channels)).upper()
    if len(axes) != len(shape) or len(set(axes)) != len(axes) or any(a not in "CTZYXS" for a in axes):
        raise ValueError(f"axes {axes!r} do not fit an image shaped {shape}; use one letter from CTZYXS per axis")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes {axes!r} must include Y and X")
    if "C" in axes and "S" in axes:
        raise ValueError("an image cannot have both fluorescence channels (C) and RGB samples (S)")
    channel_axis = "C" if "C" in axes else "S" if "S" in axes else None
    n_channels = shape[axes.index(channel_axis)] if channel_axis else 1
    if channel_axis == "S" and n_channels == 4 and in_channels == 3:
        n_channels = 3  # RGBA: alpha is dropped
    if n_channels != in_channels:
        kind = "RGB" if channel_axis == "S" else f"{n_channels} channel(s)"
        raise ValueError(
            f"the model takes {in_channels} input channel(s) but the image has {kind}; "
            + (
                "convert the image to grayscale, or choose a model trained on RGB images"
                if in_channels == 1
                else "choose a model that matches the image"
            )
        )
    h, w = shape[axes.index("Y")], shape[axes.index("X")]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ValueError(f"the image is {h}x{w} pixels; a U-Net needs at least {MIN_SIDE}x{MIN_SIDE}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if spatial_dims == 3 and "Z" not in axes:
        raise ValueError(f"a 3D network needs a Z axis; the image has axes {axes!r}")
    stack_axes = [a for a in axes if a in ("TZ" if spatial_dims == 2 else "T")]
    spatial = tuple(shape[axes.index(a)] for a in axes if a not in "CS")
    indices = []
    for flat in np.ndindex(*[shape[axes.index(a)] for a in stack_axes]) if stack_axes else [()]:
        pos = dict(zip(stack_axes, flat))
        indices.append(tuple(pos.get(a, slice(None)) for a in axes))
    return PlaneLayout(axes, spatial, indices, channel_axis)


def _read_plane(image: Any, layout: PlaneLayout, index: int, in_channels: int, *, raw: bool = False) -> np.ndarray:
    """Plane ``index`` as float32 ``(C, *spatial)`` (``raw``: in the image's own type, often
    a view of it, to be copied once by :func:`normalise_plane`); checks for NaN/inf."""
    idx = layout.plane_index[index]
    plane = image[idx]
    plane = np.asarray(plane.compute() if hasattr(plane, "compute") else plane)
    rest = [a for a, i in zip(layout.axes, idx) if isinstance(i, slice)]  # axes left: C/S, Y, X
    if layout.channel_axis:
        plane = np.moveaxis(plane, rest.index(layout.channel_axis), 0)[:in_channels]
        rest.remove(layout.channel_axis)
    else:
        plane = plane[None]
    if rest.index("Y") > rest.index("X"):
        plane = plane.swapaxes(-1, -2)
    if not raw:
        plane = plane.astype(np.float32, copy=False)
    if plane.dtype.kind == "f" and not np.isfinite(plane).all():
        bad = int((~np.isfinite(plane)).sum())
        where = f" in plane {index}" if layout.n_planes > 1 else ""
        raise ValueError(
            f"the image has {bad} NaN or infinite pixel(s){where}; replace them (e.g. with 0) before predicting"
        )
    return plane


def percentile_sample(plane: Any) -> Any:
    """The pixels percentiles are taken from: every k-th row and column, ~1 Mpx at most.

    A strided 2D grid (not a ravel) so that a dask plane yields the very same sample
    cheaply, and the out-of-core engine normalises exactly as the in-memory one.
    """
    h, w = plane.shape[-2:]
    step = max(1, math.ceil(math.sqrt(h * w / 1_000_000)))
    return plane[..., ::step, ::step]


def plane_limits(plane: np.ndarray, normalisation: dict) -> list[tuple[float, float]]:
    """Per-channel (low, high) intensities that map to 0 and 1 for a ``(C, H, W)`` plane."""
    kind = normalisation.get("kind", "percentile")
    if kind == "none":
        return [(0.0, 1.0)] * plane.shape[0]
    if kind == "range":
        return [(float(normalisation.get("min", 0.0)), float(normalisation.get("max", 1.0)))] * plane.shape[0]
    if kind != "percentile":
        raise ValueError(f"unknown normalisation {kind!r}; use 'percentile', 'range' or 'none'")
    low, high = float(normalisation.get("low", 1.0)), float(normalisation.get("high", 99.8))
    sample = np.asarray(percentile_sample(plane), np.float32)
    limits = []
    for c in range(plane.shape[0]):
        lo, hi = (float(v) for v in np.percentile(sample[c], (low, high)))
        if hi <= lo:
            hi = lo + max(abs(lo) * 1e-6, 1.0)
        limits.append((lo, hi))
    return limits


def apply_limits(plane: np.ndarray, limits: list[tuple[float, float]], out: np.ndarray | None = None) -> np.ndarray:
    """``(plane - low) / (high - low)`` per channel, as float32, without temporaries: into
    ``out`` (which may be ``plane`` itself, when it is a float32 array of our own)."""
    out = np.empty(plane.shape, np.float32) if out is None else out
    for c, (lo, hi) in enumerate(limits):
        np.subtract(plane[c], np.float32(lo), out=out[c], dtype=np.float32)
        np.divide(out[c], np.float32(hi - lo), out=out[c])
    return out


def normalise_plane(plane: np.ndarray, normalisation: dict) -> np.ndarray:
    """Scale a ``(C, H, W)`` plane as the model card says (per channel percentiles by default)."""
    if normalisation.get("kind", "percentile") == "none":
        return plane.astype(np.float32, copy=False)
    limits = plane_limits(plane, normalisation)
    if plane.dtype != np.float32:  # one float32 copy, scaled in place
        copy = plane.astype(np.float32)
        return apply_limits(copy, limits, out=copy)
    return apply_limits(plane, limits)
