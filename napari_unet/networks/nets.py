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


def _layers(spatial_dims: int) -> tuple:
    """``(Conv, BatchNorm, MaxPool, ConvTranspose, Dropout)`` for planes (2) or volumes (3)."""
    if spatial_dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ConvTranspose2d, nn.Dropout2d
    if spatial_dims == 3:
        return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d, nn.Dropout3d
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, dropout: float = 0.0, spatial_dims: int = 2) -> None:
        conv, norm, _, _, drop = _layers(spatial_dims)
        layers: list[nn.Module] = [
            conv(cin, cout, 3, padding=1, bias=False),
            norm(cout),
            nn.ReLU(inplace=True),
            conv(cout, cout, 3, padding=1, bias=False),
            norm(cout),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(drop(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """The classic U-Net: double 3x3 conv + BatchNorm + ReLU, max-pool down, skips concatenated.

    ``features`` sets the width of each level (its length - 1 = number of poolings);
    ``upsample`` is ``"transpose"`` (2x2 transposed conv) or ``"bilinear"`` (+ 1x1 conv).
    ``spatial_dims`` 3 makes the same network of volumes (3x3x3 convolutions, 2x2x2
    pooling). The output is logits, one channel per class.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        features: tuple[int, ...] = (32, 64, 128, 256, 512),
        upsample: str = "transpose",
        dropout: float = 0.0,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if upsample not in ("transpose", "bilinear"):
            raise ValueError(f"upsample must be 'transpose' or 'bilinear', got {upsample!r}")
        conv, _, pool, transpose, _ = _layers(spatial_dims)
        self.spatial_dims = spatial_dims
        features = tuple(int(f) for f in features)
        self.down = nn.ModuleList()
        cin = in_channels
        for i, f in enumerate(features):
            self.down.append(DoubleConv(cin, f, dropout if i == len(features) - 1 else 0.0, spatial_dims))
            cin = f
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        for f_low, f in zip(features[::-1][:-1], features[::-1][1:]):
            if upsample == "transpose":
                self.up.append(transpose(f_low, f, 2, stride=2))
            else:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode=mode), conv(f_low, f, 1)))
            self.dec.append(DoubleConv(2 * f, f, spatial_dims=spatial_dims))
        self.head = conv(features[0], out_channels, 1)
        self.pool = pool(2)

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
            convolve = F.conv2d if self.spatial_dims == 2 else F.conv3d
            y = convolve(skip, first.weight[:, width:], first.bias, padding=first.padding)
            del skip  # (the list held the only other reference)
            upsampled = up(x)
            del x
            y += convolve(upsampled, first.weight[:, :width], None, padding=first.padding)
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
