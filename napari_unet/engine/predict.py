"""Carry out a resolved run (:mod:`napari_unet.engine.run`) with its engine, and the public
:func:`predict`, the probabilities of an image without objects."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.engine.run import Run, resolve_run
from napari_unet.jobs import Progress, run_to_end

if TYPE_CHECKING:
    import torch

__all__ = ["engine_iter", "predict", "predict_iter"]


def engine_iter(model: Any, run: Run, *, out: Any = None, normalise: bool = True) -> Generator[Progress, None, Any]:
    """Carry out a resolved ``run``: probabilities ``(classes, *spatial)`` float32, into
    ``out`` when given; yields :class:`~napari_unet.jobs.Progress` per batch of tiles (per
    plane for ``blocks``). Closing it stops between steps; planes finished are in ``out``."""
    if run.engine == "whole":
        from napari_unet.engine.whole_image import resized_predict_iter

        return (yield from resized_predict_iter(model, run, normalise=normalise, out=out))
    if run.engine == "blocks":
        return (yield from _blocks_iter(model, run, out=out, normalise=normalise))
    from napari_unet.engine.inference import tiles_iter

    return (yield from tiles_iter(model, run, out=out, normalise=normalise))


def _blocks_iter(model: Any, run: Run, *, out: Any, normalise: bool) -> Generator[Progress, None, Any]:
    """The ``blocks`` engine: the dask computation of :mod:`napari_unet.engine.scale`, stored into
    ``out`` one plane at a time (a new float32 array when ``out`` is None)."""
    import dask
    import dask.array as da

    from napari_unet.engine.scale import lazy_probabilities

    if not normalise:
        raise ValueError("the out-of-core engine scales each plane itself; give it the image as read")
    probs = lazy_probabilities(model, run)
    expected = tuple(probs.shape)
    if out is None:
        out = np.empty(expected, np.float32)
    elif tuple(out.shape) != expected:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {expected}")
    n = run.n_planes
    yield Progress(0, n, {"planes_done": 0, "planes": n, "engine": "blocks"})
    for p in range(n):
        index = (slice(None), p) if probs.ndim == 4 else (slice(None),)
        with dask.config.set(scheduler="threads"):
            # a chunked store's chunks need not line up with the blocks: its writes take turns
            da.store(probs[index], out, regions=index, lock=not isinstance(out, np.ndarray))
        yield Progress(p + 1, n, {"planes_done": p + 1, "planes": n, "engine": "blocks"})
    return out


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
    normalise: bool = True,
    tta: bool = False,
) -> Generator[Progress, None, Any]:
    """Generator form of :func:`predict`: yields :class:`Progress` per batch of tiles.

    ``normalise=False`` feeds the image as it is (already scaled as the card says).
    ``tta`` averages each tile over its 8 flips and quarter turns (8x the time).
    The run is resolved by :func:`napari_unet.engine.run.resolve_run`, with the card's tile
    and overlap where none is given (:func:`napari_unet.segment` chooses one per image).

    Closing the generator stops between batches; planes already finished are in ``out``.
    On CUDA, an out-of-memory error retries with half the batch size, then half the tile.
    """
    card = model.card
    run = resolve_run(model, image, axes=axes, prepared=True, device=device, precision=precision, batch=batch_size,
                      tile=int(tile or card.tile), overlap=card.overlap if overlap is None else overlap,
                      compile=compile, tta=tta)  # fmt: skip
    return (yield from engine_iter(model, run, out=out, normalise=normalise))


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
    tta: bool = False,
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
        Compile the network with ``torch.compile`` first (13-37 s once per process and tile
        shape, then 1.00-1.18x as fast on this project's CPU): for long batch jobs at most.
    tta : bool
        Test-time augmentation: each tile is predicted in its 8 flips and quarter turns and
        the logits averaged; 8x the time. Refused for models trained without flips.

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
        tta=tta,
    )
    return run_to_end(gen)
