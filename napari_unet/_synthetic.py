"""Seeded synthetic images with exact ground truth, for tests and benchmarks of tasks
beyond fluorescence nuclei: chest-X-ray-like phantoms whose left and right lungs are
different classes, and RGB H&E-like tiles of nuclei. Pure numpy + scipy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["he_tile", "lateral_phantom"]


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u, v = (dx * c + dy * s) / rx, (-dx * s + dy * c) / ry
    return u * u + v * v <= 1.0


def lateral_phantom(seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A chest-X-ray-like uint8 image and its labels: 1 = the patient's left lung (on the
    image's right, as radiographs are shown), 2 = the right lung. The two lungs look alike
    (the left one is narrower, with a notch for the heart): only the side tells them apart,
    so a model trained with mirror flips confuses them."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    shape = (size, size)
    s = size / 256
    cy = size * (0.52 + rng.uniform(-0.04, 0.04))
    cx = size * (0.5 + rng.uniform(-0.04, 0.04))
    tilt = rng.uniform(-0.08, 0.08)
    body = _ellipse(shape, cy, cx, 115 * s * rng.uniform(0.92, 1.05), 108 * s * rng.uniform(0.9, 1.05), tilt)
    gap = 16 * s * rng.uniform(0.8, 1.2)
    ry = 72 * s * rng.uniform(0.88, 1.1)
    right = _ellipse(shape, cy - 6 * s, cx - gap - 36 * s, ry, 36 * s * rng.uniform(0.9, 1.1), tilt + 0.12)
    left = _ellipse(shape, cy - 6 * s, cx + gap + 32 * s, ry * 0.95, 31 * s * rng.uniform(0.9, 1.1), tilt - 0.12)
    heart = _ellipse(shape, cy + 38 * s, cx + 18 * s, 34 * s, 42 * s, 0.4)
    left &= ~heart
    image = np.full(shape, 0.08, np.float32)
    image[body] = 0.62
    image[right | left] = 0.24
    image[heart] = 0.7
    ribs = 0.06 * (np.sin(np.mgrid[: shape[0], : shape[1]][0] / (7 * s) + rng.uniform(0, 6)) > 0.6)
    image = image + ribs * body
    image = ndi.gaussian_filter(image, 2.0 * s) + rng.normal(0, 0.03, shape)
    image *= rng.uniform(0.8, 1.2)
    labels = np.zeros(shape, np.uint8)
    labels[left] = 1
    labels[right] = 2
    return np.clip(image * 255, 0, 255).astype(np.uint8), labels


def he_tile(seed: int, size: int = 256, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An RGB H&E-like uint8 tile ``(Y, X, 3)`` and its instance labels: pink stroma with
    fibres, purple-blue nuclei of varied size and stain (some touching), pale lumina."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    shape = (size, size)
    labels = np.zeros(shape, np.int32)
    count = n if n is not None else int(rng.integers(18, 32) * (size / 256) ** 2)
    placed = 0
    for _ in range(count * 6):
        if placed >= count:
            break
        ry, rx = rng.uniform(6, 13), rng.uniform(5, 10)
        cy, cx = rng.uniform(0, size), rng.uniform(0, size)
        blob = _ellipse(shape, cy, cx, ry, rx, rng.uniform(0, np.pi))
        if (labels[blob] > 0).mean() > 0.05 if blob.any() else True:
            continue
        placed += 1
        labels[blob & (labels == 0)] = placed
    # stain densities: eosin everywhere (less in lumina), haematoxylin in nuclei
    eosin = (
        0.55
        + 0.25 * ndi.gaussian_filter(rng.normal(0, 1, shape), 6)
        + 0.1 * ndi.gaussian_filter(rng.normal(0, 1, shape), 1.5)
    )
    lumen = ndi.gaussian_filter(rng.normal(0, 1, shape), 20) > 0.06
    eosin[lumen] *= 0.3
    haem = np.zeros(shape, np.float32)
    for i in range(1, placed + 1):
        haem[labels == i] = rng.uniform(0.7, 1.3)
    haem = ndi.gaussian_filter(haem, 0.8) * (1 + 0.25 * rng.normal(0, 1, shape))
    haem_rgb, eosin_rgb = np.array([0.65, 0.70, 0.29]), np.array([0.07, 0.99, 0.11])  # optical density per stain
    od = haem[..., None] * haem_rgb + np.clip(eosin, 0, None)[..., None] * eosin_rgb * 0.6
    rgb = 255 * np.exp(-od) + rng.normal(0, 4, (*shape, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8), labels
