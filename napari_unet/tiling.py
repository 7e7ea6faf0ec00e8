"""The tiling engine: planes -> overlapping tiles -> any predictor -> blended output.

Pure numpy, no torch. A stack is a sequence of 2D planes ``(C, H, W)``, read one at a time
(so a memory-mapped or dask stack is never loaded whole), cut into overlapping tiles;
tiles from several planes share a batch; outputs are blended with a Gaussian weight so
seams do not show; each finished plane is written to the output and forgotten.
:func:`tiled_predict_iter` is exact for pointwise predictors (tested with ``2 * x``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "PlaneLayout",
    "Progress",
    "apply_limits",
    "gaussian_weight",
    "normalise_plane",
    "percentile_sample",
    "plane_layout",
    "plane_limits",
    "run_to_end",
    "tile_starts",
    "tiled_predict_iter",
]

Predictor = Callable[[np.ndarray], np.ndarray]
MIN_SIDE = 4


@dataclass(frozen=True)
class Progress:
    """One step of a long job: ``done`` of ``total`` units, plus figures (e.g. loss)."""

    done: int
    total: int
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- geometry


def tile_starts(size: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with the given overlap.

    >>> tile_starts(10, 4, 0.5)
    [0, 2, 4, 6]
    >>> tile_starts(4, 4, 0.25)
    [0]
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if tile > size:
        raise ValueError(f"tile {tile} is larger than the (padded) size {size}")
    stride = max(1, round(tile * (1 - overlap)))
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def gaussian_weight(shape: tuple[int, int], sigma_scale: float = 0.125) -> np.ndarray:
    """A 2D Gaussian blending weight, highest in the centre, never zero at the border."""
    axes = []
    for n in shape:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        sigma = max(n * sigma_scale, 1e-3)
        axes.append(np.exp(-0.5 * (x / sigma) ** 2))
    w = np.outer(axes[0], axes[1])
    w /= w.max()
    return np.maximum(w, 1e-3).astype(np.float32)


def _round_up(n: int, k: int) -> int:
    return int(math.ceil(n / k) * k)


# --------------------------------------------------------------------------- input layout


@dataclass(frozen=True)
class PlaneLayout:
    """How an image of given axes splits into 2D planes for the network."""

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
    if ndim == 3:
        return "YXS" if shape[-1] in (3, 4) and in_channels > 1 else "ZYX"
    if ndim == 4 and shape[-1] in (3, 4):
        return "ZYXS"
    if ndim == 4:
        return "TZYX"
    raise ValueError(
        f"cannot tell the axes of a {ndim}D array shaped {shape}; pass axes='...' with letters from CTZYXS "
        "(e.g. 'TZYX'), or pick one time point or channel first"
    )


def plane_layout(shape: tuple[int, ...], axes: str | None, in_channels: int = 1) -> PlaneLayout:
    """Check an image's shape against a model's input channels and list its 2D planes."""
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
    stack_axes = [a for a in axes if a in "TZ"]
    spatial = tuple(shape[axes.index(a)] for a in axes if a not in "CS")
    indices = []
    for flat in np.ndindex(*[shape[axes.index(a)] for a in stack_axes]) if stack_axes else [()]:
        pos = dict(zip(stack_axes, flat))
        indices.append(tuple(pos.get(a, slice(None)) for a in axes))
    return PlaneLayout(axes, spatial, indices, channel_axis)


def _read_plane(image: Any, layout: PlaneLayout, index: int, in_channels: int) -> np.ndarray:
    """Plane ``index`` as float32 ``(C, H, W)``; checks for NaN/inf."""
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


def apply_limits(plane: np.ndarray, limits: list[tuple[float, float]]) -> np.ndarray:
    out = np.empty(plane.shape, np.float32)
    for c, (lo, hi) in enumerate(limits):
        out[c] = (plane[c] - np.float32(lo)) / np.float32(hi - lo)
    return out


def normalise_plane(plane: np.ndarray, normalisation: dict) -> np.ndarray:
    """Scale a ``(C, H, W)`` plane as the model card says (per channel percentiles by default)."""
    if normalisation.get("kind", "percentile") == "none":
        return plane.astype(np.float32, copy=False)
    return apply_limits(plane, plane_limits(plane, normalisation))


# --------------------------------------------------------------------------- the tiling engine


def tiled_predict_iter(
    image: Any,
    predictor: Predictor,
    *,
    out_channels: int,
    axes: str | None = None,
    in_channels: int = 1,
    tile: int = 256,
    overlap: float = 0.25,
    batch_size: int = 4,
    size_divisor: int = 1,
    normalisation: dict | None = None,
    out: Any = None,
    sigma_scale: float = 0.125,
) -> Generator[Progress, None, Any]:
    """Predict every plane of ``image`` tile by tile; yields :class:`Progress` per batch.

    Parameters
    ----------
    image : array-like
        numpy, memmap or dask array; planes are read one at a time.
    predictor : callable
        ``(B, C, h, w) float32 -> (B, out_channels, h, w)``.
    tile : int
        Tile side; shrunk (to a multiple of ``size_divisor``) for images smaller than it.
    overlap : float
        Fraction of a tile shared with its neighbour, in [0, 1).
    size_divisor : int
        Tiles and padded planes are made multiples of this (2**depth for a U-Net).
    normalisation : dict, optional
        Passed to :func:`normalise_plane`; ``None`` feeds raw float32 values.
    out : array-like, optional
        Where to write ``(out_channels, *spatial)`` float32 results (memmap, zarr...).

    Returns
    -------
    The output array (via ``StopIteration.value``; :func:`predict` returns it directly).
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if tile < 1 or batch_size < 1:
        raise ValueError(f"tile and batch_size must be positive, got tile={tile}, batch_size={batch_size}")
    layout = plane_layout(tuple(image.shape), axes, in_channels)
    h, w = layout.spatial_shape[-2:]
    th = min(_round_up(tile, size_divisor), _round_up(h, size_divisor))
    tw = min(_round_up(tile, size_divisor), _round_up(w, size_divisor))
    ph, pw = max(h, th), max(w, tw)
    ys, xs = tile_starts(ph, th, overlap), tile_starts(pw, tw, overlap)
    tiles_per_plane = len(ys) * len(xs)
    total = tiles_per_plane * layout.n_planes
    weight = gaussian_weight((th, tw), sigma_scale)
    expected = (out_channels, *layout.spatial_shape)
    if out is None:
        out = np.empty(expected, np.float32)
    elif tuple(out.shape) != expected:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {expected}")
    out_planes = out.reshape(out_channels, layout.n_planes, h, w) if isinstance(out, np.ndarray) else None

    def write(index: int, result: np.ndarray) -> None:
        if out_planes is not None:
            out_planes[:, index] = result
        else:
            stack = np.unravel_index(index, layout.spatial_shape[:-2]) if layout.spatial_shape[:-2] else ()
            out[(slice(None), *stack)] = result

    def tiles() -> Iterator[tuple[int, int, int, np.ndarray]]:
        for p in range(layout.n_planes):
            plane = _read_plane(image, layout, p, in_channels)
            if normalisation is not None:
                plane = normalise_plane(plane, normalisation)
            if (ph, pw) != (h, w):
                plane = np.pad(plane, ((0, 0), (0, ph - h), (0, pw - w)), mode="reflect" if min(h, w) > 1 else "edge")
            for y in ys:
                for x in xs:
                    yield p, y, x, plane[:, y : y + th, x : x + tw]

    acc: dict[int, list] = {}  # plane -> [sum, weight sum, tiles left]
    done = finished = 0
    batch: list[tuple[int, int, int, np.ndarray]] = []
    source = tiles()
    while True:
        item = next(source, None)
        if item is not None:
            batch.append(item)
            if len(batch) < batch_size:
                continue
        if not batch:
            break
        result = np.asarray(predictor(np.stack([b[3] for b in batch])), dtype=np.float32)
        if result.shape != (len(batch), out_channels, th, tw):
            raise ValueError(f"predictor returned shape {result.shape}, expected {(len(batch), out_channels, th, tw)}")
        for (p, y, x, _), r in zip(batch, result):
            if p not in acc:
                acc[p] = [np.zeros((out_channels, ph, pw), np.float32), np.zeros((ph, pw), np.float32), tiles_per_plane]
            total_sum, wsum, left = acc[p]
            total_sum[:, y : y + th, x : x + tw] += r * weight
            wsum[y : y + th, x : x + tw] += weight
            acc[p][2] = left - 1
            if left == 1:
                write(p, (total_sum[:, :h, :w] / wsum[:h, :w]).astype(np.float32))
                del acc[p]
                finished += 1
        done += len(batch)
        batch = []
        yield Progress(done, total, {"planes_done": finished, "planes": layout.n_planes})
        if item is None:
            break
    return out


def run_to_end(gen: Generator) -> Any:
    """Exhaust a progress generator and return its result (``StopIteration.value``)."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
