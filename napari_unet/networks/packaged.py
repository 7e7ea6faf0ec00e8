"""An imported package's torchscript or ONNX weights, run as a torch module inside our pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.networks.card import ModelLoadError

if TYPE_CHECKING:
    import torch

    from napari_unet.networks.model import ModelCard


#: what the person is told about TorchScript, in the CLI and in a refusal
TRUST_HINT = (
    "TorchScript is a program that runs whatever its author wrote when it predicts (files and network "
    "included); import it with --trust (in the dock: tick 'run its TorchScript') only if you trust where the "
    "package came from"
)


def packaged_network(path: Path, card: ModelCard) -> torch.nn.Module:
    """The network of an imported package (torchscript or ONNX), as a torch module that
    takes ``(B, C, H, W)`` and gives logits like ours: it pads the input to a size the package
    takes, puts the axes in the package's order, and crops the output back."""
    import torch
    from torch import nn

    weights = Path(path).parent / card.arch_args["file"]
    if not weights.is_file():
        raise ModelLoadError(f"{weights}: the imported package's weights are missing; import the package again")
    if card.architecture == "torchscript" and not card.training.get("trusted"):
        raise ModelLoadError(
            f"{card.name}: its TorchScript weights were imported without --trust, so napari-unet does not run them. "
            f"{TRUST_HINT}"
        )
    args = card.arch_args
    in_axes, out_axes = list(args["input_axes"]), list(args["output_axes"])
    sizes = {a: (int(v[0]), int(v[1])) for a, v in args["size"].items()}
    probabilities = bool(card.training.get("output_is_probability"))
    canonical = ("batch", "channel", "y", "x")

    def fit(n: int, axis: str) -> int:
        lo, step = sizes[axis]
        if step == 0:
            if n > lo:
                raise ValueError(f"the imported model takes {lo}-pixel tiles at most; set the tile to {lo}")
            return lo
        return lo + max(0, -(-(n - lo) // step)) * step

    class Packaged(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.session = None
            if card.architecture == "torchscript":
                self.net = torch.jit.load(str(weights), map_location="cpu").eval()
            else:
                self.net = None
                self.session = onnx_session(weights)

        def __deepcopy__(self, memo: dict) -> Packaged:  # an ONNX session cannot be copied: open the file again
            twin = Packaged()
            twin.card, twin.size_divisor = self.card, self.size_divisor
            return twin.train(self.training)

        def _run(self, t: torch.Tensor) -> torch.Tensor:
            if self.session is None:
                return self.net(t)
            feed = {self.session.get_inputs()[0].name: t.detach().cpu().numpy()}
            return torch.from_numpy(np.ascontiguousarray(self.session.run(None, feed)[0])).to(t.device)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            th, tw = fit(h, "y"), fit(w, "x")
            x = x.float()
            if (th, tw) != (h, w):
                mode = "reflect" if th - h < h and tw - w < w else "replicate"
                x = torch.nn.functional.pad(x, (0, tw - w, 0, th - h), mode=mode)
            samples = [x] if "batch" in in_axes else [x[i : i + 1] for i in range(x.shape[0])]
            results = []
            for t in samples:
                if "batch" not in in_axes:
                    t = t[0]
                if "channel" not in in_axes:
                    t = t[:, 0] if "batch" in in_axes else t[0]
                have = [a for a in canonical if a in in_axes]
                y = self._run(t.permute(*[have.index(a) for a in in_axes]).contiguous())
                y = y.permute(*[out_axes.index(a) for a in canonical if a in out_axes])
                if "channel" not in out_axes:
                    y = y.unsqueeze(1 if "batch" in out_axes else 0)
                results.append(y if "batch" in out_axes else y.unsqueeze(0))
            y = torch.cat(results)[..., :h, :w].float()
            return torch.logit(y.clamp(1e-7, 1 - 1e-7)) if probabilities else y

    net = Packaged()
    net.card = card
    net.size_divisor = 1
    return net.eval()


#: onnxruntime's log level: 3 = errors only (its warnings about unused initializers and the like)
_ORT_ERRORS_ONLY = 3


def onnx_session(path: Path) -> Any:
    """An onnxruntime session on the CPU that reports errors only."""
    import onnxruntime as ort

    ort.set_default_logger_severity(_ORT_ERRORS_ONLY)
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_ERRORS_ONLY
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
