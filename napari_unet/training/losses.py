"""Segmentation losses computed only inside the checked (annotated) region. torch is
imported inside the function, so importing this module is cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["LOSSES", "masked_loss"]

LOSSES = ("dice_ce", "dice", "ce", "focal", "dice_focal")


def masked_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    activation: str = "sigmoid",
    *,
    loss: str = "dice_ce",
    class_weights: Any = None,
) -> torch.Tensor:
    """A segmentation loss computed only where ``mask`` is 1; zero weight elsewhere.

    ``logits`` and ``target`` are ``(B, K, *spatial)`` (planes ``H, W`` or volumes
    ``D, H, W``: the card's spatial dimensions); ``mask`` is ``(B, 1, *spatial)``. A target
    of NaN means "not known" (an output the item has no annotation for, e.g. micronuclei):
    that output is left alone at those pixels.
    ``loss`` names the terms: ``dice``, ``ce`` (cross-entropy), ``focal`` (cross-entropy
    weighted by ``(1 - p)**2``, which follows the hard pixels) or a sum of two. For a
    softmax model the Dice term averages the foreground classes (not the background, which
    would drown a lesion of 0.1% of the image); ``class_weights`` weigh each output class
    in the cross-entropy or focal term.
    """
    import torch
    import torch.nn.functional as F

    logits = logits.float()
    m = mask.float()
    over = (0, *range(2, logits.ndim))  # the batch and every spatial axis: one Dice per class
    unknown = torch.isnan(target)
    if bool(unknown.any()):  # a mask per output: (B, K, H, W)
        m = m * ~unknown
        target = torch.nan_to_num(target, nan=0.0)
    n = m.sum().clamp_min(1.0)
    weights = (
        None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32, device=logits.device)
    )
    total = logits.new_zeros(())
    if activation == "softmax":
        prob = torch.softmax(logits, 1)
        classes = target.argmax(1)
        if "ce" in loss or "focal" in loss:
            ce = F.cross_entropy(logits, classes, weight=weights, reduction="none")[:, None]
            if "focal" in loss:
                p_true = prob.gather(1, classes[:, None])
                ce = ce * (1 - p_true) ** 2
            total = total + (ce * m).sum() / n
    else:
        prob = torch.sigmoid(logits)
        if "ce" in loss or "focal" in loss:
            ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            if "focal" in loss:
                p_true = prob * target + (1 - prob) * (1 - target)
                ce = ce * (1 - p_true) ** 2
            if weights is not None:
                ce = ce * weights.view(1, -1, *(1,) * (logits.ndim - 2))
            total = total + (ce * m).sum() / (n * ce.shape[1] if m.shape[1] == 1 else n)
    if "dice" in loss:
        inter = (prob * target * m).sum(over)
        denom = ((prob + target) * m).sum(over)
        dice = (2 * inter + 1.0) / (denom + 1.0)
        if activation == "softmax" and dice.shape[0] > 1:
            dice = dice[1:]
        elif m.shape[1] > 1:  # outputs not known anywhere in the batch have no Dice to learn from
            dice = dice[m.sum(over) > 0]
        if dice.numel():
            total = total + 1 - dice.mean()
    return total
