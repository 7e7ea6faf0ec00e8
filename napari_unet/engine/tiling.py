"""The tile engine: planes -> overlapping tiles -> any predictor -> blended output.

Pure numpy, no torch. One :class:`Grid` (tile shape, padding, tile starts, Gaussian
blending weight), written over N spatial dimensions, serves both engines: the in-memory
one here and the out-of-core one in :mod:`napari_unet.engine.scale`, which runs the same tiles of
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

from napari_unet.engine.planes import apply_limits, clips, plane_layout, plane_limits, read_plane
from napari_unet.jobs import Progress

__all__ = [
    "Grid",
    "gaussian_weight",
    "tile_starts",
    "tiled_predict_iter",
]

Predictor = Callable[[np.ndarray], np.ndarray]


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

# a plane up to this many pixels keeps its weight sum (16 MiB) for the planes after it
_CACHED_WEIGHT_SUM_PX = 1 << 22


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
    one (:mod:`napari_unet.engine.scale`) the tiles that touch its block. Tiles are multiples of
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
        return self.weight_sum_box((0,) * len(self.padded), self.padded)

    def weight_sum_box(self, lo: tuple[int, ...], hi: tuple[int, ...]) -> np.ndarray:
        """:attr:`weight_sum` over the box ``[lo, hi)`` only, bit for bit (each pixel adds the
        same tiles in the same order), without a plane-sized array."""
        total = np.zeros([b - a for a, b in zip(lo, hi)], np.float32)
        for start in self.tiles_touching(lo, hi):
            src, dst = self._overlap(start, lo, hi)
            total[dst] += self.weight[src]
        return total

    def divide_by_weight_sum(self, total_sum: np.ndarray, out: np.ndarray, rows: int = 256) -> None:
        """``out = total_sum / weight_sum`` for a plane's ``(K, *shape)`` sums; ``out`` may be
        ``total_sum``. A large plane is divided a strip of ``rows`` at a time, with that
        strip's weight sum made on the spot: no plane-sized weight array is kept."""
        shape = self.shape
        if int(np.prod(shape)) <= _CACHED_WEIGHT_SUM_PX:
            np.divide(total_sum[(slice(None), *(slice(0, n) for n in shape))],
                      self.weight_sum[tuple(slice(0, n) for n in shape)], out=out)  # fmt: skip
            return
        rest = tuple(slice(0, n) for n in shape[1:])
        for r0 in range(0, shape[0], rows):
            r1 = min(r0 + rows, shape[0])
            ws = self.weight_sum_box((r0, *(0,) * (len(shape) - 1)), (r1, *shape[1:]))
            np.divide(total_sum[(slice(None), slice(r0, r1), *rest)], ws, out=out[:, r0:r1])

    def _overlap(self, start: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> tuple[tuple, tuple]:
        """Slices of the tile at ``start`` (into the tile) and of the box ``[lo, hi)`` (into
        the box) where the two overlap."""
        src, dst = [], []
        for s, k, a, b in zip(start, self.tile, lo, hi):
            s0, s1 = max(s, a), min(s + k, b)
            src.append(slice(s0 - s, s1 - s))
            dst.append(slice(s0 - a, s1 - a))
        return tuple(src), tuple(dst)

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

    def blend(self, acc: np.ndarray, start: tuple[int, ...], result: np.ndarray, lo: tuple[int, ...]) -> None:
        """Add the part of one tile's ``result`` ``(K, *tile)`` that falls inside the box
        ``acc`` covers (``(K, *box)``, starting at ``lo``), weighted; divide by
        :attr:`weight_sum` once every tile is in."""
        hi = tuple(a + n for a, n in zip(lo, acc.shape[1:]))
        src_t, dst_t = self._overlap(start, lo, hi)
        w = self.weight[src_t]
        acc[(slice(None), *dst_t)] += result[(slice(None), *src_t)] * w


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

    def finish(index: int, total_sum: np.ndarray) -> None:
        if direct:
            grid.divide_by_weight_sum(total_sum, out=total_sum)  # total_sum is the output's own plane
        elif out_planes is not None:
            grid.divide_by_weight_sum(total_sum, out=out_planes[:, index])
        else:
            grid.divide_by_weight_sum(total_sum, out=total_sum[crop])
            stack = np.unravel_index(index, stack_shape) if stack_shape else ()
            out[(slice(None), *stack)] = total_sum[crop]

    scale = normalisation is not None and normalisation.get("kind", "percentile") != "none"
    clip = scale and clips(normalisation)

    def tiles() -> Iterator[tuple[int, tuple[int, ...], np.ndarray, Any]]:
        """Tiles as views of the plane in its own type; each is scaled to float32 only as
        its batch is assembled, so no plane-sized float32 copy is ever made."""
        for p in range(layout.n_planes):
            plane = read_plane(image, layout, p, in_channels, raw=True)
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
                apply_limits(tile_view, limits, out=x[i], clip=clip)
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
            grid.blend(total_sum, start, r, origin)
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
