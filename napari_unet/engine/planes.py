"""Planes in: how an image's axes split into the planes (or volumes) a network sees, each
plane read in its own type, and its scaling as the model card says.

Pure numpy, no torch. Used by the tile engine (:mod:`napari_unet.engine.tiling`), the
out-of-core engine (:mod:`napari_unet.engine.scale`) and training (:mod:`napari_unet.training.data`),
so that all three read and scale a plane the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CT_WINDOWS",
    "MIN_SIDE",
    "NORMALISATIONS",
    "PlaneLayout",
    "apply_limits",
    "check_normalisation",
    "clips",
    "in_hounsfield_units",
    "infer_axes",
    "normalise_plane",
    "percentile_sample",
    "plane_layout",
    "plane_limits",
    "read_plane",
    "select_channels",
    "with_context",
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


def select_channels(image: Any, axes: str | None, channels: Any, in_channels: int = 1) -> tuple[Any, str]:
    """The channels a model takes, picked from a multi-channel image (``channels``: indices
    along its ``C`` or ``S`` axis, as the model card records them; None: as it is).

    >>> img = np.zeros((4, 8, 8)); img[2] = 1
    >>> sub, axes = select_channels(img, "CYX", [2, 0], 2)
    >>> sub.shape, axes, float(sub[0].max())
    ((2, 8, 8), 'CYX', 1.0)
    """
    axes = (axes or infer_axes(tuple(image.shape), in_channels)).upper()
    if channels is None:
        return image, axes
    channels = [int(c) for c in channels]
    where = next((axes.index(a) for a in "CS" if a in axes), None)
    if where is None:
        raise ValueError(
            f"the model takes channel(s) {channels} of a multi-channel image, but this image has a single channel"
        )
    n = int(image.shape[where])
    bad = [c for c in channels if not 0 <= c < n]
    if bad:
        raise ValueError(f"the model takes channel(s) {channels}, but the image has {n} channel(s) (0..{n - 1})")
    if channels == list(range(n)):
        return image, axes
    if hasattr(image, "compute"):
        return image[(slice(None),) * where + (channels,)], axes
    return np.take(np.asarray(image), channels, axis=where), axes


def with_context(image: Any, axes: str | None, context: int) -> tuple[Any, str]:
    """2.5D: every slice of a grayscale stack with its ``context`` neighbours on each side
    as channels, ``(Z, Y, X)`` -> ``(Z, 2 context + 1, Y, X)`` (axes ``ZCYX``); the first
    and last slices repeat themselves where a neighbour is missing, and a single plane is
    its own neighbour.

    >>> stack = np.arange(3)[:, None, None] * np.ones((3, 2, 2))
    >>> out, axes = with_context(stack, "ZYX", 1)
    >>> axes, out.shape, out[0, :, 0, 0].tolist(), out[2, :, 0, 0].tolist()
    ('ZCYX', (3, 3, 2, 2), [0.0, 0.0, 1.0], [1.0, 2.0, 2.0])
    """
    axes = (axes or infer_axes(tuple(image.shape), 1)).upper()
    if not context:
        return image, axes
    n = 2 * context + 1
    if "C" in axes and "Z" not in axes and image.shape[axes.index("C")] == n:
        return image, axes  # one slice given with its neighbours already as channels
    if "C" in axes or "S" in axes:
        raise ValueError("a 2.5D model (neighbouring slices as channels) takes a grayscale image or stack")
    if "Z" not in axes:
        return np.stack([np.asarray(image)] * n), "C" + axes
    z = axes.index("Z")
    data = np.asarray(image.compute() if hasattr(image, "compute") else image)
    depth = data.shape[z]
    index = np.clip(np.arange(depth)[:, None] + np.arange(-context, context + 1)[None], 0, depth - 1)
    return np.take(data, index, axis=z), axes[: z + 1] + "C" + axes[z + 1 :]


def read_plane(image: Any, layout: PlaneLayout, index: int, in_channels: int, *, raw: bool = False) -> np.ndarray:
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


#: CT windows in Hounsfield units, (level, width), as radiology viewers name them
CT_WINDOWS = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 160.0),
}


def in_hounsfield_units(data: Any) -> bool:
    """Signed 16-bit values with air near -1000 and bone above 200: a CT in Hounsfield units.

    >>> in_hounsfield_units(np.array([-1024, 0, 700], np.int16)), in_hounsfield_units(np.array([0, 700], np.int16))
    (True, False)
    """
    data = np.asarray(data)
    return data.dtype == np.int16 and data.size > 0 and bool(data.min() <= -900 and data.max() >= 200)


NORMALISATIONS = ("percentile", "zscore", "dataset", "range", "window", "none")


def check_normalisation(normalisation: dict) -> dict:
    """A normalisation dict checked and completed (a window preset gets its level and width).

    >>> check_normalisation({"kind": "window", "preset": "lung"})
    {'kind': 'window', 'preset': 'lung', 'level': -600.0, 'width': 1500.0}
    >>> check_normalisation({"kind": "window", "level": 40, "width": 0})
    Traceback (most recent call last):
    ...
    ValueError: a CT window needs a positive width in HU, got 0.0
    """
    norm = dict(normalisation or {"kind": "percentile"})
    kind = norm.get("kind", "percentile")
    if kind not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {kind!r}; use one of {', '.join(NORMALISATIONS)}")
    if kind == "percentile":
        low, high = float(norm.get("low", 1.0)), float(norm.get("high", 99.8))
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low} and {high}")
    elif kind == "window":
        if "preset" in norm:
            if norm["preset"] not in CT_WINDOWS:
                raise ValueError(f"unknown CT window {norm['preset']!r}; presets: {', '.join(CT_WINDOWS)}")
            level, width = CT_WINDOWS[norm["preset"]]
            norm.setdefault("level", level)
            norm.setdefault("width", width)
        if "level" not in norm or "width" not in norm:
            raise ValueError("a CT window needs a level and a width in HU, or a preset: " + ", ".join(CT_WINDOWS))
        norm["level"], norm["width"] = float(norm["level"]), float(norm["width"])
        if not norm["width"] > 0:
            raise ValueError(f"a CT window needs a positive width in HU, got {norm['width']}")
    elif kind == "range":
        lo, hi = float(norm.get("min", 0.0)), float(norm.get("max", 1.0))
        if not hi > lo:
            raise ValueError(f"a fixed range needs max > min, got min={lo}, max={hi}")
    elif kind == "dataset" and ("mean" in norm or "std" in norm):  # without both: computed when training
        mean, std = norm.get("mean"), norm.get("std")
        if not isinstance(mean, list) or not isinstance(std, list) or len(mean) != len(std) or not mean:
            raise ValueError("dataset normalisation needs 'mean' and 'std' lists, one value per channel")
        if any(not float(v) > 0 for v in std):
            raise ValueError(f"dataset standard deviations must be positive, got {std}")
    return norm


def clips(normalisation: dict) -> bool:
    """Whether scaled values are clipped to [0, 1]: always for a CT window, for a fixed
    range when its ``clip`` says so."""
    kind = normalisation.get("kind", "percentile")
    return kind == "window" or (kind == "range" and bool(normalisation.get("clip", False)))


def plane_limits(plane: np.ndarray, normalisation: dict) -> list[tuple[float, float]]:
    """Per-channel ``(low, high)`` for a ``(C, H, W)`` plane: the values that map to 0 and 1.

    ``percentile``: the plane's own percentiles; ``zscore``: its mean and mean + one
    standard deviation (so the result is ``(x - mean) / std``); ``dataset``: the same with
    the training set's mean and std stored in the card; ``range``: fixed values;
    ``window``: a CT window, ``level -+ width / 2`` in HU.
    """
    kind = normalisation.get("kind", "percentile")
    n = plane.shape[0]
    if kind == "none":
        return [(0.0, 1.0)] * n
    if kind == "range":
        return [(float(normalisation.get("min", 0.0)), float(normalisation.get("max", 1.0)))] * n
    if kind == "window":
        norm = check_normalisation(normalisation)
        return [(norm["level"] - norm["width"] / 2, norm["level"] + norm["width"] / 2)] * n
    if kind == "dataset":
        if "mean" not in normalisation:
            raise ValueError("the model's card has no dataset mean and std; they are computed when it is trained")
        mean, std = normalisation["mean"], normalisation["std"]
        if len(mean) != n:
            raise ValueError(f"the model's dataset statistics are for {len(mean)} channel(s), the image has {n}")
        return [(float(m), float(m) + float(s)) for m, s in zip(mean, std)]
    if kind not in ("percentile", "zscore"):
        raise ValueError(f"unknown normalisation {kind!r}; use one of {', '.join(NORMALISATIONS)}")
    sample = np.asarray(percentile_sample(plane), np.float32)
    limits = []
    for c in range(n):
        if kind == "zscore":
            values = sample[c].astype(np.float64)
            lo, spread = float(values.mean()), float(values.std())
            hi = lo + (spread if spread > 0 else 1.0)
        else:
            low, high = float(normalisation.get("low", 1.0)), float(normalisation.get("high", 99.8))
            lo, hi = (float(v) for v in np.percentile(sample[c], (low, high)))
            if hi <= lo:
                hi = lo + max(abs(lo) * 1e-6, 1.0)
        limits.append((lo, hi))
    return limits


def apply_limits(
    plane: np.ndarray, limits: list[tuple[float, float]], out: np.ndarray | None = None, *, clip: bool = False
) -> np.ndarray:
    """``(plane - low) / (high - low)`` per channel, as float32, without temporaries: into
    ``out`` (which may be ``plane`` itself, when it is a float32 array of our own);
    ``clip`` then limits the result to [0, 1] (a CT window)."""
    out = np.empty(plane.shape, np.float32) if out is None else out
    for c, (lo, hi) in enumerate(limits):
        np.subtract(plane[c], np.float32(lo), out=out[c], dtype=np.float32)
        np.divide(out[c], np.float32(hi - lo), out=out[c])
        if clip:
            np.clip(out[c], 0.0, 1.0, out=out[c])
    return out


def normalise_plane(plane: np.ndarray, normalisation: dict) -> np.ndarray:
    """Scale a ``(C, H, W)`` plane as the model card says (per channel percentiles by default)."""
    if normalisation.get("kind", "percentile") == "none":
        return plane.astype(np.float32, copy=False)
    limits, clip = plane_limits(plane, normalisation), clips(normalisation)
    if plane.dtype != np.float32:  # one float32 copy, scaled in place
        copy = plane.astype(np.float32)
        return apply_limits(copy, limits, out=copy, clip=clip)
    return apply_limits(plane, limits, clip=clip)
