"""Export: a napari-unet model as a bioimage.io model package, checked by bioimageio.core."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.exchange._common import ExchangeError, _first_line, _need_bioimageio
from napari_unet.exchange.description import _is_shipped, package_description
from napari_unet.exchange.documentation import _documentation

if TYPE_CHECKING:
    import torch

    from napari_unet.networks.model import ModelCard


WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")


@dataclass
class ExportResult:
    path: Path
    weights: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # weight format -> why it is missing
    example: str = ""  # what the test tensors were cut from
    notes: list[str] = field(default_factory=list)
    test: str = ""  # bioimageio.core's verdict on the written package


# --------------------------------------------------------------------------- the example


def _example_plane(card: ModelCard, image: Any = None) -> tuple[np.ndarray, str]:
    """One plane as the network takes it, ``(in_channels, H, W)`` float32 in the image's own
    units (not normalised): from ``image`` (a path or an array), else a shipped sample that
    fits the model."""
    from napari_unet.engine.planes import plane_layout, read_plane, select_channels, with_context

    if image is None:
        if card.image_channels == 1 and card.normalisation.get("kind") == "window":
            key = "ct"
        elif card.image_channels == 1 and not card.channels:
            key = "rpe1"
        elif card.image_channels == 3 and not card.context:
            from napari_unet._synthetic import he_tile

            return np.moveaxis(he_tile(7, 512)[0], -1, 0).astype(np.float32), "a synthetic H&E tile (napari-unet)"
        else:
            raise ExchangeError(
                f"the test tensors need an example image with the model's {card.image_channels} channel(s); "
                "give one with --image"
            )
        from napari_unet._sample_data import sample_paths

        image = sample_paths(key)[0]
    description = str(image) if isinstance(image, (str, os.PathLike)) else "the given array"
    if isinstance(image, (str, os.PathLike)):
        from napari_unet.io import read_image

        read = read_image(image, lazy=False)
        data, axes = read.data, read.axes
    else:
        data, axes = np.asarray(image), None
    data, axes = select_channels(data, axes, card.channels, card.image_channels)
    data, axes = with_context(data, axes, card.context)
    layout = plane_layout(tuple(data.shape), axes, card.in_channels)
    middle = layout.n_planes // 2
    plane = read_plane(np.asarray(data), layout, middle, card.in_channels)
    if layout.n_planes > 1:
        description += f", plane {middle}"
    return plane, description


def _test_size(card: ModelCard, divisor: int, halo: int) -> tuple[int, int]:
    """``(min, size)``: the smallest tile the package allows (a multiple of ``divisor``
    with room for the halo) and the side of the test tensor (the card's tile)."""
    smallest = divisor * -(-(2 * halo + divisor) // divisor)
    return smallest, max(smallest, divisor * (int(card.tile) // divisor))


def _crop_or_resize(plane: np.ndarray, card: ModelCard, side: int) -> np.ndarray:
    """The test input: the whole plane resized for a whole-image model, else a centred crop
    of ``side`` (the plane mirrored out to it when it is smaller)."""
    if card.input_size:
        from napari_unet.engine.whole_image import resize_planes

        return resize_planes(plane, (card.input_size, card.input_size))
    h, w = plane.shape[-2:]
    if h < side or w < side:
        plane = np.pad(plane, ((0, 0), (0, max(0, side - h)), (0, max(0, side - w))), mode="reflect")
        h, w = plane.shape[-2:]
    y, x = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(plane[:, y : y + side, x : x + side], np.float32)


def _reference_output(net: torch.nn.Module, card: ModelCard, x: np.ndarray) -> np.ndarray:
    """What napari-unet computes for one input ``(C, H, W)``: its normalisation, the network,
    the activation, as ``(1, classes, H, W)`` float32."""
    import torch

    from napari_unet.engine.planes import normalise_plane

    scaled = normalise_plane(x, card.normalisation)
    with torch.no_grad():
        logits = net(torch.from_numpy(np.ascontiguousarray(scaled[None])))
        prob = torch.softmax(logits, 1) if card.activation == "softmax" else torch.sigmoid(logits)
    return prob.numpy().astype(np.float32)


# --------------------------------------------------------------------------- export


def export_package(
    model: Any,
    out: str | os.PathLike,
    *,
    image: Any = None,
    authors: list[str] | None = None,
    licence: str | None = None,
    formats: tuple[str, ...] = WEIGHT_FORMATS,
    test: bool = True,
) -> ExportResult:
    """Write ``model`` (a registered name, a file or a loaded network) as a bioimage.io
    model package ``out`` (a ``.zip``).

    ``image`` (a path or an array) gives the test tensors and the cover; by default a shipped
    sample that fits the model. ``test`` runs bioimageio.core's own test on the written
    package (every weight format against the test tensors).
    """
    _need_bioimageio()

    from napari_unet import __version__
    from napari_unet.networks.model import load_model

    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise ExchangeError(f"{out}: a bioimage.io package is a .zip file; give a name ending in .zip")
    if not out.parent.is_dir():
        raise ExchangeError(f"{out.parent}: no such folder; create it or choose another place for the package")
    if not os.access(out.parent, os.W_OK):
        raise ExchangeError(f"{out.parent}: no permission to write here; choose another folder")
    unknown = [f for f in formats if f not in WEIGHT_FORMATS]
    if unknown or "pytorch_state_dict" not in formats:
        raise ExchangeError(f"weight formats are pytorch_state_dict (always) plus torchscript and onnx, got {formats}")
    net = model if hasattr(model, "card") and hasattr(model, "forward") else load_model(model)
    card = net.card
    if card.architecture not in ("unet", "resunet", "attention_unet", "unetpp"):
        raise ExchangeError(
            f"{card.name} came from a bioimage.io package as {card.architecture} weights; export the original package"
        )
    import copy

    net = copy.deepcopy(net).float().eval().to("cpu")  # the caller's network stays where it is
    result = ExportResult(out, [])
    from napari_unet.networks.architectures import size_divisor

    divisor = size_divisor(card.architecture, card.arch_args)
    from napari_unet.engine.tile_choice import context_overlap

    halo = 0 if card.input_size else context_overlap(card) // 2  # half what neighbouring tiles share
    smallest, side = _test_size(card, divisor, halo)
    plane, result.example = _example_plane(card, image)
    if image is None and not _is_shipped(card):
        result.notes.append(
            f"the test tensors and the cover come from {result.example}; give --image for a picture of your own images"
        )
    x = _crop_or_resize(plane, card, card.input_size or side)
    y = _reference_output(net, card, x)

    with tempfile.TemporaryDirectory(prefix="napari-unet-export-") as tmp:
        work = Path(tmp)
        np.save(work / "test_input.npy", x[None])
        np.save(work / "test_output.npy", y)
        import tifffile

        tifffile.imwrite(work / "sample_input.tif", x[None])
        tifffile.imwrite(work / "sample_output.tif", y)
        _cover(net, card, x, work / "cover.png")
        weights = _weights(net, card, x, work, formats, result, divisor)
        (work / "README.md").write_text(_documentation(card, result, halo, __version__))
        descr = package_description(card, work, weights, halo, smallest, divisor, authors, licence, __version__)
        from bioimageio.spec import save_bioimageio_package

        partial = out.with_name(f".{out.name}.partial")
        try:
            save_bioimageio_package(descr, output_path=partial)
            os.replace(partial, out)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ExchangeError(f"{out}: the package could not be written ({exc.strerror or exc})") from exc
        finally:
            partial.unlink(missing_ok=True)
    result.weights = [f for f in WEIGHT_FORMATS if f in weights]
    if card.input_size:
        result.notes.append(
            f"this model sees whole images resized to {card.input_size}x{card.input_size}; the package takes "
            "exactly that size, so resize an image to it before running the package elsewhere"
        )
    if test:
        result.test = check_package(out)
    return result


def check_package(path: str | os.PathLike) -> str:
    """bioimageio.core's own test of a package (each weight format on its test tensors);
    returns ``"passed"`` or raises :class:`ExchangeError` with the first failure."""
    _need_bioimageio()
    from bioimageio.core import test_model

    summary = test_model(str(path))
    if summary.status != "passed":
        failed = next((d for d in summary.details if d.status == "failed"), None)
        what = "its description" if failed is None else failed.name
        why = failed.errors[0].msg if failed is not None and failed.errors else summary.status
        why = " ".join(str(why).split())[:300]  # its messages run over several lines
        raise ExchangeError(f"{path}: bioimage.io's own test failed ({what}: {why}); the package is left for a look")
    return "passed"


def _cover(net: Any, card: ModelCard, x: np.ndarray, path: Path) -> None:
    """The test input beside its prediction's outlines (a 2:1 picture, as bioimage.io asks)."""
    from napari_unet.objects.pipeline import segment
    from napari_unet.objects.report import display_plane, overlay, write_overlay

    result = segment(net, x, axes="CYX", settings=None)
    seen = display_plane(x[: min(3, x.shape[0])] if not card.context else x[card.context : card.context + 1])
    picture = np.concatenate([seen, overlay(seen, result.labels if result.labels is not None else result.mask)], 1)
    write_overlay(path, picture)


def _weights(
    net: Any, card: ModelCard, x: np.ndarray, work: Path, formats: tuple[str, ...], result: ExportResult, divisor: int
) -> dict:
    """Each weight file written: ``{format: path}``; a format torch cannot export is left
    out, with the reason in ``result.skipped``. The TorchScript and ONNX networks pad any
    image to a multiple of ``divisor`` and crop back (:class:`napari_unet.networks.nets.PadToMultiple`),
    as the state dict's architecture does, so a consumer may pass an image of any size."""
    import torch

    from napari_unet.networks.nets import PadToMultiple

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    written = {"pytorch_state_dict": work / "weights.pt"}
    torch.save(state, written["pytorch_state_dict"])
    example = torch.from_numpy(x[None].copy())
    if "torchscript" in formats:
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # (a user reads them as faults)
                traced = torch.jit.trace(net, example, check_trace=False)
            # the padding is scripted, not traced, so that its sizes follow the input
            torch.jit.script(PadToMultiple(traced, divisor)).save(str(work / "weights.torchscript"))
            written["torchscript"] = work / "weights.torchscript"
        except Exception as exc:  # tracing a network can fail in many ways; the package stays valid without it
            result.skipped["torchscript"] = _first_line(exc)
    if "onnx" in formats:
        try:
            import onnx  # noqa: F401

            axes = {0: "batch", 2: "y", 3: "x"}
            with torch.no_grad(), warnings.catch_warnings():
                # the padding's choice of mode is traced as a constant, as meant: its warning is noise
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.onnx.export(
                    PadToMultiple(net, divisor), (example,), str(work / "weights.onnx"), input_names=["input"], output_names=["output"],
                    dynamic_axes={"input": axes, "output": axes}, opset_version=17, dynamo=False,
                )  # fmt: skip
            written["onnx"] = work / "weights.onnx"
        except ImportError:
            result.skipped["onnx"] = "the onnx package is not installed (pip install onnx)"
        except Exception as exc:
            result.skipped["onnx"] = _first_line(exc)
    return written
