"""Scale-out: images larger than RAM as a dask computation, and many files on a dask cluster.

Larger than memory
    :func:`predict_lazy` turns a (lazily read) image into a dask array of probabilities.
    Each block of a plane gets a margin of one tile (``map_overlap``) and runs exactly the
    tiles of the *global* tile grid that touch it, blended with the same Gaussian weights
    as :func:`napari_unet.engine.tiling.tiled_predict_iter`: both use one
    :class:`~napari_unet.engine.tiling.Grid`. Every output pixel therefore sums
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

from napari_unet.engine.planes import apply_limits, clips, plane_limits
from napari_unet.engine.tiling import Grid

__all__ = ["FileResult", "lazy_probabilities", "load_model_cached", "predict_lazy", "predict_to_zarr", "run_files"]

_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def load_model_cached(name_or_path: str | None) -> Any:
    """The model, loaded once per process (so once per dask worker, not once per file).

    Keyed by the resolved file and its modification time, so a model saved again under
    the same name is loaded afresh; only the last few models are kept.
    """
    from napari_unet.networks.model import load_model, resolve_model_path

    path = resolve_model_path(name_or_path or "nuclei")
    key = f"{path}:{path.stat().st_mtime_ns}"
    with _LOCK:
        if key not in _MODELS:
            while len(_MODELS) >= 4:
                _MODELS.pop(next(iter(_MODELS)))
            _MODELS[key] = load_model(path)
        return _MODELS[key]


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
    predictor: Any,
    grid: Grid,
    limits: np.ndarray,
    starts: tuple[list[int], list[int]],
    out_channels: int,
    batch_size: int,
    depth: int,
    clip: bool = False,
    block_id: tuple[int, ...] = (0, 0, 0, 0),
) -> np.ndarray:
    """Predict one block of one plane from its window (block plus a margin of ``depth``
    where a neighbour exists): ``(C, 1, ., .)`` -> ``(K, 1, h, w)``. It runs the tiles of
    the plane's :class:`~napari_unet.engine.tiling.Grid` that touch the block, blended as the
    in-memory engine blends them."""
    _, z, i, j = block_id
    lo = (starts[0][i], starts[1][j])
    hi = (starts[0][i + 1], starts[1][j + 1])
    origin = (lo[0] - (depth if i > 0 else 0), lo[1] - (depth if j > 0 else 0))  # the window in plane coordinates
    data = apply_limits(block[:, 0].astype(np.float32), [tuple(v) for v in limits[z]], clip=clip)
    data = grid.pad(data)  # only an image smaller than a tile is padded: the window is the whole plane then
    acc = np.zeros((out_channels, hi[0] - lo[0], hi[1] - lo[1]), np.float32)
    tiles = grid.tiles_touching(lo, hi)
    th, tw = grid.tile
    for first in range(0, len(tiles), batch_size):
        batch = tiles[first : first + batch_size]
        x = np.stack(
            [data[:, ty - origin[0] : ty - origin[0] + th, tx - origin[1] : tx - origin[1] + tw] for ty, tx in batch]
        )
        for start, r in zip(batch, predictor(x)):
            grid.blend(acc, start, r, lo)
    # every tile over the block was added, so its weights sum as over the whole plane
    np.divide(acc, grid.weight_sum_box(lo, hi), out=acc)  # (no whole-plane weight array for a huge plane)
    return acc[:, None]


def predict_lazy(
    image: Any,
    model: Any = None,
    *,
    axes: str | None = None,
    block: int = 2048,
    tile: int | None = None,
    overlap: float | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    tta: bool = False,
) -> Any:
    """Probabilities of a (possibly larger than memory) image as a lazy dask array.

    Parameters
    ----------
    image : array-like
        A dask (or numpy/zarr) array shaped ``(Y, X)`` or ``(Z, Y, X)``, grayscale.
    model : torch.nn.Module or str, optional
        A loaded model (e.g. one just fine-tuned), or a registered name or path (loaded
        once per process); default: the shipped model.
    block : int
        Side of the blocks each task predicts (it reads one tile more on each side).
    tile, overlap, batch_size, device, precision, tta : optional
        As for :func:`napari_unet.predict` (the card's tile and overlap when none is given),
        resolved the same way (:func:`napari_unet.engine.run.resolve_run`): the same image and
        settings give the same tiles, so the same probabilities, in memory or block by
        block. ``napari_unet.segment(..., out_of_core=True)`` chooses the tile per image.

    Returns
    -------
    dask.array.Array
        float32 ``(classes, *spatial)``, chunked ``(classes, 1, block, block)``.
    """
    from napari_unet.engine.run import resolve_run

    net = model if model is not None and not isinstance(model, str | os.PathLike) else load_model_cached(model)
    card = net.card
    run = resolve_run(net, image, axes=axes, out_of_core=True, block=block, tile=int(tile or card.tile),
                      overlap=card.overlap if overlap is None else overlap, batch=batch_size, device=device,
                      precision=precision, tta=tta)  # fmt: skip
    return lazy_probabilities(net, run)


def lazy_probabilities(net: Any, run: Any) -> Any:
    """The ``blocks`` engine of a resolved :class:`~napari_unet.engine.run.Run`: its image's
    probabilities as a dask array, each block running the tiles of its plane's grid that
    touch it."""
    import uuid

    import dask
    import dask.array as da

    from napari_unet.engine.inference import torch_predictor
    from napari_unet.engine.planes import percentile_sample
    from napari_unet.engine.process import tune_cpu_allocator, use_all_cores

    card, s, image, block = net.card, run.settings, run.image, run.block
    if run.device.type == "cpu":
        use_all_cores()
        tune_cpu_allocator()
    predictor = torch_predictor(net, run.device, s.precision, card.activation, tta=s.tta)
    arr = image if isinstance(image, da.Array) else da.from_array(image, chunks=(1, block, block)[-image.ndim :])
    if arr.ndim == 2:
        arr = arr[None]
    n, h, w = arr.shape
    grid = Grid.for_shape((h, w), tile=int(s.tile), overlap=float(s.overlap), divisor=getattr(net, "size_divisor", 16))
    depth = max(grid.tile)
    block = max(block, depth)  # a block's neighbours must hold its margin (dask would rechunk them otherwise)
    cy, cx = _chunks(h, block, min(depth, h)), _chunks(w, block, min(depth, w))
    arr = arr.rechunk(((1,) * n, cy, cx))[None]  # (C=1, Z, Y, X): the same block grid as the output
    # per-plane normalisation limits, from the same strided sample as the in-memory engine
    samples = dask.compute(*[percentile_sample(arr[:, z]) for z in range(n)])
    limits = np.stack(
        [np.asarray(plane_limits(np.asarray(sample, np.float32), card.normalisation)) for sample in samples]
    )
    dy = depth if len(cy) > 1 else 0
    dx = depth if len(cx) > 1 else 0
    windows = da.overlap.overlap(arr, depth={0: 0, 1: 0, 2: dy, 3: dx}, boundary="none")
    starts = (list(np.cumsum((0, *cy))), list(np.cumsum((0, *cx))))
    out = da.map_blocks(
        _block_predict,
        windows,
        dtype=np.float32,
        chunks=((card.out_channels,), (1,) * n, cy, cx),
        name=f"napari-unet-predict-{uuid.uuid4().hex}",  # the model is not hashed to name the tasks
        predictor=predictor,
        grid=grid,
        limits=limits,
        starts=starts,
        out_channels=card.out_channels,
        batch_size=int(s.batch),
        depth=depth,
        clip=clips(card.normalisation),
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

    from napari_unet.io.ome_zarr import write_ome_zarr

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


def _run_one(
    fn: Callable[..., list[str]], path: str, outputs: list[str], overwrite: bool, kwargs: dict, done: bool = False
) -> FileResult:
    if not overwrite and (done or (outputs and all(Path(o).exists() for o in outputs))):
        return FileResult(path, True, "outputs exist; skipped (use --overwrite to redo)", outputs, skipped=True)
    try:
        written = fn(path, **kwargs)
    except (ValueError, OSError) as exc:
        return FileResult(path, False, str(exc), [])
    except MemoryError as exc:  # one file too large for this machine: the others still run
        return FileResult(path, False, _out_of_memory(exc), [])
    except RuntimeError as exc:  # torch's errors, its out-of-memory among them
        text = " ".join(str(exc).split())[:300]
        if "out of memory" in text.lower():
            return FileResult(path, False, _out_of_memory(exc), [])
        return FileResult(path, False, f"failed: {type(exc).__name__}: {text}", [])
    return FileResult(path, True, "done", list(written))


def _out_of_memory(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:200]
    return (
        f"ran out of memory ({type(exc).__name__}{': ' + detail if detail else ''}); try a smaller --tile or "
        "--batch, a lower --lazy-gb (so large images are read block by block), or a machine with more memory"
    )


def run_files(
    fn: Callable[..., list[str]],
    paths: Iterable[str | os.PathLike],
    *,
    expected: Callable[[str], list[str]] | None = None,
    complete: Callable[[str], bool] | None = None,
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
    if complete is not None:  # the caller knows when a file's outputs are whole: only then is it skipped
        expected = lambda p: []  # noqa: E731
    expected = expected or (lambda p: [])
    is_done = complete or (lambda p: False)
    if scheduler is None and not workers:
        results = []
        for p in paths:
            r = _run_one(fn, p, expected(p), overwrite, kwargs, is_done(p))
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
                _run_one,
                fn,
                p,
                expected(p),
                overwrite,
                kwargs,
                is_done(p),
                key=f"napari-unet-{i}-{Path(p).name}",
                retries=2,
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
