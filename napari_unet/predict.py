"""Whole-stack prediction: normalise, tile, batch across slices, blend, on CPU or GPU.

The engine works on 2D planes ``(C, H, W)``: a stack is a sequence of planes, read one at
a time (so a memory-mapped or dask stack is never loaded whole), cut into overlapping
tiles, and tiles from several planes share a batch. Tile outputs are blended with a
Gaussian weight so seams do not show, and each finished plane is written to the output
(an array in memory, or a memmap/zarr array on disk) and forgotten.

:func:`tiled_predict_iter` takes any ``predictor`` callable on ``(B, C, h, w)`` float32
arrays and is exact for pointwise predictors. :func:`predict_iter` wraps a torch model
in such a predictor; :func:`predict` is the synchronous call that scripts and tests use.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import types
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "Progress",
    "gaussian_weight",
    "normalise_plane",
    "pick_device",
    "plane_layout",
    "predict",
    "predict_iter",
    "probabilities_to_mask",
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


# --------------------------------------------------------------------------- torch side


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. An explicit device that is absent is an error."""
    import torch

    name = str(device).lower()
    cuda, mps = (
        torch.cuda.is_available(),
        bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    )
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name.startswith("cuda") and not cuda:
        raise ValueError(f"device {device!r} was requested but no CUDA GPU is available here; use --device auto or cpu")
    if name == "mps" and not mps:
        raise ValueError("device 'mps' was requested but Apple's MPS is not available here; use --device auto or cpu")
    if not (name == "cpu" or name.startswith("cuda") or name == "mps"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return torch.device(name)


def available_devices() -> list[str]:
    """Devices present on this machine, for a GUI choice: ``auto`` and ``cpu`` always."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def cpu_has_fast_bf16() -> bool:
    """True where the CPU runs bf16 convolutions natively (AMX or AVX512-BF16)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of unmapping it after every tensor.

    By default glibc gives each buffer over 32 MiB its own mmap and returns it on free, so
    every forward pass page-faults its activations in again. Raising the mmap and trim
    thresholds made whole-image prediction 1.3x faster in fp32 on this project's CPU
    machines (benchmarks/bench_predict.py). Process-wide, once; set
    ``NAPARI_UNET_NO_MALLOPT=1`` to leave the allocator alone.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or os.environ.get("NAPARI_UNET_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return _ALLOCATOR_TUNED
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
            libc.mallopt(m_trim_threshold, 1 << 30)
        )
    except (OSError, AttributeError):
        _ALLOCATOR_TUNED = False
    return _ALLOCATOR_TUNED


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA with bf16 support (else fp16); bf16 on a CPU with native bf16
    (AMX or AVX512-BF16); fp32 elsewhere.

    bf16 is the CPU default only because its masks matched fp32's on real images: mask Dice
    0.9998 on 20 slices and a 4096^2 image cut from the sample nuclei, at 2.2-2.4x MONAI's
    fp32 throughput (benchmarks/bench_predict.py). ``fp32`` matches MONAI within 1e-4.
    """
    import torch

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def prepare_model(
    model: torch.nn.Module, device: torch.device, precision: str, compile: bool = False
) -> torch.nn.Module:
    """An inference copy of ``model``: BatchNorm folded, on ``device``, channels_last; cached.

    With ``compile``, the copy is also compiled by ``torch.compile`` (inductor, frozen
    weights): on this project's 2-core CPU that ran 1.18x faster than the fused eager net
    after a ~30 s first call, so it pays only for long batch jobs.
    """
    import copy

    import torch

    from napari_unet.model import fuse_batchnorm

    cache = model.__dict__.setdefault("_napari_unet_prepared", {})
    key = (str(device), precision, compile)
    if key not in cache:
        cache.clear()
        net = fuse_batchnorm(copy.deepcopy(model).eval())
        net = net.to(device)
        if device.type in ("cpu", "cuda"):
            net = net.to(memory_format=torch.channels_last)
        if compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            net = torch.compile(net, dynamic=False)
        cache[key] = net
    return cache[key]


def torch_predictor(
    model: torch.nn.Module,
    device: torch.device,
    precision: str,
    activation: str,
    compile: bool = False,
    batch_size: int = 0,
) -> Predictor:
    """A numpy-in, numpy-out predictor around a torch model (autocast, channels_last, pinned copies).

    A compiled network always gets full batches (the last one is padded), so it compiles once.
    """
    import torch

    net = prepare_model(model, device, precision, compile)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    pin = device.type == "cuda"

    def run(batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if compile and n < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)])
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if pin:
            x = x.pin_memory()
        x = x.to(device, non_blocking=pin).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            y = net(x)
        y = y.float()
        y = torch.softmax(y, dim=1) if activation == "softmax" else torch.sigmoid(y)
        return y[:n].cpu().numpy()

    return run


def predict_iter(
    model: torch.nn.Module,
    image: Any,
    *,
    axes: str | None = None,
    device: str = "auto",
    tile: int | None = None,
    overlap: float | None = None,
    batch_size: int | None = None,
    precision: str = "auto",
    out: Any = None,
    compile: bool = False,
) -> Generator[Progress, None, Any]:
    """Generator form of :func:`predict`: yields :class:`Progress` per batch of tiles.

    Closing the generator stops between batches; planes already finished are in ``out``.
    On CUDA, an out-of-memory error retries with half the batch size, then half the tile.
    """
    import torch

    card = model.card
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    tile = int(tile or card.tile)
    overlap = float(card.overlap if overlap is None else overlap)
    if batch_size is None:
        batch_size = 8 if dev.type == "cuda" else 4
    if dev.type == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        tune_cpu_allocator()
    plane_layout(tuple(image.shape), axes, card.in_channels)  # shape errors first, before reading pixels
    _check_not_constant(image)
    while True:
        try:
            return (
                yield from tiled_predict_iter(
                    image,
                    torch_predictor(model, dev, prec, card.activation, compile, batch_size),
                    out_channels=card.out_channels,
                    axes=axes,
                    in_channels=card.in_channels,
                    tile=tile,
                    overlap=overlap,
                    batch_size=batch_size,
                    size_divisor=getattr(model, "size_divisor", 16),
                    normalisation=card.normalisation,
                    out=out,
                )
            )
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch_size > 1:
                batch_size //= 2
            elif tile > 64:
                tile //= 2
            else:
                raise
            warnings.warn(f"GPU out of memory; retrying with batch {batch_size}, tile {tile}", stacklevel=2)


def _check_not_constant(image: Any) -> None:
    if isinstance(image, np.ndarray) and image.size and image.dtype.kind in "iuf":
        first = image.flat[0]
        if np.all(image == first):
            raise ValueError(f"the image is constant (every pixel is {first}); there is nothing to segment")


def predict(
    model: torch.nn.Module,
    image: Any,
    *,
    axes: str | None = None,
    device: str = "auto",
    tile: int | None = None,
    overlap: float | None = None,
    batch_size: int | None = None,
    precision: str = "auto",
    out: Any = None,
    compile: bool = False,
) -> Any:
    """Predict class probabilities for a 2D image or a stack.

    Parameters
    ----------
    model : torch.nn.Module
        From :func:`napari_unet.load_model`, with ``.card``.
    image : array-like
        ``(Y, X)``, ``(Z, Y, X)``, RGB ``(Y, X, 3)``... (see ``axes``); numpy, memmap or dask.
    axes : str, optional
        Letters from ``CTZYXS``; inferred from the shape when omitted.
    device : str
        ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    tile, overlap, batch_size : optional
        Tile side, overlap fraction and tiles per batch; defaults from the model card.
    precision : str
        ``auto`` (bf16/fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), ``fp32``,
        ``bf16`` or ``fp16``.
    out : array-like, optional
        Preallocated ``(classes, *spatial)`` float32 output (e.g. ``np.memmap`` or zarr).
    compile : bool
        Compile the network with ``torch.compile`` first (~30 s once per process and tile
        shape, then ~1.2x faster on CPU): for long batch jobs, not for interactive use.

    Returns
    -------
    numpy.ndarray
        float32 probabilities in [0, 1], shaped ``(classes, *spatial_shape)``.
    """
    gen = predict_iter(
        model,
        image,
        axes=axes,
        device=device,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        precision=precision,
        out=out,
        compile=compile,
    )
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def probabilities_to_mask(probabilities: np.ndarray, card: Any, threshold: float | None = None) -> np.ndarray:
    """A mask from probabilities: foreground > threshold (sigmoid models) or argmax class (softmax)."""
    if card.activation == "softmax":
        return np.argmax(probabilities, axis=0).astype(np.uint8)
    thr = card.threshold if threshold is None else float(threshold)
    if not 0 < thr < 1:
        raise ValueError(f"threshold must be between 0 and 1, got {thr}")
    return (probabilities[0] > thr).astype(np.uint8)


class _CallableModule(types.ModuleType):
    """``napari_unet.predict`` is both this module and the function :func:`predict`.

    Importing a submodule binds it as an attribute of its package, which would shadow the
    ``napari_unet.predict(model, image)`` function of the public API once anything has
    imported ``napari_unet.predict`` the module. Calling the module calls the function.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
