"""Another tool's bioimage.io package in napari-unet's terms: its axes, the sizes it takes (and
the tile chosen from them), its pre-processing as a normalisation and its post-processing as an
activation and threshold; what has no equivalent is refused in one sentence. Reads only the
description, no file of the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.exchange._common import ExchangeError

__all__ = ["activation_of", "normalisation_of", "size_of", "tensor_axes", "tile_for"]


def tensor_axes(descr: Any, source: Path) -> tuple[list[str], list[str]]:
    """The input's and output's axes as napari-unet names them (``batch``, ``channel``, ``y``,
    ``x``); a package with several tensors or other axes (a 3D one) is refused."""
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise ExchangeError(
            f"{source}: the model takes {len(descr.inputs)} input(s) and gives {len(descr.outputs)} output(s); "
            "napari-unet runs models with one image in and one tensor out"
        )
    in_axes = [a.type if a.type in ("batch", "channel") else str(a.id) for a in descr.inputs[0].axes]
    out_axes = [a.type if a.type in ("batch", "channel") else str(a.id) for a in descr.outputs[0].axes]
    for axes, what in ((in_axes, "input"), (out_axes, "output")):
        extra = [a for a in axes if a not in ("batch", "channel", "y", "x")]
        if extra or "y" not in axes or "x" not in axes:
            raise ExchangeError(
                f"{source}: its {what} has axes {', '.join(axes)}; napari-unet runs 2D models (y, x, channel, batch)"
                + (" and 3D models are not supported yet" if "z" in extra else "")
            )
    return in_axes, out_axes


def size_of(axis: Any) -> tuple[int, int]:
    """``(min, step)`` of an input axis size (step 0: fixed)."""
    size = axis.size
    if isinstance(size, int):
        return size, 0
    if hasattr(size, "step"):
        return int(size.min), int(size.step)
    raise ExchangeError(f"its input axis {axis.id} takes a size napari-unet cannot choose ({type(size).__name__})")


def tile_for(minimum: int, step: int, target: int = 256) -> int:
    """The allowed size (``minimum + n step``) nearest our usual tile."""
    if step == 0:
        return int(minimum)
    n = max(0, round((target - minimum) / step))
    return int(minimum + n * step)


def normalisation_of(steps: list[Any], source: Path) -> dict:
    """A package's pre-processing as a napari-unet normalisation, or a refusal."""
    core = [p for p in steps if p.id != "ensure_dtype"]
    ids = [p.id for p in core]

    def per_channel(p: Any) -> None:
        axes = [str(a) for a in (p.kwargs.axes or ())]
        if "channel" in axes or not {"y", "x"} <= set(axes):
            raise ExchangeError(
                f"{source}: its {p.id} step scales over axes {axes or 'all'}; napari-unet scales each channel of a "
                "plane on its own (axes y, x)"
            )

    if not core:
        return {"kind": "none"}
    if ids == ["scale_range"] or ids == ["scale_range", "clip"]:
        p = core[0]
        per_channel(p)
        if p.kwargs.reference_tensor is not None or len(core) == 2:
            raise ExchangeError(
                f"{source}: its scale_range with clipping or a reference tensor has no napari-unet equivalent"
            )
        return {"kind": "percentile", "low": float(p.kwargs.min_percentile), "high": float(p.kwargs.max_percentile)}
    if ids == ["zero_mean_unit_variance"]:
        per_channel(core[0])
        return {"kind": "zscore"}
    if ids == ["fixed_zero_mean_unit_variance"]:
        k = core[0].kwargs
        mean = list(np.atleast_1d(np.asarray(k.mean, float)))
        std = list(np.atleast_1d(np.asarray(k.std, float)))
        return {"kind": "dataset", "mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    if ids in (["scale_linear"], ["scale_linear", "clip"]):
        k = core[0].kwargs
        gain, offset = np.atleast_1d(np.asarray(k.gain, float)), np.atleast_1d(np.asarray(k.offset, float))
        if len(set(gain.tolist())) > 1 or len(set(offset.tolist())) > 1 or gain[0] == 0:
            raise ExchangeError(
                f"{source}: its scale_linear differs per channel; napari-unet scales all channels alike"
            )
        lo = -offset[0] / gain[0]
        norm = {"kind": "range", "min": float(lo), "max": float(lo + 1 / gain[0])}
        if len(core) == 2:
            if (core[1].kwargs.min, core[1].kwargs.max) != (0.0, 1.0):
                raise ExchangeError(
                    f"{source}: its clip to {core[1].kwargs.min}-{core[1].kwargs.max} has no napari-unet equivalent"
                )
            norm["clip"] = True
        return norm
    raise ExchangeError(
        f"{source}: its pre-processing ({', '.join(ids)}) has no napari-unet equivalent; napari-unet maps "
        "scale_range, zero_mean_unit_variance, fixed_zero_mean_unit_variance and scale_linear (+ clip to 0-1)"
    )


def activation_of(out: Any, source: Path) -> tuple[str, float, bool]:
    """``(activation, threshold, already probabilities)`` from a package's post-processing."""
    steps = [p for p in out.postprocessing if p.id != "ensure_dtype"]
    ids = [p.id for p in steps]
    threshold = 0.5
    if ids and ids[-1] == "binarize" and isinstance(getattr(steps[-1].kwargs, "threshold", None), float):
        threshold = float(steps[-1].kwargs.threshold)
        ids = ids[:-1]
    if ids == ["sigmoid"]:
        return "sigmoid", threshold, False
    if ids == ["softmax"]:
        return "softmax", threshold, False
    if not ids:
        data = out.data if not isinstance(out.data, (list, tuple)) else out.data[0]
        rng = getattr(data, "range", (None, None))
        if rng and rng[0] is not None and rng[1] is not None and rng[0] >= 0 and rng[1] <= 1:
            return "sigmoid", threshold, True  # probabilities already: the network hands back their logits
        raise ExchangeError(
            f"{source}: its output is not declared as probabilities (no sigmoid or softmax step, no 0-1 range); "
            "napari-unet cannot threshold it"
        )
    raise ExchangeError(f"{source}: its post-processing ({', '.join(ids)}) has no napari-unet equivalent")
