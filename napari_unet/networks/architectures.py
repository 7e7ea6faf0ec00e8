"""The U-Net family behind one ``build_model(card)``, and BatchNorm folding for inference.

torch and MONAI are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from napari_unet.networks.model import ModelCard

__all__ = [
    "ARCHITECTURES",
    "PACKAGED",
    "arch_args_for",
    "build_model",
    "fuse_batchnorm",
    "network_spec",
    "size_divisor",
]

ARCHITECTURES = ("unet", "resunet", "attention_unet", "unetpp")


def arch_args_for(architecture: str, width: int = 16, depth: int = 5) -> dict:
    """Architecture arguments from two numbers a person can choose: the width of the first
    level (features double at each level down) and the number of levels.

    >>> arch_args_for("unet", 16, 4)
    {'features': [16, 32, 64, 128]}
    >>> arch_args_for("resunet", 8, 3)
    {'channels': [8, 16, 32]}
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    if not 1 <= int(width) <= 256:
        raise ValueError(f"width must be 1 to 256 features, got {width}")
    if not 2 <= int(depth) <= 7:
        raise ValueError(f"depth must be 2 to 7 levels, got {depth}")
    widths = [int(width) * 2**i for i in range(int(depth))]
    if architecture == "unet":
        return {"features": widths}
    if architecture in ("resunet", "attention_unet"):
        return {"channels": widths}
    # BasicUNetPlusPlus has five levels by construction: the depth cannot change
    if int(depth) != 5:
        raise ValueError("unetpp always has 5 levels; leave the depth at 5 (or choose another architecture)")
    return {"features": [*widths[:1], *widths[:4], int(width)]}


def size_divisor(architecture: str, arch_args: dict) -> int:
    """What every input side must be a multiple of (2 to the number of poolings).

    >>> size_divisor("unet", {"features": [16, 32, 64, 128, 256]})
    16
    """
    if architecture == "unet":
        return 2 ** (len(arch_args.get("features", (32, 64, 128, 256, 512))) - 1)
    if architecture in ("resunet", "attention_unet"):
        channels = arch_args.get("channels", (16, 32, 64, 128, 256))
        return 2 ** len(arch_args.get("strides", (2,) * (len(channels) - 1)))
    if architecture in PACKAGED:  # the imported network pads its input to a size it takes
        return 1
    return 16


#: weights imported from a bioimage.io package that napari-unet runs but cannot rebuild:
#: they predict, they are not fine-tuned
PACKAGED = ("torchscript", "onnx")


def network_spec(card: ModelCard) -> tuple[str, str, dict]:
    """``(module, callable, keyword arguments)`` that build a card's network: what
    :func:`build_model` calls, and what a bioimage.io package names as its architecture.

    >>> from napari_unet.networks.model import ModelCard
    >>> network_spec(ModelCard("m", arch_args={"features": [8, 16]}))
    ('napari_unet.networks.nets', 'UNet', {'in_channels': 1, 'out_channels': 1, 'features': [8, 16]})
    """
    args = dict(card.arch_args)
    io = {"in_channels": int(card.in_channels), "out_channels": card.out_channels}
    volumes = {"spatial_dims": 3} if card.spatial_dims == 3 else {}  # (2D: the arguments as before)
    if card.architecture == "unet":
        return (
            "napari_unet.networks.nets",
            "UNet",
            {**io, "features": list(args.pop("features", (32, 64, 128, 256, 512))), **volumes, **args},
        )
    if card.architecture in ("resunet", "attention_unet"):
        channels = list(args.pop("channels", (16, 32, 64, 128, 256)))
        strides = list(args.pop("strides", (2,) * (len(channels) - 1)))
        common = {"spatial_dims": card.spatial_dims, **io, "channels": channels, "strides": strides}
        if card.architecture == "resunet":
            return (
                "monai.networks.nets",
                "UNet",
                {**common, "num_res_units": args.pop("num_res_units", 2), "norm": "batch", **args},
            )
        return "monai.networks.nets", "AttentionUnet", {**common, **args}
    if card.architecture == "unetpp":
        features = list(args.pop("features", (32, 32, 64, 128, 256, 32)))
        return (
            "napari_unet.networks.nets",
            "UNetPlusPlus",
            {"spatial_dims": card.spatial_dims, **io, "features": features, **args},
        )
    raise ValueError(
        f"a {card.architecture} model came from a bioimage.io package as weights napari-unet cannot rebuild; "
        "it predicts, but cannot be trained or fine-tuned"
    )


