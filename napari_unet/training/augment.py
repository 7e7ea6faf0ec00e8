"""On-device augmentation of training batches (torch only, on whatever device trains)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["LEVELS", "augment"]

#: how strong each level is: (rotation in degrees, zoom range as log, shear, elastic,
#: intensity scale, offset, gamma (log), blur sigma, noise, bleed-through, uneven illumination)
LEVELS = {
    "light": (5.0, 0.15, 0.0, 0.0, 0.2, 0.1, 0.2, 0.0, 0.03, 0.0, 0.0),
    "medium": (15.0, 0.45, 0.2, 0.06, 0.6, 0.3, 0.8, 1.5, 0.08, 0.0, 0.0),
    "heavy": (30.0, 0.7, 0.3, 0.1, 0.8, 0.4, 1.0, 2.0, 0.12, 0.0, 0.0),
    # fluorescence nuclei from other microscopes and cell lines: zoom 0.5-2x, a cytoplasmic
    # signal beside the nuclei (a fluorescent protein bleeding through) and uneven illumination;
    # for foreground models (the first target channel is the foreground). Grouped cross-validation
    # of the nuclei recipe scored it below "medium" (F1@0.5 0.833 vs 0.883, Dice 0.919 vs 0.955,
    # median count error 8.8% vs 12.4%, 6-min folds), so no recipe or command offers it;
    # scripts/cv_nuclei.py --augment microscopy repeats the comparison
    "microscopy": (15.0, 1.386, 0.2, 0.06, 0.6, 0.3, 0.8, 1.5, 0.08, 0.6, 0.5),
}


def augment(
    x: torch.Tensor,
    y: torch.Tensor,
    m: torch.Tensor,
    gen: torch.Generator,
    *,
    level: str = "medium",
    flips: bool = True,
) -> tuple[torch.Tensor, ...]:
    """On-device augmentation of a batch: flips and 90-degree turns (unless ``flips`` is
    False: where left and right matter, neither a mirror nor a turn keeps the anatomy),
    rotation/shear/zoom, elastic deformation, intensity scale/offset, gamma, blur and noise,
    as strong as ``level`` (``none``, ``light``, ``medium`` or ``heavy``) says.

    A batch of volumes ``(B, C, D, H, W)`` (a 3D model's) is also flipped along depth, turned
    in-plane and varied in intensity (scale, offset, gamma, noise); the affine, elastic, blur
    and illumination steps are made for planes and are left out for volumes so far."""
    import torch
    import torch.nn.functional as F

    if level == "none":
        return x, y, m
    if level not in LEVELS:
        raise ValueError(f"augmentation must be none, {', '.join(LEVELS)}; got {level!r}")
    rot, zoom_range, shear_range, elastic, iscale, ioffset, igamma, blur, noise, bleed, illumination = LEVELS[level]
    b, dev = x.shape[0], x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device="cpu").to(dev)

    if flips:
        if rand(1).item() < 0.5:
            x, y, m = x.flip(-1), y.flip(-1), m.flip(-1)
        if rand(1).item() < 0.5:
            x, y, m = x.flip(-2), y.flip(-2), m.flip(-2)
        if x.ndim == 5 and rand(1).item() < 0.5:  # a volume: along depth too
            x, y, m = x.flip(-3), y.flip(-3), m.flip(-3)
        k = int(rand(1).item() * 4)
        if k and x.shape[-1] == x.shape[-2]:
            x, y, m = (t.rot90(k, (-2, -1)) for t in (x, y, m))
    if x.ndim == 5:
        x = _intensity(x, rand, gen, iscale, ioffset, igamma, noise, blur=0.0)
        return x.contiguous(), y.contiguous(), m.contiguous()
    # affine (rotation, zoom, shear) plus a smooth elastic field
    angle = (rand(b) - 0.5) * (math.pi * rot / 90)
    zoom = torch.exp((rand(b) - 0.5) * zoom_range)
    shear = (rand(b) - 0.5) * shear_range
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, torch.zeros_like(cos)], 1), torch.stack([sin, cos, torch.zeros_like(cos)], 1)],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    h, w = x.shape[-2:]
    coarse = (rand(b, 2, max(2, h // 32), max(2, w // 32)) - 0.5) * (elastic * rand(b, 1, 1, 1))
    grid = grid + F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    y = F.grid_sample(y, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    m = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    if bleed:
        x = x + _cytoplasm(y[:, :1], rand, bleed)
    if illumination:  # a smooth field over the tile, up to about +-illumination/2 in log
        field = (rand(b, 1, 4, 4) - 0.5) * illumination
        x = x * torch.exp(F.interpolate(field, size=(h, w), mode="bicubic", align_corners=False))
    x = _intensity(x, rand, gen, iscale, ioffset, igamma, noise, blur=blur)
    return x.contiguous(), y.contiguous(), m.contiguous()


def _intensity(
    x: torch.Tensor, rand: Any, gen: Any, iscale: float, ioffset: float, igamma: float, noise: float, *, blur: float
) -> torch.Tensor:
    """Intensity scale and offset, gamma, a blur (planes only) and noise, per item."""
    import torch
    import torch.nn.functional as F

    b, dev = x.shape[0], x.device
    per_item = (b,) + (1,) * (x.ndim - 1)
    x = x * (1 - iscale / 2 + iscale * rand(*per_item)) + (rand(*per_item) - 0.5) * ioffset
    gamma = torch.exp((rand(*per_item) - 0.5) * igamma)
    x = torch.where(x > 0, x.clamp_min(1e-6) ** gamma, x)
    sigma = float(rand(1).item() * blur)
    if sigma > 0.3:
        r = torch.arange(-3, 4, device=dev, dtype=x.dtype)
        kern = torch.exp(-0.5 * (r / sigma) ** 2)
        kern = kern / kern.sum()
        c = x.shape[1]
        x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="reflect"), kern.view(1, 1, 1, 7).repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="reflect"), kern.view(1, 1, 7, 1).repeat(c, 1, 1, 1), groups=c)
    return x + torch.randn(x.shape, generator=gen).to(dev) * (noise * rand(*per_item))


def _cytoplasm(foreground: torch.Tensor, rand: Any, strength: float) -> torch.Tensor:
    """A cytoplasm-like signal for about half the tiles of a batch: patchy, smooth, in a ring
    a few to 15 pixels around each nucleus and never on it, at up to ``strength`` of the
    nuclei's brightness. The targets stay as they are: it is background to be ignored."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = foreground.shape
    fg = (foreground > 0.5).float()
    reach = int(3 + rand(1).item() * 12)
    around = F.max_pool2d(fg, 2 * reach + 1, stride=1, padding=reach) - fg
    patches = F.interpolate(
        rand(b, 1, max(2, h // 12), max(2, w // 12)), size=(h, w), mode="bicubic", align_corners=False
    )
    signal = around * (patches > 0.4).float() * patches
    r = torch.arange(-4, 5, device=fg.device, dtype=fg.dtype)
    kern = torch.exp(-0.5 * (r / 2.0) ** 2)
    kern = (kern / kern.sum()).view(1, 1, 1, 9)
    signal = F.conv2d(F.pad(signal, (4, 4, 0, 0), mode="reflect"), kern)
    signal = F.conv2d(F.pad(signal, (0, 0, 4, 4), mode="reflect"), kern.transpose(-1, -2)) * (1 - fg)
    on = (rand(b, 1, 1, 1) < 0.5).float()
    return signal * on * strength * (0.3 + 0.7 * rand(b, 1, 1, 1))
