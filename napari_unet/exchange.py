"""Models in and out through bioimage.io: export a napari-unet model as a bioimage.io model
package (deepImageJ, ilastik, QuPath, BiaPy and bioimageio.core run it), and import a
package as a napari-unet model.

A package holds the weights (``pytorch_state_dict`` with the network's source, which needs
nothing but torch; ``torchscript``; ``onnx`` where torch exports it), the pre-processing in
the spec's own terms (our normalisations map one to one), the sigmoid or softmax, axes and
halo that match our tiling, test tensors computed by napari-unet itself (so that
``bioimageio test`` checks that the package's processing is ours), a cover drawn from a real
prediction, documentation, licence, authors, citation and the parent model. The napari-unet
card rides along in ``config``, so that importing our own package gives back the very model.

Importing a package made by another tool keeps its torchscript (or ONNX) weights, maps its
processing to a card and runs it inside our pipeline, tiles and all; what cannot be mapped
is refused with one sentence that says why.

bioimageio.spec / bioimageio.core (the ``bioimageio`` extra), torch and onnx are imported
inside the functions. Nothing here reaches the network: every file is local.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from napari_unet.model import ModelCard

__all__ = ["EXTRA", "ExchangeError", "ExportResult", "export_package", "import_package", "packaged_network"]

#: how to get what this module needs
EXTRA = "pip install 'napari-unet[bioimageio]'"
#: the key of our card in a package's ``config``
CONFIG_KEY = "napari_unet"
#: the U-Net paper, cited by every package we write
UNET_CITATION = (
    "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015.",
    "10.1007/978-3-319-24574-4_28",
)
#: licence files of shipped training data, attached when a card's licence names them
DATA_LICENCES = {"mnfinder": "LICENSE-mnfinder.txt", "pyradiomics": "LICENSE-pyradiomics.txt"}
WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")


class ExchangeError(ValueError):
    """A package cannot be written or read; the message says why in one sentence."""


def _need_bioimageio() -> None:
    try:
        import bioimageio.core
        import bioimageio.spec  # noqa: F401
    except ImportError as exc:
        raise ExchangeError(
            f"bioimage.io packages need bioimageio.core and bioimageio.spec, which are not installed: {EXTRA}"
        ) from exc


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
    from napari_unet.planes import _read_plane, plane_layout, select_channels, with_context

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
    plane = _read_plane(np.asarray(data), layout, middle, card.in_channels)
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
        from napari_unet.whole_image import resize_planes

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

    from napari_unet.planes import normalise_plane

    scaled = normalise_plane(x, card.normalisation)
    with torch.no_grad():
        logits = net(torch.from_numpy(np.ascontiguousarray(scaled[None])))
        prob = torch.softmax(logits, 1) if card.activation == "softmax" else torch.sigmoid(logits)
    return prob.numpy().astype(np.float32)


# --------------------------------------------------------------------------- processing


def _preprocessing(card: ModelCard, channels: int) -> list[Any]:
    """Our normalisation as the spec's pre-processing steps (after a cast to float32)."""
    from bioimageio.spec.model import v0_5 as s

    norm = card.normalisation
    kind = norm.get("kind", "percentile")
    yx = (s.AxisId("y"), s.AxisId("x"))
    steps: list[Any] = [s.EnsureDtypeDescr(kwargs=s.EnsureDtypeKwargs(dtype="float32"))]
    if kind == "percentile":
        kwargs = s.ScaleRangeKwargs(axes=yx, min_percentile=norm["low"], max_percentile=norm["high"], eps=1e-6)
        steps.append(s.ScaleRangeDescr(kwargs=kwargs))
    elif kind == "zscore":
        steps.append(s.ZeroMeanUnitVarianceDescr(kwargs=s.ZeroMeanUnitVarianceKwargs(axes=yx, eps=1e-6)))
    elif kind == "dataset":
        mean, std = [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]
        kwargs = (
            s.FixedZeroMeanUnitVarianceKwargs(mean=mean[0], std=std[0])
            if channels == 1
            else s.FixedZeroMeanUnitVarianceAlongAxisKwargs(axis=s.AxisId("channel"), mean=mean, std=std)
        )
        steps.append(s.FixedZeroMeanUnitVarianceDescr(kwargs=kwargs))
    elif kind in ("range", "window"):
        from napari_unet.planes import clips, plane_limits

        (lo, hi), *_ = plane_limits(np.zeros((1, 1, 1), np.float32), norm)
        steps.append(s.ScaleLinearDescr(kwargs=s.ScaleLinearKwargs(gain=1.0 / (hi - lo), offset=-lo / (hi - lo))))
        if clips(norm):
            steps.append(s.ClipDescr(kwargs=s.ClipKwargs(min=0.0, max=1.0)))
    return steps


