"""Whole-image mode: each plane resized to the network's input size, predicted in one
piece, and its probabilities resized back (as chest X-ray models are used)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from napari_unet.jobs import Progress, relay

__all__ = ["resize_planes", "resized_predict_iter"]


def resize_planes(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(C, H, W)`` float32 resized to ``size`` (bilinear; area-averaged when shrinking)."""
    import torch
    import torch.nn.functional as F

    if tuple(planes.shape[-2:]) == tuple(size):
        return np.ascontiguousarray(planes, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(planes, np.float32))[None]
    shrink = size[0] < planes.shape[-2] or size[1] < planes.shape[-1]
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return y[0].numpy()


def resized_predict_iter(
    model: Any, run: Any, *, normalise: bool, out: Any = None
) -> Generator[Progress, None, np.ndarray]:
    """The ``whole`` engine of a resolved :class:`~napari_unet.engine.run.Run`: each plane
    scaled, resized to the run's tile squared, predicted in one piece, and its
    probabilities resized back to the plane's size."""
    from napari_unet.engine.inference import tiles_iter
    from napari_unet.engine.planes import normalise_plane, plane_layout, read_plane
    from napari_unet.engine.run import Run, tiling_engine

    card, layout, tile = model.card, run.layout, int(run.settings.tile)
    inner = tiling_engine(run.device, run.settings.compile)  # the resized plane is tiled as any plane is
    h, w = layout.spatial_shape[-2:]
    probs = np.zeros((card.out_channels, *layout.spatial_shape), np.float32) if out is None else out
    flat = probs.reshape(card.out_channels, layout.n_planes, h, w) if isinstance(probs, np.ndarray) else None
    for p in range(layout.n_planes):
        plane = read_plane(run.image, layout, p, card.in_channels)
        if normalise:
            plane = normalise_plane(plane, card.normalisation)
        small = resize_planes(plane, (tile, tile))
        small_run = Run(
            run.settings, run.device, small, "CYX", plane_layout(small.shape, "CYX", card.in_channels), inner
        )
        gen = tiles_iter(model, small_run, normalise=False)
        result = yield from relay(gen, lambda e, p=p: Progress(p * e.total + e.done, layout.n_planes * e.total, e.info))
        big = resize_planes(result, (h, w))
        if flat is not None:
            flat[:, p] = big
        else:
            index = np.unravel_index(p, layout.spatial_shape[:-2]) if len(layout.spatial_shape) > 2 else ()
            probs[(slice(None), *index)] = big
    return probs
