"""The torch side of prediction: device, precision, a prepared network, and the tiles engine.

The tile engine is :mod:`napari_unet.engine.tiling` (numpy only); this module wraps a torch
model in a predictor for it (BatchNorm folded, channels_last, autocast, pinned copies on
CUDA, optional ``torch.compile``) and picks the device and precision. The public
:func:`napari_unet.predict` is :mod:`napari_unet.engine.predict`. Turning probabilities into
objects is not done here: that is :func:`napari_unet.segment`'s job, for every caller.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.engine.layout import channels_last
from napari_unet.engine.process import cudnn_benchmark, tune_cpu_allocator, use_all_cores
from napari_unet.engine.tiling import Predictor, tiled_predict_iter
from napari_unet.jobs import Progress
from napari_unet.objects.settings import PRECISIONS

if TYPE_CHECKING:
    import torch

__all__ = [
    "available_devices",
    "check_device",
    "dihedral_mean",
    "pick_device",
    "prepare_model",
    "resolve_precision",
    "tiles_iter",
    "torch_predictor",
]

# --------------------------------------------------------------------------- torch side


def check_device(device: str) -> None:
    """Refuse, in one sentence, a device that is unknown or absent here (``auto`` always
    passes): a command checks its ``--device`` with this before any file is read."""
    import torch

    name = str(device).lower()
    if name == "auto":
        return
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but no CUDA GPU is available here; use --device auto or cpu")
    if name == "mps" and not bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but Apple's MPS is not available here; use --device auto or cpu")
    if not (name == "cpu" or name.startswith("cuda") or name == "mps"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. An explicit device that is absent is an error
    (:func:`check_device`). A run resolves its device once, here (:func:`napari_unet.engine.run.resolve_run`)."""
    import torch

    check_device(device)
    if str(device).lower() != "auto":
        return torch.device(str(device).lower())
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_devices() -> list[str]:
    """Devices present on this machine, for a GUI choice: ``auto`` and ``cpu`` always."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def cpu_has_fast_bf16() -> bool:
    """True where the CPU runs bf16 convolutions natively (AMX or AVX512-BF16)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA with bf16 support (else fp16); bf16 on a CPU with native bf16
    (AMX or AVX512-BF16); fp32 elsewhere.

    bf16 is the CPU default only because its masks matched fp32's on real images: mask Dice
    0.9998 on 20 slices and a 4096^2 image cut from the sample nuclei, at 2.2-2.4x MONAI's
    fp32 throughput (benchmarks/bench_predict.py). ``fp32`` matches MONAI within 1e-4.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def prepare_model(
    model: torch.nn.Module, device: torch.device, precision: str, compile: bool = False, tta: bool = False
) -> torch.nn.Module:
    """An inference copy of ``model``: BatchNorm folded, on ``device``, channels_last; cached.

    With ``tta``, the copy averages its logits over the 8 flips and quarter turns of each
    tile (:func:`dihedral_mean`): 8x the work.

    With ``compile``, the copy is also compiled by ``torch.compile`` (inductor, frozen
    weights). On this project's 2-core CPU it ran 1.00-1.18x as fast as the fused eager
    network in different measurements (1.04-1.10x at the card's tile in the latest), after a
    first call of 13-37 s per tile shape (and the chosen tile differs between image
    shapes): it can pay only for long batch jobs of one shape, if at all.
    """
    import copy

    import torch

    from napari_unet.networks.architectures import fuse_batchnorm

    cache = model.__dict__.setdefault("_napari_unet_prepared", {})
    key = (str(device), precision, compile, tta)
    if key not in cache:
        cache.clear()
        net = fuse_batchnorm(copy.deepcopy(model).eval())
        net = net.to(device)
        if device.type in ("cpu", "cuda"):
            net = channels_last(net)
        if tta:
            net = dihedral_mean(net)
        if compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            net = torch.compile(net, dynamic=False)
        cache[key] = net
    return cache[key]


def check_tta_allowed(card: Any) -> None:
    """Refuse test-time augmentation, saying why, for a model trained without flips: where
    left and right differ, a mirrored left lung is the right lung."""
    if not card.flips:
        raise ValueError(
            f"model {card.name!r} was trained without flips (left and right differ): test-time augmentation "
            "would mirror its classes; predict without it"
        )