def _postprocessing(card: ModelCard) -> list[Any]:
    from bioimageio.spec.model import v0_5 as s

    if card.activation == "softmax":
        return [s.SoftmaxDescr(kwargs=s.SoftmaxKwargs(axis=s.AxisId("channel")))]
    return [s.SigmoidDescr()]


def _identifier(name: str) -> str:
    """A class or channel name as the spec's identifiers allow (letters, digits, ``_``)."""
    text = re.sub(r"\W+", "_", str(name)).strip("_") or "channel"
    return text if not text[0].isdigit() else f"c{text}"


def _channel_names(card: ModelCard) -> list[str]:
    if card.context:  # slice_m1, slice_0, slice_p1 (with _cK per channel of a multi-channel slice)
        per = card.image_channels
        return [
            f"slice_{'m' if d < 0 else 'p' if d > 0 else ''}{abs(d)}" + (f"_c{c}" if per > 1 else "")
            for d in range(-card.context, card.context + 1)
            for c in range(per)
        ]
    if card.in_channels == 3:
        return ["red", "green", "blue"]
    if card.in_channels == 1:
        return ["gray"]
    return [f"c{c}" for c in (card.channels or range(card.in_channels))]


def _spdx(text: str, default: str = "CC-BY-4.0") -> str:
    """The first SPDX licence id named in a card's free-text licence."""
    from bioimageio.spec.model.v0_5 import LicenseId

    for token in re.findall(r"[A-Za-z0-9.\-+]+", text or ""):
        try:
            return str(LicenseId(token))
        except ValueError:
            continue
    return default


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
    from napari_unet.model import load_model

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
    from napari_unet.architectures import size_divisor

    divisor = size_divisor(card.architecture, card.arch_args)
    from napari_unet.pipeline import context_overlap

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
        weights = _weights(net, card, x, work, formats, result)
        (work / "README.md").write_text(_documentation(card, result, halo, __version__))
        descr = _description(card, work, weights, halo, smallest, divisor, authors, licence, __version__)
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
    from napari_unet.pipeline import segment
    from napari_unet.report import display_plane, overlay, write_overlay

    result = segment(net, x, axes="CYX", settings=None)
    seen = display_plane(x[: min(3, x.shape[0])] if not card.context else x[card.context : card.context + 1])
    picture = np.concatenate([seen, overlay(seen, result.labels if result.labels is not None else result.mask)], 1)
    write_overlay(path, picture)


