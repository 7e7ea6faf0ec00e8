"""The U-Net family behind one ``build_model(card)``, and BatchNorm folding for inference.

torch and MONAI are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from napari_unet.model import ModelCard

__all__ = ["ARCHITECTURES", "arch_args_for", "build_model", "fuse_batchnorm", "size_divisor"]

ARCHITECTURES = ("unet", "resunet", "attention_unet", "unetpp")


def _classic_unet_class() -> type:
    import torch
    from torch import nn

    class DoubleConv(nn.Sequential):
        def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
            layers: list[nn.Module] = [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            if dropout:
                layers.append(nn.Dropout2d(dropout))
            super().__init__(*layers)

    class UNet(nn.Module):
        """The classic U-Net: double 3x3 conv + BatchNorm + ReLU, max-pool down, skips concatenated.

        ``features`` sets the width of each level (its length - 1 = number of poolings);
        ``upsample`` is ``"transpose"`` (2x2 transposed conv) or ``"bilinear"`` (+ 1x1 conv).
        """

        def __init__(
            self,
            in_channels: int = 1,
            out_channels: int = 1,
            features: tuple[int, ...] = (32, 64, 128, 256, 512),
            upsample: str = "transpose",
            dropout: float = 0.0,
        ) -> None:
            super().__init__()
            if upsample not in ("transpose", "bilinear"):
                raise ValueError(f"upsample must be 'transpose' or 'bilinear', got {upsample!r}")
            features = tuple(int(f) for f in features)
            self.down = nn.ModuleList()
            cin = in_channels
            for i, f in enumerate(features):
                self.down.append(DoubleConv(cin, f, dropout if i == len(features) - 1 else 0.0))
                cin = f
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            for f_low, f in zip(features[::-1][:-1], features[::-1][1:]):
                if upsample == "transpose":
                    self.up.append(nn.ConvTranspose2d(f_low, f, 2, stride=2))
                else:
                    self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(f_low, f, 1)))
                self.dec.append(DoubleConv(2 * f, f))
            self.head = nn.Conv2d(features[0], out_channels, 1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for i, block in enumerate(self.down):
                x = block(x if i == 0 else self.pool(x))
                skips.append(x)
            skips.pop()
            for up, dec in zip(self.up, self.dec):
                x = dec(torch.cat([up(x), skips.pop()], dim=1))
            return self.head(x)

    return UNet


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
    return 16


def build_model(card: ModelCard) -> torch.nn.Module:
    """A freshly initialised network for a card, with ``.card`` and ``.size_divisor`` set.

    ``unet`` is the classic U-Net (written here so it can be fused and compiled);
    ``resunet`` (MONAI ``UNet`` with residual units), ``attention_unet`` (MONAI
    ``AttentionUnet``) and ``unetpp`` (MONAI ``BasicUNetPlusPlus``) come from MONAI.
    """
    args = dict(card.arch_args)
    cin, cout = int(card.in_channels), card.out_channels
    if card.architecture == "unet":
        features = tuple(args.pop("features", (32, 64, 128, 256, 512)))
        net = _classic_unet_class()(cin, cout, features=features, **args)
        divisor = 2 ** (len(features) - 1)
    elif card.architecture == "resunet":
        from monai.networks.nets import UNet as MonaiUNet

        channels = tuple(args.pop("channels", (16, 32, 64, 128, 256)))
        strides = tuple(args.pop("strides", (2,) * (len(channels) - 1)))
        net = MonaiUNet(
            2,
            cin,
            cout,
            channels=channels,
            strides=strides,
            num_res_units=args.pop("num_res_units", 2),
            norm="batch",
            **args,
        )
        divisor = 2 ** len(strides)
    elif card.architecture == "attention_unet":
        from monai.networks.nets import AttentionUnet

        channels = tuple(args.pop("channels", (16, 32, 64, 128, 256)))
        strides = tuple(args.pop("strides", (2,) * (len(channels) - 1)))
        net = AttentionUnet(2, cin, cout, channels=channels, strides=strides, **args)
        divisor = 2 ** len(strides)
    else:  # unetpp
        from monai.networks.nets import BasicUNetPlusPlus

        features = tuple(args.pop("features", (32, 32, 64, 128, 256, 32)))
        inner = BasicUNetPlusPlus(2, cin, cout, features=features, **args)
        net = _FirstOutput(inner)
        divisor = 16
    net.card = card
    net.size_divisor = divisor
    return net.eval()


def _FirstOutput(inner: Any) -> Any:
    """UNet++ returns a list of (deep-supervision) outputs; keep the final one."""
    from torch import nn

    class FirstOutput(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.net = module

        def forward(self, x: Any) -> Any:
            return self.net(x)[0]

    return FirstOutput(inner)


def fuse_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every BatchNorm that directly follows a Conv2d into the conv (eval mode only).

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
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.track_running_stats:
                setattr(module, name_a, fuse_conv_bn_eval(a, b))
                setattr(module, name_b, nn.Identity())
    return model
