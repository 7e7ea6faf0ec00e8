"""The tile engine: planes -> overlapping tiles -> any predictor -> blended output.

Pure numpy, no torch. One :class:`Grid` (tile shape, padding, tile starts, Gaussian
blending weight), written over N spatial dimensions, serves both engines: the in-memory
one here and the out-of-core one in :mod:`napari_unet.scale`, which runs the same tiles of
the same grid block by block. A stack is a sequence of planes ``(C, *spatial)``, read one
at a time (so a memory-mapped or dask stack is never loaded whole), cut into overlapping
tiles; tiles from several planes share a batch; each finished plane is written to the
output and forgotten. :func:`tiled_predict_iter` is exact for pointwise predictors
(tested with ``2 * x`` on odd 2D and 3D shapes).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_unet.jobs import Progress

__all__ = [
    "Grid",
    "PlaneLayout",
    "apply_limits",
    "gaussian_weight",
    "normalise_plane",
    "percentile_sample",
    "plane_layout",
    "plane_limits",
    "tile_starts",
    "tiled_predict_iter",
]

Predictor = Callable[[np.ndarray], np.ndarray]
MIN_SIDE = 4


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


# --------------------------------------------------------------------------- the grid


def _round_up(n: int, k: int) -> int:
    return int(math.ceil(n / k) * k)


def gaussian_weight(shape: tuple[int, ...], sigma_scale: float = 0.125) -> np.ndarray:
    """An N-D Gaussian blending weight, highest in the centre, never zero at the border."""
    axes = []
    for n in shape:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        sigma = max(n * sigma_scale, 1e-3)
        axes.append(np.exp(-0.5 * (x / sigma) ** 2))
    w = functools.reduce(np.multiply.outer, axes)
    w /= w.max()
    return np.maximum(w, 1e-3).astype(np.float32)


@dataclass(frozen=True)
class Grid:
    """The tiles covering one plane (or volume) of any number of spatial dimensions.

    Both engines use it: the in-memory one runs every tile of a plane, the out-of-core
    one (:mod:`napari_unet.scale`) the tiles that touch its block. Tiles are multiples of
    the network's size divisor; a plane smaller than a tile is padded up to it.

    >>> g = Grid.for_shape((10, 7), tile=4, overlap=0.5, divisor=2)
    >>> g.tile, g.padded, g.starts
    ((4, 4), (10, 7), ((0, 2, 4, 6), (0, 2, 3)))
    >>> len(g.tiles())
    12
    """

    shape: tuple[int, ...]
    tile: tuple[int, ...]
    padded: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]
    sigma_scale: float = 0.125

    @classmethod
    def for_shape(
        cls, shape: tuple[int, ...], *, tile: int | tuple[int, ...], overlap: float, divisor: int = 1
    ) -> Grid:
        shape = tuple(int(n) for n in shape)
        tiles = (tile,) * len(shape) if isinstance(tile, int | np.integer) else tuple(tile)
        if len(tiles) != len(shape):
            raise ValueError(f"tile {tile} does not fit a {len(shape)}D plane")
        if min(tiles) < 1:
            raise ValueError(f"tile must be positive, got {tile}")
        if divisor < 1:
            raise ValueError(f"the size divisor must be positive, got {divisor}")
        t = tuple(min(_round_up(int(k), divisor), _round_up(n, divisor)) for k, n in zip(tiles, shape))
        padded = tuple(max(n, k) for n, k in zip(shape, t))
        starts = tuple(tuple(tile_starts(p, k, overlap)) for p, k in zip(padded, t))
        return cls(shape, t, padded, starts)

    def tiles(self) -> list[tuple[int, ...]]:
        """Start of every tile, in C order (the order both engines blend them in)."""
        return list(itertools.product(*self.starts))

    def tiles_touching(self, lo: tuple[int, ...], hi: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Start of every tile that overlaps the box ``[lo, hi)``, in the same C order."""
        near = [tuple(s for s in st if s < b and s + k > a) for st, k, a, b in zip(self.starts, self.tile, lo, hi)]
        return list(itertools.product(*near))

    @functools.cached_property
    def weight(self) -> np.ndarray:
        return gaussian_weight(self.tile, self.sigma_scale)

    @functools.cached_property
    def weight_sum(self) -> np.ndarray:
        """The blending weights summed over every tile, ``padded``-shaped: the same for every
        plane, so it is made once (added in the tiles' C order, as :meth:`blend` adds them)."""
        total = np.zeros(self.padded, np.float32)
        for start in self.tiles():
            total[tuple(slice(s, s + k) for s, k in zip(start, self.tile))] += self.weight
        return total

    @property
    def computed_pixels(self) -> int:
        """Pixels the network computes for one plane: tiles x tile size (overlap included)."""
        return int(np.prod([len(s) for s in self.starts])) * int(np.prod(self.tile))

    def pad(self, plane: np.ndarray) -> np.ndarray:
        """Pad a ``(C, *shape)`` plane to ``(C, *padded)`` (reflected; edge for 1-px sides)."""
        if self.padded == self.shape:
            return plane
        widths = [(0, 0)] + [(0, p - n) for p, n in zip(self.padded, self.shape)]
        return np.pad(plane, widths, mode="reflect" if min(self.shape) > 1 else "edge")

    def blend(
        self, acc: np.ndarray, wsum: np.ndarray | None, start: tuple[int, ...], result: np.ndarray, lo: tuple[int, ...]
    ) -> None:
        """Add the part of one tile's ``result`` ``(K, *tile)`` that falls inside the box
        ``acc`` covers (``(K, *box)``, starting at ``lo``), weighted; ``wsum``, if given, gets
        the weights (or use :attr:`weight_sum`)."""
        hi = tuple(a + n for a, n in zip(lo, acc.shape[1:]))
        src, dst = [], []
        for s, k, a, b in zip(start, self.tile, lo, hi):
            s0, s1 = max(s, a), min(s + k, b)
            src.append(slice(s0 - s, s1 - s))
            dst.append(slice(s0 - a, s1 - a))
        src_t, dst_t = tuple(src), tuple(dst)
        w = self.weight[src_t]
        acc[(slice(None), *dst_t)] += result[(slice(None), *src_t)] * w
        if wsum is not None:
            wsum[dst_t] += w