def _weights(
    net: Any, card: ModelCard, x: np.ndarray, work: Path, formats: tuple[str, ...], result: ExportResult
) -> dict:
    """Each weight file written: ``{format: path}``; a format torch cannot export is left
    out, with the reason in ``result.skipped``."""
    import torch

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    written = {"pytorch_state_dict": work / "weights.pt"}
    torch.save(state, written["pytorch_state_dict"])
    example = torch.from_numpy(x[None].copy())
    if "torchscript" in formats:
        try:
            with torch.no_grad():
                traced = torch.jit.trace(net, example, check_trace=False)
            traced.save(str(work / "weights.torchscript"))
            written["torchscript"] = work / "weights.torchscript"
        except Exception as exc:  # tracing a network can fail in many ways; the package stays valid without it
            result.skipped["torchscript"] = _first_line(exc)
    if "onnx" in formats:
        try:
            import onnx  # noqa: F401

            axes = {0: "batch", 2: "y", 3: "x"}
            with torch.no_grad():
                torch.onnx.export(
                    net, (example,), str(work / "weights.onnx"), input_names=["input"], output_names=["output"],
                    dynamic_axes={"input": axes, "output": axes}, opset_version=17, dynamo=False,
                )  # fmt: skip
            written["onnx"] = work / "weights.onnx"
        except ImportError:
            result.skipped["onnx"] = "the onnx package is not installed (pip install onnx)"
        except Exception as exc:
            result.skipped["onnx"] = _first_line(exc)
    return written


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _description(
    card: ModelCard,
    work: Path,
    weights: dict,
    halo: int,
    smallest: int,
    divisor: int,
    authors: list[str] | None,
    licence: str | None,
    version: str,
) -> Any:
    import torch
    from bioimageio.spec.model import v0_5 as s

    from napari_unet import nets
    from napari_unet.architectures import network_spec

    module, callable_name, kwargs = network_spec(card)
    if module == "napari_unet.nets":
        shutil.copyfile(nets.__file__, work / "napari_unet_nets.py")
        architecture: Any = s.ArchitectureFromFileDescr(
            source=work / "napari_unet_nets.py", callable=s.Identifier(callable_name), kwargs=kwargs
        )
    else:
        architecture = s.ArchitectureFromLibraryDescr(
            import_from=module, callable=s.Identifier(callable_name), kwargs=kwargs
        )
    torch_version = s.Version(torch.__version__.split("+")[0])
    entries: dict[str, Any] = {
        "pytorch_state_dict": s.PytorchStateDictWeightsDescr(
            source=weights["pytorch_state_dict"], architecture=architecture, pytorch_version=torch_version
        )
    }
    if "torchscript" in weights:
        entries["torchscript"] = s.TorchscriptWeightsDescr(
            source=weights["torchscript"], pytorch_version=torch_version, parent="pytorch_state_dict"
        )
    if "onnx" in weights:
        entries["onnx"] = s.OnnxWeightsDescr(source=weights["onnx"], opset_version=17, parent="pytorch_state_dict")

    if card.input_size:
        size: Any = card.input_size
    else:
        size = s.ParameterizedSize(min=smallest, step=divisor)
    input_axes = [
        s.BatchAxis(),
        s.ChannelAxis(channel_names=[s.Identifier(n) for n in _channel_names(card)]),
        s.SpaceInputAxis(id=s.AxisId("y"), size=size),
        s.SpaceInputAxis(id=s.AxisId("x"), size=size),
    ]
    space_out: list[Any] = []
    for axis in ("y", "x"):
        ref = s.SizeReference(tensor_id=s.TensorId("input"), axis_id=s.AxisId(axis))
        space_out.append(
            s.SpaceOutputAxisWithHalo(id=s.AxisId(axis), size=ref, halo=halo)
            if halo
            else s.SpaceOutputAxis(id=s.AxisId(axis), size=ref)
        )
    output_axes = [
        s.BatchAxis(),
        s.ChannelAxis(channel_names=[s.Identifier(_identifier(c)) for c in card.classes]),
        *space_out,
    ]
    inputs = [
        s.InputTensorDescr(
            id=s.TensorId("input"),
            description=_input_text(card)[:128],
            axes=input_axes,
            test_tensor=s.FileDescr(source=work / "test_input.npy"),
            sample_tensor=s.FileDescr(source=work / "sample_input.tif"),
            preprocessing=_preprocessing(card, card.in_channels),
        )
    ]
    outputs = [
        s.OutputTensorDescr(
            id=s.TensorId("output"),
            description=(
                "class probabilities (softmax), background first"
                if card.activation == "softmax"
                else "probabilities (sigmoid), one channel per output"
            ),
            axes=output_axes,
            test_tensor=s.FileDescr(source=work / "test_output.npy"),
            sample_tensor=s.FileDescr(source=work / "sample_output.tif"),
            data=s.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
            postprocessing=_postprocessing(card),
        )
    ]
    attachments = []
    here = Path(__file__).parent / "sample_data"
    for dataset, licence_file in DATA_LICENCES.items():
        if dataset in (card.licence or "").lower() and (here / licence_file).is_file():
            shutil.copyfile(here / licence_file, work / licence_file)
            attachments.append(s.FileDescr(source=work / licence_file))
    names = authors or card.training.get("authors") or ["napari-unet developers" if _is_shipped(card) else _user()]
    parent = s.LinkedModel(id=s.ModelId(_model_id(card.parent))) if card.parent else None
    return s.ModelDescr(
        name=_package_name(card.name),
        description=(card.description or f"napari-unet {card.kind} model: {', '.join(card.classes)}")[:1024],
        covers=[s.FileDescr(source=work / "cover.png")],
        authors=[s.Author(name=str(n).replace("/", "-")) for n in names],
        cite=[s.CiteEntry(text=UNET_CITATION[0], doi=s.Doi(UNET_CITATION[1]))],
        license=s.LicenseId(licence or _spdx(card.licence)),
        documentation=s.FileDescr(source=work / "README.md"),
        tags=["napari-unet", "unet", "segmentation", "2d", card.kind, *(_identifier(c).lower() for c in card.classes)],
        attachments=attachments,
        inputs=inputs,
        outputs=outputs,
        weights=s.WeightsDescr(**entries),
        parent=parent,
        version=s.Version("0.1.0"),
        config={CONFIG_KEY: {"card": card.to_dict(), "napari_unet_version": version}},
    )


