"""Another tool's weights, checked once at import: which file of a package runs, and whether it can.

TorchScript is a program, not weights: when it predicts it runs whatever it was written to do,
writing files included, so a package's ONNX weights are preferred, and its TorchScript is kept
only when the person says they trust where the package came from (``import --trust``). Either
file is loaded here, at import, so that a damaged or renamed file is refused in one sentence
then and not at the first prediction. An ONNX file may keep its tensors in files beside it; those
must lie inside the package (never an absolute path or ``..``), and are copied with it.
onnxruntime is kept quiet (errors only): its warnings are not the person's business.

torch, onnx and onnxruntime are imported inside the functions.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from napari_unet.exchange._common import ExchangeError, _first_line
from napari_unet.networks.packaged import TRUST_HINT, onnx_session

__all__ = ["TRUST_HINT", "check_onnx", "check_torchscript", "choose_weights", "onnx_session"]


def choose_weights(weights: Any, *, trust: bool, source: Path) -> str:
    """``"onnx"`` when the package has ONNX weights, else ``"torchscript"`` when the person
    trusts it; any other case is one sentence."""
    if weights.onnx is not None:
        return "onnx"
    if weights.torchscript is not None:
        if not trust:
            raise ExchangeError(f"{source}: its only weights napari-unet can run are TorchScript. {TRUST_HINT}")
        return "torchscript"
    present = [
        f for f in ("pytorch_state_dict", "keras_hdf5", "tensorflow_saved_model_bundle") if getattr(weights, f, None)
    ]
    raise ExchangeError(
        f"{source}: it has {', '.join(present) or 'no'} weights; napari-unet runs a package from another tool "
        "through its ONNX or TorchScript weights, which it lacks"
    )


def check_torchscript(path: Path, source: Path) -> None:
    """Load a TorchScript file once (it is not run); a file that is not one is refused."""
    import torch

    try:
        torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError, ValueError or its own errors for a bad archive
        raise ExchangeError(
            f"{source}: its TorchScript weights cannot be loaded ({_first_line(exc)[:160]}); the file is damaged "
            "or not TorchScript: get the package again from where it came from"
        ) from exc


def external_locations(path: Path, source: Path) -> list[str]:
    """The files an ONNX model keeps its tensors in (relative paths inside the package);
    an absolute path or one that climbs out with ``..`` is refused."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for a damaged protobuf
        raise ExchangeError(
            f"{source}: its ONNX weights cannot be read ({_first_line(exc)[:160]}); the file is damaged or not ONNX"
        ) from exc
    found: set[str] = set()
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        where = PurePosixPath(location.replace("\\", "/"))
        if not location or where.is_absolute() or ".." in where.parts or ":" in location:
            raise ExchangeError(
                f"{source}: its ONNX weights read their tensor {tensor.name!r} from {location!r}, outside the "
                "package; napari-unet reads only files inside a package"
            )
        found.add(str(where))
    return sorted(found)


def _all_tensors(graph: Any) -> list[Any]:
    """Initializers of a graph and of its sub-graphs (If and Loop bodies), and constant values."""
    out = list(graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                out.append(attribute.t)
            if attribute.HasField("g"):
                out += _all_tensors(attribute.g)
            for sub in attribute.graphs:
                out += _all_tensors(sub)
    return out


def copy_external_data(package: Path, weight_name: str, locations: list[str], store: Path, source: Path) -> None:
    """Copy the files an ONNX file names, from beside it in the package, into ``store``."""
    base = PurePosixPath(weight_name).parent
    for location in locations:
        inside = str(base / location)
        target = store / location  # (inside: external_locations refused absolute paths and '..')
        target.parent.mkdir(parents=True, exist_ok=True)
        if package.is_dir():
            found = package / inside
            if not found.is_file():
                raise ExchangeError(f"{source}: its ONNX weights keep their tensors in {location!r}, which it lacks")
            target.write_bytes(found.read_bytes())
            continue
        with zipfile.ZipFile(package) as z:
            names = set(z.namelist())
            match = inside if inside in names else next((n for n in names if n.endswith("/" + inside)), None)
            if match is None:
                raise ExchangeError(f"{source}: its ONNX weights keep their tensors in {location!r}, which it lacks")
            with z.open(match) as fin, open(target, "wb") as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)


def check_onnx(path: Path, source: Path) -> None:
    """Open an ONNX file (with its external tensors, already beside it) as onnxruntime would."""
    try:
        onnx_session(path)
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException
        raise ExchangeError(
            f"{source}: its ONNX weights do not open in onnxruntime ({_first_line(exc)[:160]}); the file is "
            "damaged or needs operators onnxruntime lacks"
        ) from exc