def dihedral_mean(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` run on the 8 flips and quarter turns of its input, each output turned back,
    and the logits averaged (test-time augmentation). Refused for a model whose card says
    left and right differ (``flips=False``): a mirrored lung would be the other lung. The
    flips and turns are in-plane (the last two axes), so a 3D network's volumes get them too."""
    import torch

    card = getattr(net, "card", None)
    if card is not None:
        check_tta_allowed(card)

    class DihedralMean(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.card = card
            self.size_divisor = getattr(net, "size_divisor", 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            total = None
            for mirror in (False, True):
                seen = x.flip(-1) if mirror else x
                for k in range(4):
                    y = self.net(channels_last(torch.rot90(seen, k, dims=(-2, -1))))
                    y = torch.rot90(y.float(), -k, dims=(-2, -1))
                    y = y.flip(-1) if mirror else y
                    total = y if total is None else total + y
            return total / 8

    return DihedralMean()


def torch_predictor(
    model: torch.nn.Module,
    device: torch.device,
    precision: str,
    activation: str,
    compile: bool = False,
    batch_size: int = 0,
    tta: bool = False,
) -> Predictor:
    """A numpy-in, numpy-out predictor around a torch model (autocast, channels_last, pinned copies).

    A compiled network always gets full batches (the last one is padded), so it compiles once.
    """
    import torch

    net = prepare_model(model, device, precision, compile, tta)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    pin = device.type == "cuda"

    def run(batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if compile and n < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)])
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if pin:
            x = x.pin_memory()
        x = channels_last(x.to(device, non_blocking=pin))
        with torch.inference_mode():
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                y = net(x)
            y = y.float()  # (the network's own output, or its float32 copy: a fresh tensor either way)
            y = torch.softmax(y, dim=1) if activation == "softmax" else y.sigmoid_()
        return y[:n].cpu().numpy()

    return run


def tiles_iter(
    model: torch.nn.Module, run: Any, *, out: Any = None, normalise: bool = True
) -> Generator[Progress, None, Any]:
    """The ``tiles`` and ``device`` engines of a resolved :class:`~napari_unet.engine.run.Run`:
    the host tiling of :mod:`napari_unet.engine.tiling` around a torch predictor, or each plane
    kept on the GPU (:mod:`napari_unet.engine.device`). On CUDA, an out-of-memory error
    retries with half the batch size, then half the tile."""
    import torch

    card, s = model.card, run.settings
    tile, batch_size = int(s.tile), int(s.batch)
    if run.device.type == "cpu":
        use_all_cores()
        tune_cpu_allocator()
    elif run.engine == "device":  # every tile has one shape: let cuDNN pick its fastest convolutions once
        cudnn_benchmark()
    if normalise:  # (training data comes scaled, and a held-out plane may be empty)
        _check_not_constant(run.image)
    options = {"out_channels": card.out_channels, "axes": run.axes, "in_channels": card.in_channels,
               "overlap": float(s.overlap), "size_divisor": getattr(model, "size_divisor", 16),
               "normalisation": card.normalisation if normalise else None, "out": out,
               "spatial_dims": card.spatial_dims}  # fmt: skip
    while True:
        try:
            if run.engine == "device":
                from napari_unet.engine.device import device_tiled_iter

                net = prepare_model(model, run.device, s.precision, tta=s.tta)
                return (yield from device_tiled_iter(run.image, net, run.device, s.precision, card.activation,
                                                     tile=tile, batch_size=batch_size, **options))  # fmt: skip
            predictor = torch_predictor(model, run.device, s.precision, card.activation, s.compile, batch_size, s.tta)
            return (yield from tiled_predict_iter(run.image, predictor, tile=tile, batch_size=batch_size, **options))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch_size > 1:
                batch_size //= 2
            elif tile > 64:
                tile //= 2
            else:
                raise
            warnings.warn(f"GPU out of memory; retrying with batch {batch_size}, tile {tile}", stacklevel=2)


def _check_not_constant(image: Any) -> None:
    if isinstance(image, np.ndarray) and image.size and image.dtype.kind in "iuf":
        first = image.flat[0]
        if np.all(image == first):
            raise ValueError(f"the image is constant (every pixel is {first}); there is nothing to segment")
