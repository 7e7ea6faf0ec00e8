"""Which slice (or, for one large image, which region) is most worth a person's check next.

A slice is worth checking as much as checking it is likely to change it. The model says
where it is unsure in two ways, and both are measured here:

- ``margin``: the chance that each pixel's decision is wrong, read from its own
  probabilities (``min(p, 1 - p)`` of a foreground, ``1 - max`` of exclusive classes): one
  prediction.
- ``flips``: how much the probabilities move when the image is mirrored (left-right, then
  up-down) and the prediction mirrored back: three predictions. A pixel whose answer
  depends on which way the image faces is one the model has not learnt. Models for which
  left and right matter (no mirror flips in training) fall back to ``margin``.

``both`` (the default) adds the two maps. A slice's score is the sum over its pixels: the
number of pixels a check is expected to change. ``benchmarks/bench_annotation.py`` measures
how well each ranks the slices by the model's real error.

>>> u = np.zeros((4, 8, 8), np.float32); u[2, :2] = 0.5; u[0, 0, 0] = 0.25
>>> [(s.z, s.score) for s in rank_slices(u, checked=[2])]
[(0, 0.25), (1, 0.0), (3, 0.0)]
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_unet.jobs import Progress, run_to_end

__all__ = [
    "METHODS", "Region", "SliceScore", "check_labels_fit", "combine", "pixel_uncertainty", "rank_regions",
    "rank_slices", "uncertainty_iter", "uncertainty_parts", "uncertainty_parts_iter",
]  # fmt: skip

METHODS = ("both", "flips", "margin")


@dataclass(frozen=True)
class SliceScore:
    """A slice (its flat number in the stack) and the pixels a check is expected to change there."""

    z: int
    score: float


@dataclass(frozen=True)
class Region:
    """A rectangle of one 2D image and the pixels a check is expected to change there."""

    y: int
    x: int
    height: int
    width: int
    score: float


def pixel_uncertainty(prob: np.ndarray, card: Any) -> np.ndarray:
    """The chance that each pixel's decision is wrong, from probabilities ``(K, *spatial)``:
    ``1 - max`` over a softmax model's classes, ``min(p, 1 - p)`` of a sigmoid model's
    foreground (its first output; distance and other outputs are not decisions)."""
    prob = np.asarray(prob, np.float32)
    if getattr(card, "activation", "sigmoid") == "softmax":
        return 1.0 - prob.max(axis=0)
    return np.minimum(prob[0], 1.0 - prob[0])


def _decision(prob: np.ndarray, card: Any) -> np.ndarray:
    """The outputs a decision is made from: every class (softmax) or the foreground."""
    return prob if getattr(card, "activation", "sigmoid") == "softmax" else prob[:1]


def uncertainty_parts_iter(
    model: Any, image: Any, *, axes: str | None = None, flips: bool = True, settings: Any = None
) -> Generator[Progress, None, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``(probabilities, {"margin": map, "flips": map})`` of ``model`` on ``image``: the mean
    probabilities ``(K, *spatial)`` over the passes and each kind of doubt per pixel,
    ``(*spatial)`` float32 in [0, 1]. Without ``flips`` (or for a model trained without mirror
    flips) one pass and no ``flips`` map. A generator: it yields one
    :class:`~napari_unet.jobs.Progress` per pass and can be stopped between passes.
    """
    from napari_unet.engine.planes import infer_axes
    from napari_unet.engine.predict import predict

    card = model.card
    axes = axes or infer_axes(tuple(np.shape(image)), card.in_channels)
    kwargs = {}
    if settings is not None:
        kwargs = {"device": settings.device, "precision": settings.precision, "tile": settings.tile,
                  "overlap": settings.overlap, "batch_size": settings.batch}  # fmt: skip
    flip_axes = [axes.index("X"), axes.index("Y")] if flips and getattr(card, "flips", True) else []
    spatial = [a for a in axes if a not in "CS"]  # the output's axes after its class axis
    passes = []
    yield Progress(0, 1 + len(flip_axes))
    for k, axis in enumerate([None, *flip_axes]):
        view = image if axis is None else np.flip(np.asarray(image), axis)
        prob = predict(model, view, axes=axes, **kwargs)
        if axis is not None:
            prob = np.flip(prob, 1 + spatial.index(axes[axis]))
        passes.append(np.ascontiguousarray(prob, np.float32))
        yield Progress(k + 1, 1 + len(flip_axes))
    mean = passes[0] if len(passes) == 1 else np.mean(passes, axis=0)
    parts = {"margin": pixel_uncertainty(mean, card)}
    if len(passes) > 1:
        centre = _decision(mean, card)
        spread = np.mean([np.abs(_decision(p, card) - centre) for p in passes], axis=0).sum(axis=0)
        parts["flips"] = np.clip(spread / (2.0 if card.activation == "softmax" else 1.0), 0.0, 1.0)
    return mean, parts