def _is_shipped(card: ModelCard) -> bool:
    from napari_unet.model import SHIPPED_DIR

    return (SHIPPED_DIR / f"{card.name}.safetensors").is_file()


def _user() -> str:
    import getpass

    try:
        return getpass.getuser() or "napari-unet user"
    except (OSError, KeyError):
        return "napari-unet user"


def _model_id(name: str) -> str:
    """A parent model's name as a bioimage.io id (lower case, ``-`` for anything else)."""
    return "napari-unet/" + (re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "model")


def _package_name(name: str) -> str:
    """A package name as the spec allows (letters, digits, ``_- ()``), at most 128 characters."""
    return (re.sub(r"[^A-Za-z0-9_\- ()]+", "-", f"napari-unet {name}").strip("-") or "napari-unet model")[:128]


def _input_text(card: ModelCard) -> str:
    norm = card.normalisation
    kind = norm.get("kind")
    scaled = {
        "percentile": f"scaled by its own {norm.get('low')}-{norm.get('high')} percentiles per channel",
        "zscore": "scaled to zero mean and unit variance per channel",
        "dataset": "scaled by the training set's mean and standard deviation",
        "range": f"scaled from {norm.get('min')}-{norm.get('max')} to 0-1",
        "window": f"a CT window, level {norm.get('level')} width {norm.get('width')} HU, clipped to 0-1",
        "none": "taken as it is",
    }.get(kind, kind)
    what = "RGB" if card.in_channels == 3 and not card.context else f"{card.in_channels}-channel"
    return f"{what} image, {scaled}"