def build_model(card: ModelCard) -> torch.nn.Module:
    """A freshly initialised network for a card, with ``.card`` and ``.size_divisor`` set.

    ``unet`` is the classic U-Net (:mod:`napari_unet.networks.nets`, so it can be fused, compiled
    and exported); ``resunet`` (MONAI ``UNet`` with residual units), ``attention_unet``
    (MONAI ``AttentionUnet``) and ``unetpp`` (MONAI ``BasicUNetPlusPlus``) come from MONAI.
    """
    import importlib

    module, name, kwargs = network_spec(card)
    net = getattr(importlib.import_module(module), name)(**kwargs)
    net.card = card
    net.size_divisor = size_divisor(card.architecture, card.arch_args)
    return net.eval()


def measure_receptive_field(net: torch.nn.Module, size: int = 256, samples: int = 4) -> dict:
    """How far a network looks, measured: the input pixels (voxels, for a 3D card's network)
    that reach the centre output pixel (the gradient of its outputs, summed over ``samples``
    random images, squares or cubes of ``size``, in fp32 on the CPU).

    Returns the radius that any gradient reaches (``theoretical_radius_px``) and the radii
    of the square around the centre that holds 95% and 99% of the gradient's magnitude
    (``radius_95_px``, ``radius_99_px``): a tile's overlap of about twice the 99% radius
    keeps its border's lack of context out of the blended masks.
    """
    import copy

    import numpy as np
    import torch

    probe = copy.deepcopy(net).float().eval().to("cpu")
    side = size - size % max(1, int(getattr(net, "size_divisor", 1)))
    dims = int(getattr(probe.card, "spatial_dims", 2))
    shape = (samples, int(probe.card.in_channels), *(side,) * dims)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    c = side // 2
    probe(x)[(slice(None), slice(None), *(c,) * dims)].sum().backward()  # in eval mode the samples do not mix
    g = x.grad.abs().sum((0, 1)).numpy()
    reached = np.argwhere(g > 0)
    total = float(g.sum())
    radii = {}
    for share in (0.95, 0.99):
        radii[share] = next((r for r in range(1, c) if g[(slice(c - r, c + r + 1),) * dims].sum() >= share * total), c)
    return {
        "theoretical_radius_px": int(max(c - reached.min(), reached.max() - c)) if len(reached) else 0,
        "radius_95_px": int(radii[0.95]),
        "radius_99_px": int(radii[0.99]),
        "measured_on": f"{samples} random {'x'.join([str(side)] * dims)} images, fp32, gradient of the centre pixel",
    }


def fuse_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every BatchNorm that directly follows a convolution into it (eval mode only; planes
    and volumes).

    Returns the same module, changed in place: the output is identical up to float
    rounding, and each fused block runs one op instead of two.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise ValueError("fuse_batchnorm needs a model in eval mode; call model.eval() first")
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (name_a, a), (name_b, b) in itertools.pairwise(children):
            pair = (nn.Conv2d, nn.BatchNorm2d) if isinstance(a, nn.Conv2d) else (nn.Conv3d, nn.BatchNorm3d)
            if isinstance(a, pair[0]) and isinstance(b, pair[1]) and b.track_running_stats:
                setattr(module, name_a, fuse_conv_bn_eval(a, b))
                setattr(module, name_b, nn.Identity())
    return model
