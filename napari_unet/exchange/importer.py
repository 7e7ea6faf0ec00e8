"""Import: a bioimage.io model package as a napari-unet model, ours given back whole, another
tool's kept as its torchscript or ONNX weights with its processing mapped to a card."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_unet.exchange._common import CONFIG_KEY, ExchangeError, _first_line, _need_bioimageio
from napari_unet.exchange.foreign_card import activation_of, normalisation_of, size_of, tensor_axes, tile_for
from napari_unet.exchange.foreign_weights import (
    check_onnx,
    check_torchscript,
    choose_weights,
    copy_external_data,
    external_locations,
)

if TYPE_CHECKING:
    from napari_unet.networks.model import ModelCard


def import_package(
    source: str | os.PathLike,
    name: str | None = None,
    *,
    folder: str | os.PathLike | None = None,
    trust: bool = False,
) -> Path:
    """Register a bioimage.io model package (a ``.zip`` or a folder with ``rdf.yaml`` /
    ``bioimageio.yaml``) as a napari-unet model; returns the new model's file.

    Our own packages (a napari-unet card in ``config``) come back as the very model they
    were. A package from another tool keeps its ONNX weights (else, with ``trust``, its
    TorchScript: a program, see :mod:`~napari_unet.exchange.foreign_weights`), checked here,
    and runs through them inside our pipeline; it predicts, but cannot be fine-tuned.
    """
    _need_bioimageio()
    from napari_unet.networks.model import list_models, user_model_dir

    source = Path(source)
    if not source.exists():
        raise ExchangeError(f"{source}: no such file or folder")
    descr = _load(source)
    folder = Path(folder) if folder else user_model_dir()
    ours = (descr.config.model_dump().get(CONFIG_KEY) or {}).get("card") if descr.config else None
    taken = {e.name: e for e in list_models()}
    if name is not None and ("/" in name or "\\" in name or ".." in name):
        raise ExchangeError(
            f"--name {name!r} holds a path ('/', '\\' or '..'); a model's name is letters, digits, '-', '_' or '.'"
        )
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
    return _import_foreign(descr, name, folder, source, trust)


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


#: entries a description may expand to, aliases followed (the shipped model's has about 700)
MAX_DESCRIPTION_NODES = 100_000


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
    visited = 0

    def walk(node: Any, named_file: bool) -> None:
        nonlocal visited
        visited += 1
        if visited > MAX_DESCRIPTION_NODES:  # YAML aliases nested as a "billion laughs" never end
            raise ExchangeError(
                f"{source}: its description expands to more than {MAX_DESCRIPTION_NODES:,} entries (YAML aliases "
                "nested in one another); a model's description is a few hundred: not a package to import"
            )
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
    from napari_unet.networks.model import ModelCard, ModelLoadError, load_model, save_model

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


def _import_foreign(descr: Any, name: str, folder: Path, source: Path, trust: bool) -> Path:
    from napari_unet.networks.model import ModelCard, save_model

    inp, out = descr.inputs[0], descr.outputs[0]
    in_axes, out_axes = tensor_axes(descr, source)
    weights = descr.weights
    chosen = choose_weights(weights, trust=trust, source=source)
    normalisation = normalisation_of(inp.preprocessing, source)
    activation, threshold, probabilities = activation_of(out, source)
    channel_in = next((a for a in inp.axes if a.type == "channel"), None)
    channel_out = next((a for a in out.axes if a.type == "channel"), None)
    in_channels = len(channel_in.channel_names) if channel_in is not None else 1
    classes = [str(c) for c in channel_out.channel_names] if channel_out is not None else ["foreground"]
    if activation == "softmax" and len(classes) < 2:
        raise ExchangeError(f"{source}: its softmax output has a single channel; napari-unet needs background first")
    space = {str(a.id): size_of(a) for a in inp.axes if a.type == "space"}
    (ymin, ystep), (xmin, xstep) = space["y"], space["x"]
    tile = tile_for(max(ymin, xmin), max(ystep, xstep))
    halo = max((int(getattr(a, "halo", 0) or 0) for a in out.axes if a.type == "space"), default=0)
    overlap = min(0.5, max(2 * halo / tile, 0.125))
    store = folder / f"{name}.bioimageio"
    if store.exists():
        shutil.rmtree(store)
    store.mkdir(parents=True)
    weight_descr = getattr(weights, chosen)
    stored = store / f"weights.{chosen}"
    try:
        with _opened(weight_descr) as local:
            shutil.copyfile(local, stored)
        if chosen == "onnx":  # its tensor files first: only those inside the package, copied beside it
            copy_external_data(source, str(weight_descr.source), external_locations(stored, source), store, source)
            check_onnx(stored, source)
        else:
            check_torchscript(stored, source)
    except BaseException:
        shutil.rmtree(store, ignore_errors=True)  # nothing half-imported is left in the registry folder
        raise
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
            **({"trusted": True} if chosen == "torchscript" else {}),
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