def _documentation(card: ModelCard, result: ExportResult, halo: int, version: str) -> str:
    metrics = "\n".join(
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in card.metrics.items()
    )
    training = card.training or {}
    lines = [
        f"# {card.name}",
        "",
        card.description or f"A napari-unet {card.kind} model.",
        "",
        "Made with [napari-unet](https://github.com/napari-unet/napari-unet) "
        f"{version}: a {card.architecture} ({json.dumps(card.arch_args)}).",
        "",
        "## Input",
        "",
        f"- {_input_text(card)}.",
        (f"- channels {card.channels} of a multi-channel image, in that order." if card.channels else ""),
        (
            f"- 2.5D: the slice with {card.context} neighbouring slice(s) on each side as channels."
            if card.context
            else ""
        ),
        (
            f"- whole images, resized to {card.input_size}x{card.input_size} pixels."
            if card.input_size
            else f"- any size in tiles (a multiple of the step); napari-unet uses {card.tile}-pixel tiles, "
            f"{halo} pixels of halo on each side."
        ),
        "",
        "## Output",
        "",
        *(f"- `{_identifier(c)}`: {card.outputs.get(c, c)}" for c in card.classes),
        "",
        (
            "Objects: threshold the first channel at "
            f"{card.threshold}; napari-unet splits touching objects by a watershed from the foreground minus the "
            "boundary channel."
            if card.kind == "instance"
            else "Class map: the most probable class of each pixel (0 = background)."
        ),
        "",
        "## Validation",
        "",
        "Measured by napari-unet on images held out from training:",
        "",
        "| metric | value |",
        "|---|---|",
        metrics or "| (none recorded) | |",
        "",
        "## Training data and licence",
        "",
        f"- {card.licence or 'not recorded'}",
        f"- images: {len(training.get('images', []))} ({', '.join(map(str, training.get('images', [])[:5]))}"
        f"{', ...' if len(training.get('images', [])) > 5 else ''})",
        (f"- fine-tuned from `{card.parent}`." if card.parent else ""),
        "",
        "## Test tensors",
        "",
        f"Cut from {result.example}, and predicted by napari-unet itself.",
        "",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"


# --------------------------------------------------------------------------- import


def import_package(
    source: str | os.PathLike, name: str | None = None, *, folder: str | os.PathLike | None = None
) -> Path:
    """Register a bioimage.io model package (a ``.zip`` or a folder with ``rdf.yaml`` /
    ``bioimageio.yaml``) as a napari-unet model; returns the new model's file.

    Our own packages (a napari-unet card in ``config``) come back as the very model they
    were. A package from another tool keeps its torchscript (else ONNX) weights and runs
    through them inside our pipeline; it predicts, but cannot be fine-tuned.
    """
    _need_bioimageio()
    from napari_unet.model import list_models, user_model_dir

    source = Path(source)
    if not source.exists():
        raise ExchangeError(f"{source}: no such file or folder")
    descr = _load(source)
    folder = Path(folder) if folder else user_model_dir()
    ours = (descr.config.model_dump().get(CONFIG_KEY) or {}).get("card") if descr.config else None
    taken = {e.name: e for e in list_models()}
    chosen = _registry_name(name or (ours or {}).get("name") or descr.name)
    if name is None:  # a free name: the package's own, else with a number after it
        base, n = chosen, 1
        while chosen in taken or (folder / f"{chosen}.safetensors").exists():
            n += 1
            chosen = f"{base}-{n}"
    elif chosen in taken or (folder / f"{chosen}.safetensors").exists():
        where = "a shipped model" if chosen in taken and taken[chosen].source == "shipped" else "a model"
        raise ExchangeError(f"{where} named {chosen!r} exists already; choose another name with --name")
    name = chosen
    folder.mkdir(parents=True, exist_ok=True)
    if ours and descr.weights.pytorch_state_dict is not None:
        return _import_ours(descr, ours, name, folder, source)
    return _import_foreign(descr, name, folder, source)


def _load(source: Path) -> Any:
    from bioimageio.spec import InvalidDescr, load_description

    if source.is_dir():
        found = [p for p in ("bioimageio.yaml", "rdf.yaml") if (source / p).is_file()]
        if not found:
            raise ExchangeError(
                f"{source}: no rdf.yaml or bioimageio.yaml in this folder; is it a bioimage.io package?"
            )
        target: Any = source / found[0]
    elif zipfile.is_zipfile(source):
        target = source
    else:
        raise ExchangeError(f"{source}: not a zip file; a bioimage.io package is a .zip or a folder with rdf.yaml")
    remote = _remote_files(source, target)
    if remote:
        raise ExchangeError(
            f"{source}: the package refers to {len(remote)} file(s) on the web (e.g. {remote[0]}), and napari-unet "
            "never downloads: get the complete package (.zip) from bioimage.io and import that"
        )
    try:
        descr = load_description(target, format_version="latest", perform_io_checks=True)
    except Exception as exc:  # a broken zip or YAML raises from deep inside the spec library
        raise ExchangeError(f"{source}: cannot be read as a bioimage.io package ({_first_line(exc)})") from exc
    if isinstance(descr, InvalidDescr):
        raise ExchangeError(f"{source}: not a valid bioimage.io package: {_first_error(descr)}")
    if getattr(descr, "type", None) != "model":
        raise ExchangeError(f"{source}: a bioimage.io {getattr(descr, 'type', '?')}, not a model")
    return descr


#: the description's fields that name files a reader fetches (format 0.4 and 0.5)
FILE_FIELDS = {"source", "documentation", "covers", "test_inputs", "test_outputs", "sample_inputs",
               "sample_outputs", "attachments", "files", "dependencies", "architecture", "test_tensor",
               "sample_tensor", "weights"}  # fmt: skip


def _remote_files(source: Path, target: Any) -> list[str]:
    """The web addresses among the files a package's description names (read before the
    spec library validates it, since it would fetch them)."""
    import yaml

    try:
        if source.is_dir():
            text = Path(target).read_text()
        else:
            with zipfile.ZipFile(source) as z:
                names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] in ("bioimageio.yaml", "rdf.yaml")]
                if not names:
                    raise ExchangeError(
                        f"{source}: no rdf.yaml or bioimageio.yaml inside; is it a bioimage.io package?"
                    )
                text = z.read(sorted(names, key=len)[0]).decode("utf-8")
        rdf = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, zipfile.BadZipFile) as exc:
        raise ExchangeError(f"{source}: its description cannot be read ({_first_line(exc)})") from exc
    found: list[str] = []

    def walk(node: Any, named_file: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, named_file or key in FILE_FIELDS)
        elif isinstance(node, list):
            for value in node:
                walk(value, named_file)
        elif named_file and isinstance(node, str) and re.search(r"(^|:)https?://", node):
            found.append(node)

    walk(rdf, False)
    return found


