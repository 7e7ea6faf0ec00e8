"""The memory layout the convolutions run fastest in, for planes and volumes alike (shared by
the engines and training)."""

from __future__ import annotations

from typing import Any

__all__ = ["channels_last"]


def channels_last(x: Any) -> Any:
    """A batch of planes ``(B, C, H, W)`` or volumes ``(B, C, D, H, W)`` (or a network, by
    its card's spatial dimensions) in the channels-last layout its convolutions run fastest in."""
    import torch

    dims = x.ndim - 2 if isinstance(x, torch.Tensor) else int(getattr(getattr(x, "card", None), "spatial_dims", 2))
    layout = torch.channels_last_3d if dims == 3 else torch.channels_last
    return x.contiguous(memory_format=layout) if isinstance(x, torch.Tensor) else x.to(memory_format=layout)
