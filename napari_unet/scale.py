"""Scale-out: images larger than RAM as a dask computation, and many files on a dask cluster.

Larger than memory
    :func:`predict_lazy` turns a (lazily read) image into a dask array of probabilities.
    Each block of a plane gets a margin of one tile (``map_overlap``) and runs exactly the
    tiles of the *global* tile grid that touch it, blended with the same Gaussian weights
    as :func:`napari_unet.predict.tiled_predict_iter`. Every output pixel therefore sums
    the very same tile predictions as the in-memory engine: there are no block seams, and
    the two agree to float rounding. Per-plane normalisation limits are computed first
    from the same strided sample. :func:`predict_to_zarr` streams the result to an
    OME-Zarr store, never holding the whole image.

Many files
    :func:`run_files` applies one function (predict or count a file) to many files, in
    this process, on a local cluster it starts (``workers=N``) or on an existing
    ``dask.distributed`` scheduler (``scheduler="tcp://host:8786"``; dask-jobqueue or
    dask-kubernetes clusters are reached the same way). The model is loaded once per
    worker process; a file that fails is reported and the others finish; a file whose
    outputs already exist is skipped unless ``overwrite``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.tiling import _round_up, gaussian_weight, plane_limits, tile_starts

__all__ = ["FileResult", "load_model_cached", "predict_lazy", "predict_to_zarr", "run_files"]

_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def load_model_cached(name_or_path: str | None) -> Any:
    """The model, loaded once per process (so once per dask worker, not once per file)."""
    from napari_unet.model import load_model

    key = str(name_or_path)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(name_or_path)
        return _MODELS[key]


def _grid(size: int, tile: int, divisor: int, overlap: float) -> tuple[int, int, list[int]]:
    t = min(_round_up(tile, divisor), _round_up(size, divisor))
    padded = max(size, t)
    return t, padded, tile_starts(padded, t, overlap)


def _chunks(n: int, block: int, depth: int) -> tuple[int, ...]:
    """Chunk sizes of an axis: ``block`` each, the last one merged if smaller than ``depth``."""
    sizes = [block] * (n // block) + ([n % block] if n % block else [])
    if len(sizes) > 1 and sizes[-1] < depth:
        last = sizes.pop()  # (not sizes[-2] += sizes.pop(): the index would be taken before the pop)
        sizes[-1] += last
    return tuple(sizes)


def _block_predict(
    block: np.ndarray,
    *,
    limits: np.ndarray,
    starts: tuple[list[int], list[int]],
    model: str | None,
    shape: tuple[int, int],
    tile: int,
    overlap: float,
    device: str,
    precision: str,
    depth: int,
    block_id: tuple[int, ...] = (0, 0, 0, 0),
) -> np.ndarray:
    """Predict one block of one plane from its window (block plus a margin of ``depth``
    where a neighbour exists): ``(C, 1, ., .)`` -> ``(K, 1, h, w)``."""
    from napari_unet.predict import pick_device, resolve_precision, torch_predictor
    from napari_unet.tiling import apply_limits

    net = load_model_cached(model)
    card = net.card
    dev = pick_device(device)
    predictor = torch_predictor(net, dev, resolve_precision(precision, dev), card.activation)
    _, z, i, j = block_id
    H, W = shape
    by0, by1 = starts[0][i], starts[0][i + 1]
    bx0, bx1 = starts[1][j], starts[1][j + 1]
    y0 = by0 - (depth if i > 0 else 0)  # where the window starts in plane coordinates
    x0 = bx0 - (depth if j > 0 else 0)
    divisor = getattr(net, "size_divisor", 16)
    th, ph, ys = _grid(H, tile, divisor, overlap)
    tw, pw, xs = _grid(W, tile, divisor, overlap)
    data = apply_limits(block[:, 0].astype(np.float32), [tuple(v) for v in limits[z]])
    if (ph, pw) != (H, W):  # image smaller than a tile: the engine pads the whole plane
        data = np.pad(data, ((0, 0), (0, ph - H), (0, pw - W)), mode="reflect" if min(H, W) > 1 else "edge")
    weight = gaussian_weight((th, tw))
    k = card.out_channels
    acc = np.zeros((k, by1 - by0, bx1 - bx0), np.float32)
    wsum = np.zeros((by1 - by0, bx1 - bx0), np.float32)
    tiles = [(ty, tx) for ty in ys if ty < by1 and ty + th > by0 for tx in xs if tx < bx1 and tx + tw > bx0]
    for first in range(0, len(tiles), 4):
        batch = tiles[first : first + 4]
        x = np.stack([data[:, ty - y0 : ty - y0 + th, tx - x0 : tx - x0 + tw] for ty, tx in batch])
        for (ty, tx), r in zip(batch, predictor(x)):
            sy0, sy1 = max(ty, by0), min(ty + th, by1)
            sx0, sx1 = max(tx, bx0), min(tx + tw, bx1)
            w = weight[sy0 - ty : sy1 - ty, sx0 - tx : sx1 - tx]
            acc[:, sy0 - by0 : sy1 - by0, sx0 - bx0 : sx1 - bx0] += r[:, sy0 - ty : sy1 - ty, sx0 - tx : sx1 - tx] * w
            wsum[sy0 - by0 : sy1 - by0, sx0 - bx0 : sx1 - bx0] += w
    return (acc / wsum)[:, None]


def predict_lazy(
    image: Any,
    model: str | None = None,
    *,
    axes: str | None = None,
    block: int = 2048,
    tile: int | None = None,
    overlap: float | None = None,
    device: str = "cpu",
    precision: str = "auto",
) -> Any:
    """Probabilities of a (possibly larger than memory) image as a lazy dask array.

    Parameters
    ----------
    image : array-like
        A dask (or numpy/zarr) array shaped ``(Y, X)`` or ``(Z, Y, X)``, grayscale.
    model : str, optional
        Registered name or path (loaded once per worker; default: the shipped model).
    block : int
        Side of the blocks each task predicts (it reads one tile more on each side).

    Returns
    -------
    dask.array.Array
        float32 ``(classes, *spatial)``, chunked ``(classes, 1, block, block)``.
    """
    import dask
    import dask.array as da

    from napari_unet.tiling import percentile_sample, plane_layout

    card = load_model_cached(model).card
    axes = (axes or ("YX" if image.ndim == 2 else "ZYX")).upper()
    if axes not in ("YX", "ZYX", "TYX"):
        raise ValueError(f"the out-of-core engine takes grayscale YX or ZYX images, got axes {axes!r}")
    plane_layout(tuple(image.shape), axes, card.in_channels)
    tile = int(tile or card.tile)
    overlap = float(card.overlap if overlap is None else overlap)
    arr = image if isinstance(image, da.Array) else da.from_array(image, chunks=(1, block, block)[-image.ndim :])
    if arr.ndim == 2:
        arr = arr[None]
    n, h, w = arr.shape
    depth = _round_up(tile, 16)
    cy, cx = _chunks(h, block, min(depth, h)), _chunks(w, block, min(depth, w))
    arr = arr.rechunk(((1,) * n, cy, cx))[None]  # (C=1, Z, Y, X): the same block grid as the output
    # per-plane normalisation limits, from the same strided sample as the in-memory engine
    samples = dask.compute(*[percentile_sample(arr[:, z]) for z in range(n)])
    limits = np.stack([np.asarray(plane_limits(np.asarray(s, np.float32), card.normalisation)) for s in samples])
    dy = depth if len(cy) > 1 else 0
    dx = depth if len(cx) > 1 else 0
    windows = da.overlap.overlap(arr, depth={0: 0, 1: 0, 2: dy, 3: dx}, boundary="none")
    starts = (list(np.cumsum((0, *cy))), list(np.cumsum((0, *cx))))
    out = da.map_blocks(
        _block_predict,
        windows,
        dtype=np.float32,
        chunks=((card.out_channels,), (1,) * n, cy, cx),
        limits=limits,
        starts=starts,
        model=model,
        shape=(h, w),
        tile=tile,
        overlap=overlap,
        device=device,
        precision=precision,
        depth=depth,
        meta=np.empty((0, 0, 0, 0), np.float32),
    )
    return out if image.ndim == 3 else out[:, 0]


def predict_to_zarr(
    image: Any,
    path: str | os.PathLike,
    model: str | None = None,
    *,
    scale: tuple[float, ...] | None = None,
    units: Any = None,
    **kwargs: Any,
) -> Any:
    """Stream :func:`predict_lazy` into an OME-Zarr store at ``path`` (probabilities at
    ``0``, axes ``c[z]yx`` with ``scale``/``units`` of the image); returns the zarr array."""
    import zarr

    from napari_unet.ome_zarr import write_ome_zarr

    probs = predict_lazy(image, model, **kwargs)
    write_ome_zarr(path, probs, axes="C" + ("ZYX" if probs.ndim == 4 else "YX"), scale=scale, units=units)
    return zarr.open_array(str(path), path="0", mode="r")


# --------------------------------------------------------------------------- many files


@dataclass
class FileResult:
    path: str
    ok: bool
    message: str
    outputs: list[str]
    skipped: bool = False


def _run_one(fn: Callable[..., list[str]], path: str, outputs: list[str], overwrite: bool, kwargs: dict) -> FileResult:
    if not overwrite and outputs and all(Path(o).exists() for o in outputs):
        return FileResult(path, True, "outputs exist; skipped (use --overwrite to redo)", outputs, skipped=True)
    try:
        written = fn(path, **kwargs)
    except (ValueError, OSError) as exc:
        return FileResult(path, False, str(exc), [])
    return FileResult(path, True, "done", list(written))


def run_files(
    fn: Callable[..., list[str]],
    paths: Iterable[str | os.PathLike],
    *,
    expected: Callable[[str], list[str]] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    timeout: float = 10.0,
    on_result: Callable[[FileResult], None] | None = None,
    **kwargs: Any,
) -> list[FileResult]:
    """Apply ``fn(path, **kwargs) -> written files`` to every file; never stop at a failure.

    With ``scheduler`` the work goes to that dask.distributed cluster (an unreachable
    address fails within ``timeout`` seconds); with ``workers`` to a local cluster of that
    many single-threaded worker processes; with neither, it runs here, one file at a time.
    """
    paths = [str(p) for p in paths]
    expected = expected or (lambda p: [])
    if scheduler is None and not workers:
        results = []
        for p in paths:
            r = _run_one(fn, p, expected(p), overwrite, kwargs)
            results.append(r)
            if on_result:
                on_result(r)
        return results
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - distributed is in the 'all' extra
        raise ValueError("running on a cluster needs dask.distributed: pip install 'napari-unet[all]'") from exc
    cluster = None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as exc:
            raise OSError(
                f"cannot reach the dask scheduler at {scheduler} within {timeout:g} s ({exc}); check the address"
            ) from exc
    else:
        cluster = LocalCluster(
            n_workers=int(workers), threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
        client = Client(cluster)
    try:
        futures = {
            client.submit(
                _run_one, fn, p, expected(p), overwrite, kwargs, key=f"napari-unet-{i}-{Path(p).name}", retries=2
            ): p
            for i, p in enumerate(paths)
        }
        by_path: dict[str, FileResult] = {}
        for future in as_completed(futures):
            path = futures[future]
            try:
                r = future.result()
            except Exception as exc:  # a worker died more often than the retries allow
                r = FileResult(path, False, f"failed on the cluster: {type(exc).__name__}: {exc}", [])
            by_path[path] = r
            if on_result:
                on_result(r)
        return [by_path[p] for p in paths]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
