"""The networks napari-unet writes itself, in a file that needs nothing but torch (and MONAI
for UNet++), so that a bioimage.io package can carry it as its architecture's source and
run without napari-unet installed.

Import it only where a network is built: it imports torch at the top.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PadToMultiple", "UNet", "UNetPlusPlus", "padded"]


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
    The output is logits, one channel per class.
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
        if torch.is_grad_enabled():
            for up, dec in zip(self.up, self.dec):
                x = dec(torch.cat([up(x), skips.pop()], dim=1))
            return self.head(x)
        # Without autograd, the decoder's first conv runs as two convs over the two halves of its
        # input, summed in place: the same result (up to float rounding) without the
        # concatenated copy. At full resolution the upsampled, skip and concatenated tensors
        # were the forward pass's peak; this cuts the working memory of a tile by about a
        # quarter (752^2 in bf16: 122 -> 92 MiB).
        for up, dec in zip(self.up, self.dec):
            skip = skips.pop()
            first, width = dec[0], skip.shape[1]
            y = F.conv2d(skip, first.weight[:, width:], first.bias, padding=first.padding)
            del skip  # (the list held the only other reference)
            upsampled = up(x)
            del x
            y += F.conv2d(upsampled, first.weight[:, :width], None, padding=first.padding)
            del upsampled
            x = y
            del y
            for layer in list(dec)[1:]:
                x = layer(x)
        return self.head(x)


class UNetPlusPlus(nn.Module):
    """MONAI's ``BasicUNetPlusPlus`` giving only its final output (it returns a list of
    deep-supervision outputs)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNetPlusPlus

        self.net = BasicUNetPlusPlus(**kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


class PadToMultiple(nn.Module):
    """``net`` on any image size: the input mirrored out (reflected, as napari-unet's tiling
    pads; edge-repeated where the image is smaller than the padding) to the next multiple of
    ``multiple`` along y and x, and the output cropped back to the input's size.

    A bioimage.io consumer that passes an image as it is (bioimageio.core's ``predict`` does)
    then gets the right answer at 768x869 as at 512x512. Its state dict is ``net``'s own.
    """

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        if int(multiple) < 1:
            raise ValueError(f"multiple must be a positive number of pixels, got {multiple}")
        self.net = net
        self.multiple = int(multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        pad_y = (self.multiple - h % self.multiple) % self.multiple
        pad_x = (self.multiple - w % self.multiple) % self.multiple
        if pad_y < h and pad_x < w:
            x = F.pad(x, [0, pad_x, 0, pad_y], mode="reflect")
        else:
            x = F.pad(x, [0, pad_x, 0, pad_y], mode="replicate")
        return self.net(x)[..., :h, :w]

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)


def padded(network: str, multiple: int, **kwargs: object) -> PadToMultiple:
    """A bioimage.io package's architecture: the network ``network`` (``UNet`` or
    ``UNetPlusPlus`` of this file, or ``monai.NAME`` from ``monai.networks.nets``) built
    with ``kwargs``, taking any image size (:class:`PadToMultiple`)."""
    if network.startswith("monai."):
        from monai.networks import nets as monai_nets

        net = getattr(monai_nets, network.removeprefix("monai."))(**kwargs)
    elif network in ("UNet", "UNetPlusPlus"):
        net = globals()[network](**kwargs)
    else:
        raise ValueError(f"network must be UNet, UNetPlusPlus or monai.NAME, got {network!r}")
    return PadToMultiple(net, multiple)