def _first_error(descr: Any) -> str:
    for detail in descr.validation_summary.details:
        for error in detail.errors:
            loc = ".".join(str(p) for p in error.loc)
            msg = error.msg
            if "sha256" in msg.lower() or "hash" in msg.lower():
                return f"a file's checksum does not match ({loc}); the package is damaged or was changed after packing"
            if "does not exist" in msg.lower() or "not found" in msg.lower() or "no such file" in msg.lower():
                return f"a file it names is missing ({loc})"
            return f"{loc}: {msg}"[:300]
    return "its description does not validate"


def _registry_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-.")
    if not name:
        raise ExchangeError(f"{text!r} cannot name a model; give --name with letters, digits, '-' or '_'")
    return name


def _import_ours(descr: Any, card_data: dict, name: str, folder: Path, source: Path) -> Path:
    from napari_unet.model import ModelCard, ModelLoadError, load_model, save_model

    try:
        card = ModelCard.from_dict({**card_data, "name": name})
    except (TypeError, ValueError) as exc:
        raise ExchangeError(f"{source}: its napari-unet card cannot be read ({exc})") from exc
    card = card.replace(
        parent=card_data.get("name") or card.parent,
        training={**card.training, "imported_from": str(source)},
    )
    with _opened(descr.weights.pytorch_state_dict, "weights.pt") as weights_file:
        try:  # read as plain weights only, and checked against the card before a network is built
            net = load_model(weights_file, card=card)
        except (ModelLoadError, FileNotFoundError) as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise ExchangeError(f"{source}: its state dict does not load: {reason}") from exc
    return save_model(net, folder / name, card)


class _opened:
    """A package file (inside a zip or a folder) as a local path for as long as needed."""

    def __init__(self, file_descr: Any, name: str | None = None) -> None:
        self.descr = file_descr
        self.name = name
        self.tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        from bioimageio.spec.utils import get_reader

        self.tmp = tempfile.TemporaryDirectory(prefix="napari-unet-import-")
        reader = get_reader(self.descr.source)
        path = Path(self.tmp.name) / (self.name or Path(str(reader.original_file_name)).name)
        path.write_bytes(reader.read())
        return path

    def __exit__(self, *exc: Any) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def _size_of(axis: Any) -> tuple[int, int]:
    """``(min, step)`` of an input axis size (step 0: fixed)."""
    size = axis.size
    if isinstance(size, int):
        return size, 0
    if hasattr(size, "step"):
        return int(size.min), int(size.step)
    raise ExchangeError(f"its input axis {axis.id} takes a size napari-unet cannot choose ({type(size).__name__})")


