"""The bioimage.io description of an exported package: its tensors and their axes, our
normalisation and activation as the spec's processing steps, the weight entries, authors,
licence and citation. :mod:`napari_unet.exchange.export` writes the files it names.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.exchange._common import CONFIG_KEY, _identifier
from napari_unet.exchange.documentation import _input_text

if TYPE_CHECKING:
    from napari_unet.networks.model import ModelCard

__all__ = ["package_description"]


#: the U-Net paper, cited by every package we write
UNET_CITATION = (
    "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015.",
    "10.1007/978-3-319-24574-4_28",
)
#: licence files of shipped training data, attached when a card's licence names them
DATA_LICENCES = {"mnfinder": "LICENSE-mnfinder.txt", "pyradiomics": "LICENSE-pyradiomics.txt"}


def package_description(
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
    """The package's ``ModelDescr``: the files in ``work`` (test tensors, cover, README and
    the ``weights`` written, ``{format: path}``), the input's size rule (any size from
    ``smallest``, the network padding to a multiple of ``divisor``; or a whole-image model's one size) and the output's
    ``halo``; the card travels in its ``config``."""
    import torch
    from bioimageio.spec.model import v0_5 as s

    from napari_unet.networks import nets
    from napari_unet.networks.architectures import network_spec

    module, callable_name, kwargs = network_spec(card)
    # the architecture is napari_unet/networks/nets.py's ``padded``: the network, taking any image size
    # (mirrored out to a multiple of ``divisor`` and cropped back), with the bare network's state dict
    shutil.copyfile(nets.__file__, work / "napari_unet_nets.py")
    network = callable_name if module == "napari_unet.networks.nets" else f"monai.{callable_name}"
    architecture = s.ArchitectureFromFileDescr(
        source=work / "napari_unet_nets.py",
        callable=s.Identifier("padded"),
        kwargs={"network": network, "multiple": divisor, **kwargs},
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
        # any size from the smallest: the network pads to a multiple of ``divisor`` itself, so a
        # consumer that passes an image as it is (bioimageio.core's predict) is right to
        size = s.ParameterizedSize(min=smallest, step=1)
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
    from napari_unet._sample_data import SAMPLE_DIR as here

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
        from napari_unet.engine.planes import clips, plane_limits

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


def _is_shipped(card: ModelCard) -> bool:
    from napari_unet.networks.model import SHIPPED_DIR

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