def combine(parts: dict[str, np.ndarray], method: str = "both") -> tuple[np.ndarray, str]:
    """One uncertainty map from :func:`uncertainty_parts` by ``method`` (one of
    :data:`METHODS`), and the method it could use: ``margin`` when there is no flips map."""
    if method not in METHODS:
        raise ValueError(f"unknown uncertainty method {method!r}; choose one of {', '.join(METHODS)}")
    if "flips" not in parts:
        return parts["margin"], "margin"
    if method == "both":
        return np.clip(parts["margin"] + parts["flips"], 0.0, 1.0), method
    return parts[method], method


def uncertainty_parts(model: Any, image: Any, **kwargs: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`uncertainty_parts_iter` run to its end."""
    return run_to_end(uncertainty_parts_iter(model, image, **kwargs))


def uncertainty_iter(
    model: Any, image: Any, *, axes: str | None = None, method: str = "both", settings: Any = None
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, str]]:
    """``(probabilities, uncertainty, method used)`` of ``model`` on ``image`` (see
    :func:`uncertainty_parts_iter` and :func:`combine`), yielding progress; a model trained
    without mirror flips uses ``margin`` and says so in the third value."""
    if method not in METHODS:
        raise ValueError(f"unknown uncertainty method {method!r}; choose one of {', '.join(METHODS)}")
    mean, parts = yield from uncertainty_parts_iter(
        model, image, axes=axes, flips=method != "margin", settings=settings
    )
    u, used = combine(parts, method)
    return mean, u, used


def rank_slices(uncertain: np.ndarray, *, checked: Iterable[int] = ()) -> list[SliceScore]:
    """Every slice not in ``checked`` of an uncertainty map ``([T,] Z, Y, X)``, most worth
    checking first (ties: the lower slice first)."""
    u = np.asarray(uncertain, np.float32)
    if u.ndim < 3:
        raise ValueError("ranking slices needs a stack; for one image rank its regions (rank_regions)")
    flat = u.reshape(-1, *u.shape[-2:])
    skip = {int(z) for z in checked}
    scores = [SliceScore(z, round(float(flat[z].sum(dtype=np.float64)), 3)) for z in range(len(flat)) if z not in skip]
    return sorted(scores, key=lambda s: (-s.score, s.z))


def rank_regions(uncertain: np.ndarray, *, size: int = 256, checked: np.ndarray | None = None) -> list[Region]:
    """The ``size`` x ``size`` regions of one 2D uncertainty map, most worth checking first;
    pixels inside ``checked`` (a painted checked region) count for nothing."""
    u = np.asarray(uncertain, np.float32)
    if u.ndim != 2:
        raise ValueError(f"ranking regions needs one 2D image, got shape {u.shape}")
    if checked is not None:
        u = np.where(np.asarray(checked, bool), 0.0, u)
    h, w = u.shape
    regions = [
        Region(y, x, min(size, h - y), min(size, w - x), round(float(u[y : y + size, x : x + size].sum()), 3))
        for y in range(0, h, size)
        for x in range(0, w, size)
    ]
    return sorted(regions, key=lambda r: (-r.score, r.y, r.x))


def check_labels_fit(labels: np.ndarray, card: Any, spatial_shape: Sequence[int], source: str = "the labels") -> None:
    """One sentence when ``labels`` cannot be this model's labels of this image: another
    shape, or class values the model does not have."""
    if tuple(labels.shape) != tuple(spatial_shape):
        raise ValueError(
            f"{source} have shape {tuple(labels.shape)} but the image has {tuple(spatial_shape)}; "
            "give the labels drawn on this image"
        )
    if labels.dtype.kind not in "biu":
        raise ValueError(f"{source} must be whole numbers (0 = background), got pixel type {labels.dtype}")
    if getattr(card, "activation", None) == "softmax":
        top = int(labels.max()) if labels.size else 0
        if top >= len(card.classes):
            raise ValueError(
                f"{source} hold class value {top}, but the model has {len(card.classes) - 1} class(es) "
                f"({', '.join(card.classes[1:])}, values 1 to {len(card.classes) - 1}); give labels made for this "
                "model, or a model trained on these classes"
            )