def _import_foreign(descr: Any, name: str, folder: Path, source: Path) -> Path:
    from napari_unet.model import ModelCard, save_model

    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise ExchangeError(
            f"{source}: the model takes {len(descr.inputs)} input(s) and gives {len(descr.outputs)} output(s); "
            "napari-unet runs models with one image in and one tensor out"
        )
    inp, out = descr.inputs[0], descr.outputs[0]
    in_axes = [a.type if a.type in ("batch", "channel") else str(a.id) for a in inp.axes]
    out_axes = [a.type if a.type in ("batch", "channel") else str(a.id) for a in out.axes]
    for axes, what in ((in_axes, "input"), (out_axes, "output")):
        extra = [a for a in axes if a not in ("batch", "channel", "y", "x")]
        if extra or "y" not in axes or "x" not in axes:
            raise ExchangeError(
                f"{source}: its {what} has axes {', '.join(axes)}; napari-unet runs 2D models (y, x, channel, batch)"
                + (" and 3D models are not supported yet" if "z" in extra else "")
            )
    weights = descr.weights
    chosen = "torchscript" if weights.torchscript is not None else "onnx" if weights.onnx is not None else None
    if chosen is None:
        present = [
            f
            for f in ("pytorch_state_dict", "keras_hdf5", "tensorflow_saved_model_bundle")
            if getattr(weights, f, None)
        ]
        raise ExchangeError(
            f"{source}: it has {', '.join(present) or 'no'} weights; napari-unet runs a package from another tool "
            "through its torchscript or ONNX weights, which it lacks"
        )
    normalisation = _normalisation_of(inp.preprocessing, source)
    activation, threshold, probabilities = _activation_of(out, source)
    channel_in = next((a for a in inp.axes if a.type == "channel"), None)
    channel_out = next((a for a in out.axes if a.type == "channel"), None)
    in_channels = len(channel_in.channel_names) if channel_in is not None else 1
    classes = [str(c) for c in channel_out.channel_names] if channel_out is not None else ["foreground"]
    if activation == "softmax" and len(classes) < 2:
        raise ExchangeError(f"{source}: its softmax output has a single channel; napari-unet needs background first")
    space = {str(a.id): _size_of(a) for a in inp.axes if a.type == "space"}
    (ymin, ystep), (xmin, xstep) = space["y"], space["x"]
    tile = _tile_for(max(ymin, xmin), max(ystep, xstep))
    halo = max((int(getattr(a, "halo", 0) or 0) for a in out.axes if a.type == "space"), default=0)
    overlap = min(0.5, max(2 * halo / tile, 0.125))
    store = folder / f"{name}.bioimageio"
    if store.exists():
        shutil.rmtree(store)
    store.mkdir(parents=True)
    weight_descr = getattr(weights, chosen)
    with _opened(weight_descr) as local:
        stored = store / f"weights.{'torchscript' if chosen == 'torchscript' else 'onnx'}"
        shutil.copyfile(local, stored)
    card = ModelCard(
        name=name,
        architecture=chosen,
        arch_args={
            "file": f"{store.name}/{stored.name}",
            "input_axes": in_axes,
            "output_axes": out_axes,
            "size": {"y": [ymin, ystep], "x": [xmin, xstep]},
        },
        in_channels=in_channels,
        classes=tuple(classes),
        activation=activation,
        outputs={c: f"output channel {c} of the imported package" for c in classes},
        normalisation=normalisation,
        tile=tile,
        overlap=overlap,
        threshold=threshold,
        postprocess={"min_area": 10.0},
        description=(str(descr.description) or str(descr.name))[:500],
        training={
            "imported_from": str(source),
            "package": str(descr.name),
            "weights": chosen,
            "output_is_probability": probabilities,
        },
        licence=str(descr.license or ""),
        parent=str(descr.id or descr.name),
    )
    return save_model(_Empty(card), folder / name, card)


class _Empty:
    """Something :func:`save_model` writes with no tensors: a packaged network's weights live
    in its folder, the registry file holds its card."""

    def __init__(self, card: ModelCard) -> None:
        self.card = card

    def state_dict(self) -> dict:
        return {}


def _tile_for(minimum: int, step: int, target: int = 256) -> int:
    """The allowed size (``minimum + n step``) nearest our usual tile."""
    if step == 0:
        return int(minimum)
    n = max(0, round((target - minimum) / step))
    return int(minimum + n * step)


def _normalisation_of(steps: list[Any], source: Path) -> dict:
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


def _activation_of(out: Any, source: Path) -> tuple[str, float, bool]:
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


# --------------------------------------------------------------------------- running


def packaged_network(path: Path, card: ModelCard) -> torch.nn.Module:
    """The network of an imported package (torchscript or ONNX), as a torch module that
    takes ``(B, C, H, W)`` and gives logits like ours: it pads the input to a size the package
    takes, puts the axes in the package's order, and crops the output back."""
    import torch
    from torch import nn

    weights = Path(path).parent / card.arch_args["file"]
    if not weights.is_file():
        from napari_unet.model import ModelLoadError

        raise ModelLoadError(f"{weights}: the imported package's weights are missing; import the package again")
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
                import onnxruntime as ort

                self.net = None
                self.session = ort.InferenceSession(str(weights), providers=["CPUExecutionProvider"])

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
