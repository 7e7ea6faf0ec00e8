"""Does an image look like what a model was trained on? Simple statistics, one sentence.

Training stores, in the card's ``input_stats``, the range of a few statistics of its
scaled input planes and of the share of foreground in their labels. Prediction measures
the same on the image and its result; an image far outside them gets one warning
sentence (a nuclei model on a chest X-ray, say), so that a result is checked before it
is trusted. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["fit_warnings", "input_statistics", "plane_statistics"]


def plane_statistics(plane: np.ndarray) -> dict[str, float]:
    """Median and the 1st-99th percentile spread of a scaled ``(C, H, W)`` plane (all channels)."""
    from napari_unet.engine.planes import percentile_sample

    sample = np.asarray(percentile_sample(plane), np.float32).ravel()
    p1, p50, p99 = (float(v) for v in np.percentile(sample, (1, 50, 99)))
    return {"median": p50, "spread": p99 - p1}


def foreground_share(mask: np.ndarray) -> float:
    """The share of pixels that are foreground (non-zero), from a strided sample."""
    mask = np.asarray(mask)
    step = max(1, int(np.sqrt(mask.shape[-1] * mask.shape[-2] / 250_000)))
    return float((mask[..., ::step, ::step] > 0).mean())


def input_statistics(planes: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, list[float]]:
    """What the card keeps: the min and max over training planes of each statistic, for
    ``(scaled image (C, H, W), labels (H, W))`` pairs."""
    medians, spreads, shares = [], [], []
    for image, labels in planes:
        stats = plane_statistics(image)
        medians.append(stats["median"])
        spreads.append(stats["spread"])
        shares.append(foreground_share(labels))
    if not medians:
        return {}
    return {
        "median": [min(medians), max(medians)],
        "spread": [min(spreads), max(spreads)],
        "foreground": [min(shares), max(shares)],
    }


def _sample_planes(image: Any, axes: str | None, card: Any, n: int = 3) -> list[np.ndarray]:
    from napari_unet.engine.planes import normalise_plane, percentile_sample, plane_layout, read_plane

    layout = plane_layout(tuple(image.shape), axes, card.in_channels)
    picks = sorted({0, layout.n_planes // 2, layout.n_planes - 1})[:n]
    out = []
    for p in picks:
        plane = read_plane(image, layout, p, card.in_channels, raw=True)
        out.append(normalise_plane(np.asarray(percentile_sample(plane)), card.normalisation))
    return out


def fit_warnings(card: Any, image: Any, axes: str | None, probabilities: np.ndarray, settings: Any) -> list[str]:
    """One sentence per way ``image`` (and the model's result on it) falls far outside what
    the model was trained on; empty when the card keeps no statistics or all is well.

    An image is far when its scaled median intensity lies more than a fifth of the
    training images' typical spread outside their range, or when the result marks as
    foreground more than twice (and 10 points more than) the largest share seen in
    training.
    """
    stats = getattr(card, "input_stats", None) or {}
    if not stats:
        return []
    from napari_unet.objects.settings import foreground_mask

    found: list[str] = []
    what = f"model {card.name!r}"
    if "median" in stats and "spread" in stats:
        lo, hi = stats["median"]
        tolerance = max(0.2 * float(np.mean(stats["spread"])), 1e-6)
        medians = [plane_statistics(p)["median"] for p in _sample_planes(image, axes, card)]
        far = [m for m in medians if m < lo - tolerance or m > hi + tolerance]
        if far:
            found.append(
                f"this image looks unlike the images {what} was trained on: its scaled median intensity is "
                f"{far[0]:.2f}, theirs were {lo:.2f} to {hi:.2f}. Check the result before trusting it, or train "
                "a model on images like this one."
            )
    if "foreground" in stats and probabilities is not None:
        top = float(stats["foreground"][1])
        h, w = probabilities.shape[-2:]
        step = max(1, int(np.sqrt(h * w / 250_000)))  # a strided sample: no full-size temporary for a big stack
        sample = np.asarray(probabilities[..., ::step, ::step])
        share = foreground_share(foreground_mask(sample, card, settings))
        if share > max(2 * top, top + 0.10):
            found.append(
                f"{what} marks {100 * share:.0f}% of this image as foreground, where its training images had at "
                f"most {100 * top:.0f}%; it may not suit this kind of image. Check the result before trusting it."
            )
    return found