@dataclass(frozen=True)
class Tiling:
    """A tile, overlap and batch chosen for one plane shape, and what they cost."""

    tile: int
    overlap: float
    batch: int
    computed: float  # pixels computed over pixels of the plane (1.0: no overlap waste)


def choose_tiling(
    plane_shape: tuple[int, ...],
    *,
    min_tile: int,
    overlap_px: int,
    divisor: int,
    batch: int,
    bytes_per_pixel: float,
    budget_bytes: float,
    max_tile: int = 2048,
) -> Tiling:
    """The tile (and batch) that computes the fewest pixels for a plane, within a memory budget.

    Every tile shares ``overlap_px`` pixels with its neighbour (the context the model needs
    for seamless masks), so a larger tile wastes a smaller share of its pixels; a tile as
    large as the plane wastes none. The batch shrinks (down to 1) for large tiles so that
    ``batch x tile pixels x bytes_per_pixel`` stays within ``budget_bytes``; among equal
    costs the smaller tile wins.

    >>> t = choose_tiling((1024, 1024), min_tile=256, overlap_px=64, divisor=16, batch=4,
    ...                   bytes_per_pixel=400, budget_bytes=2**30)
    >>> t.tile, t.batch, t.computed
    (1024, 1, 1.0)
    """
    step = max(divisor, 64)
    plane_px = float(np.prod(plane_shape))
    best: Tiling | None = None
    for tile in range(_round_up(min_tile, divisor), max(max_tile, min_tile) + 1, step):
        fits = int(budget_bytes // (tile ** len(plane_shape) * bytes_per_pixel))
        if fits < 1 and best is not None:
            break
        actual = max(Grid.for_shape(plane_shape, tile=tile, overlap=0.0, divisor=divisor).tile)  # shrunk to the plane
        overlap = min(0.5, overlap_px / actual)
        grid = Grid.for_shape(plane_shape, tile=actual, overlap=overlap, divisor=divisor)
        n_tiles = int(np.prod([len(s) for s in grid.starts]))
        cost = grid.computed_pixels / plane_px
        candidate = Tiling(int(max(grid.tile)), overlap, max(1, min(batch, fits, n_tiles)), round(cost, 4))
        if best is None or cost < best.computed - 1e-9:
            best = candidate
        if max(grid.tile) >= max(_round_up(n, divisor) for n in plane_shape):
            break  # one tile covers the plane: larger ones are the same
    assert best is not None
    return best


# --------------------------------------------------------------------------- input layout


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


def normalise_plane(plane: np.ndarray, normalisation: dict, *, own: bool = False) -> np.ndarray:
    """Scale a ``(C, H, W)`` plane as the model card says (per channel percentiles by default).

    ``own``: the plane is a float32 array nobody else holds, so it is scaled in place.
    """
    if normalisation.get("kind", "percentile") == "none":
        return plane.astype(np.float32, copy=False)
    limits = plane_limits(plane, normalisation)
    if own and plane.dtype == np.float32:
        return apply_limits(plane, limits, out=plane)
    if plane.dtype != np.float32:  # one float32 copy, scaled in place
        copy = plane.astype(np.float32)
        return apply_limits(copy, limits, out=copy)
    return apply_limits(plane, limits)


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
    spatial_dims: int = 2,
) -> Generator[Progress, None, Any]:
    """Predict every plane of ``image`` tile by tile; yields :class:`Progress` per batch.

    Parameters
    ----------
    image : array-like
        numpy, memmap or dask array; planes are read one at a time.
    predictor : callable
        ``(B, C, *tile) float32 -> (B, out_channels, *tile)``.
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
    spatial_dims : int
        Dimensions the network sees at once: 2 (planes ``YX``; ``Z`` and ``T`` are stacks
        of planes) or 3 (volumes ``ZYX``; only ``T`` is a stack).

    Returns
    -------
    The output array (via ``StopIteration.value``; :func:`napari_unet.predict` returns it directly).
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if tile < 1 or batch_size < 1:
        raise ValueError(f"tile and batch_size must be positive, got tile={tile}, batch_size={batch_size}")
    layout = plane_layout(tuple(image.shape), axes, in_channels, spatial_dims=spatial_dims)
    plane_shape = layout.spatial_shape[-spatial_dims:]
    grid = Grid.for_shape(plane_shape, tile=tile, overlap=overlap, divisor=size_divisor)
    grid = dataclasses.replace(grid, sigma_scale=sigma_scale)
    starts = grid.tiles()
    tiles_per_plane = len(starts)
    total = tiles_per_plane * layout.n_planes
    expected = (out_channels, *layout.spatial_shape)
    ours = out is None  # (a caller's out keeps unfinished planes untouched when the run is stopped)
    if out is None:
        out = np.empty(expected, np.float32)
    elif tuple(out.shape) != expected:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {expected}")
    stack_shape = layout.spatial_shape[:-spatial_dims]
    # a contiguous numpy output is summed into and divided in place, plane by plane: no
    # plane-sized buffer of our own when no padding is needed
    direct = ours and grid.padded == tuple(plane_shape)
    out_planes = out.reshape(out_channels, layout.n_planes, *plane_shape) if isinstance(out, np.ndarray) else None
    crop = (slice(None), *(slice(0, n) for n in plane_shape))
    wsum = grid.weight_sum[crop[1:]]

    def finish(index: int, total_sum: np.ndarray) -> None:
        if direct:
            np.divide(total_sum, wsum, out=total_sum)  # total_sum is the output's own plane
        elif out_planes is not None:
            np.divide(total_sum[crop], wsum, out=out_planes[:, index])
        else:
            stack = np.unravel_index(index, stack_shape) if stack_shape else ()
            out[(slice(None), *stack)] = np.divide(total_sum[crop], wsum, dtype=np.float32)

    scale = normalisation is not None and normalisation.get("kind", "percentile") != "none"

    def tiles() -> Iterator[tuple[int, tuple[int, ...], np.ndarray, Any]]:
        """Tiles as views of the plane in its own type; each is scaled to float32 only as
        its batch is assembled, so no plane-sized float32 copy is ever made."""
        for p in range(layout.n_planes):
            plane = _read_plane(image, layout, p, in_channels, raw=True)
            limits = plane_limits(plane, normalisation) if scale else None
            plane = grid.pad(plane)  # (reflection commutes with the pointwise scaling)
            for start in starts:
                yield p, start, plane[(slice(None), *(slice(s, s + k) for s, k in zip(start, grid.tile)))], limits

    def assemble(items: list) -> np.ndarray:
        x = np.empty((len(items), items[0][2].shape[0], *grid.tile), np.float32)
        for i, (_, _, tile_view, limits) in enumerate(items):
            if limits is None:
                x[i] = tile_view
            else:
                apply_limits(tile_view, limits, out=x[i])
        return x

    origin = (0,) * spatial_dims
    acc: dict[int, list] = {}  # plane -> [sum, tiles left]
    done = finished = 0
    batch: list[tuple[int, tuple[int, ...], np.ndarray, Any]] = []
    source = tiles()
    while True:
        item = next(source, None)
        if item is not None:
            batch.append(item)
            if len(batch) < batch_size:
                continue
        if not batch:
            break
        result = np.asarray(predictor(assemble(batch)), dtype=np.float32)
        if result.shape != (len(batch), out_channels, *grid.tile):
            raise ValueError(
                f"predictor returned shape {result.shape}, expected {(len(batch), out_channels, *grid.tile)}"
            )
        for (p, start, _, _), r in zip(batch, result):
            if p not in acc:
                if direct:
                    total_sum = out_planes[:, p]
                    total_sum.fill(0)
                else:
                    total_sum = np.zeros((out_channels, *grid.padded), np.float32)
                acc[p] = [total_sum, tiles_per_plane]
            total_sum, left = acc[p]
            grid.blend(total_sum, None, start, r, origin)
            acc[p][1] = left - 1
            if left == 1:
                finish(p, total_sum)
                del acc[p]
                finished += 1
        done += len(batch)
        batch = []
        yield Progress(done, total, {"planes_done": finished, "planes": layout.n_planes})
        if item is None:
            break
    return out
