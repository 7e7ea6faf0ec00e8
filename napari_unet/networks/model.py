"""U-Net models as files: safe save/load and a registry (the card is :mod:`napari_unet.networks.card`).

A model is a safetensors weights file whose header also holds the model card (JSON), with
the same card beside it as ``<name>.json`` for people to read. Nothing here unpickles an
untrusted file: ``.pt``/``.pth`` state dicts are read with ``torch.load(weights_only=True)``.

torch is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_unet.networks.architectures import ARCHITECTURES, PACKAGED, build_model
from napari_unet.networks.card import ModelCard, ModelLoadError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ARCHITECTURES",
    "ModelCard",
    "ModelLoadError",
    "build_model",
    "default_model_name",
    "list_models",
    "load_model",
    "reserved_name",
    "save_model",
    "user_model_dir",
]

SHIPPED_DIR = Path(__file__).parent.parent / "models"  # (napari_unet/models: the package data)
CARD_KEY = "napari_unet.card"  # (the key in the weights file's header: data, not a module path)
DEFAULT_MODEL = "nuclei"


def _atomic(path: Path, write: Any) -> None:
    from napari_unet._atomic import atomic_write

    atomic_write(path, write)


def save_model(model: torch.nn.Module, path: str | os.PathLike, card: ModelCard | None = None) -> Path:
    """Write ``<path>.safetensors`` (weights + card in its header) and ``<path>.json``.

    Both files are written atomically: if the disk fills up half-way, the previous model
    of that name stays intact.
    """
    from safetensors.torch import save_file

    card = card or model.card
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{folder}: no permission to write the model here; choose another folder.")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    weights = path.with_suffix(".safetensors")
    _atomic(weights, lambda tmp: save_file(state, tmp, metadata={CARD_KEY: card.to_json()}))
    _atomic(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(card.to_json() + "\n"))
    return weights


@contextlib.contextmanager
def reserved_name(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Hold ``path`` (a model's file without its suffix) for a run that will save there: checked
    before the run, so that a training is never thrown away at its end.

    A shipped model's name is refused in the user folder (the registry would never load it), an
    existing model without ``overwrite``, and a name another run holds now (a ``.saving`` file
    with a live process id beside it; one left by a run that died is taken over).
    """
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    if path.parent.resolve() == user_model_dir().resolve() and (SHIPPED_DIR / f"{path.name}.safetensors").exists():
        raise ValueError(
            f"{path.name!r} is a shipped model's name, which a model of yours may not take; choose another --out"
        )
    if path.with_suffix(".safetensors").exists() and not overwrite:
        raise ValueError(
            f"a model named {path.name!r} exists already ({path.with_suffix('.safetensors')}); choose another --out, "
            "or add --overwrite to replace it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_suffix(".saving")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder):
                raise ValueError(
                    f"another run (process {holder}) is training a model named {path.name!r} now; choose another "
                    "--out, or wait for it to finish"
                ) from None
            lock.unlink(missing_ok=True)  # left by a run that died
    else:
        raise ValueError(f"{lock}: cannot reserve the name {path.name!r}; remove this file if no training runs")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield path
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def user_model_dir() -> Path:
    """The per-user folder for fine-tuned models (``NAPARI_UNET_MODELS`` overrides it)."""
    if os.environ.get("NAPARI_UNET_MODELS"):
        return Path(os.environ["NAPARI_UNET_MODELS"])
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-unet", appauthor=False)) / "models"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    source: str  # "shipped" or "user"
    card: ModelCard | None


def list_models() -> list[ModelEntry]:
    """Shipped models first, then the user's, each by name (a user model may not shadow a shipped one)."""
    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for source, folder in (("shipped", SHIPPED_DIR), ("user", user_model_dir())):
        if not folder.is_dir():
            continue
        for weights in sorted(folder.glob("*.safetensors")):
            if weights.stem in seen:
                continue
            try:
                card = read_card(weights)
            except ModelLoadError:
                card = None
            entries.append(ModelEntry(weights.stem, weights, source, card))
            seen.add(weights.stem)
    return entries


def default_model_name() -> str:
    return DEFAULT_MODEL


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card of a model file: the JSON beside it, else the one in the safetensors header."""
    path = Path(path)
    beside = path.with_suffix(".json")
    try:
        if beside.is_file():
            data = json.loads(beside.read_text())
            if not isinstance(data, dict):
                raise ValueError(
                    f"a model card is a JSON object with the model's settings, not a {type(data).__name__}"
                )
            return ModelCard.from_dict(data)
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if CARD_KEY in meta:
                return ModelCard.from_dict(json.loads(meta[CARD_KEY]))
    except (ValueError, TypeError, json.JSONDecodeError, OSError) as exc:
        raise ModelLoadError(f"{path}: its model card cannot be read ({exc}).") from exc
    except Exception as exc:  # safetensors raises its own error type on a corrupt header
        raise ModelLoadError(f"{path}: not a valid safetensors file ({exc}); it may be truncated or corrupt.") from exc
    raise ModelLoadError(
        f"{path}: no model card found; put a {beside.name} beside it (see any model in {SHIPPED_DIR})."
    )


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A registered name or a file path -> the weights file. Unknown names list the known ones."""
    text = str(name_or_path)
    candidate = Path(text)
    if candidate.suffix in (".safetensors", ".json", ".pt", ".pth") or os.sep in text or candidate.exists():
        if candidate.suffix == ".json":
            candidate = candidate.with_suffix(".safetensors")
        if not candidate.exists():
            raise FileNotFoundError(f"{candidate}: model file not found. Check the path.")
        if candidate.is_dir():
            raise IsADirectoryError(f"{candidate}: is a folder; choose the model's .safetensors file.")
        return candidate
    for entry in list_models():
        if entry.name == text:
            return entry.path
    known = ", ".join(e.name for e in list_models()) or "none"
    raise ModelLoadError(f"unknown model {text!r}; known models: {known}. Give a registered name or a file path.")


def _check_weights_fit(path: Path, card: ModelCard, state: dict) -> None:
    """Compare the card's network, built on torch's ``meta`` device (no memory, no time),
    with the weights' names and shapes: a card that does not match (or that would build a
    huge network) is refused before the real network is made."""
    import torch

    try:
        with torch.device("meta"):
            skeleton = build_model(card)
    except Exception as exc:
        raise ModelLoadError(f"{path}: its card does not describe a network that can be built ({exc}).") from exc
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    wrong = [k for k in expected if k in given and expected[k] != given[k]]
    if missing or extra or wrong:
        detail = (
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else
            f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else
            f"{wrong[0]} is {given[wrong[0]]} in the file but {expected[wrong[0]]} for the card"
        )  # fmt: skip
        raise ModelLoadError(
            f"{path}: the weights do not fit the {card.architecture} its card describes ({card.arch_args or 'default'} "
            f"arguments, {card.in_channels} input channel(s), {card.out_channels} output(s)): {detail}. Is the card "
            "beside it the right one?"
        )


def load_model(name_or_path: str | os.PathLike | None = None, *, card: ModelCard | None = None) -> torch.nn.Module:
    """Load a model by registry name or path; returns the network in eval mode with ``.card``.

    Parameters
    ----------
    name_or_path : str or path-like, optional
        A registered name (``list_models()``), a ``.safetensors`` file (card in its header
        or as JSON beside it), or a ``.pt``/``.pth`` state dict (read with
        ``weights_only=True``) with a JSON card beside it or given as ``card``.
        Default: the shipped default model.
    card : ModelCard, optional
        The card, for weights that come without one.
    """
    import torch

    path = resolve_model_path(name_or_path or DEFAULT_MODEL)
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: the model file is empty (0 bytes); it was not saved completely.")
    card = card or read_card(path)
    if card.architecture in PACKAGED:  # imported from bioimage.io: its own weights in a folder beside
        from napari_unet.networks.packaged import packaged_network

        net = packaged_network(path, card)
        net.source_path = path
        return net
    if path.suffix in (".pt", ".pth"):
        import warnings

        try:
            with warnings.catch_warnings():  # torch's warnings about the file are said below, in one sentence
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            # torch's own message explains weights_only over many lines: one sentence is enough
            what = "holds pickled objects or code" if "weights only load failed" in str(exc).lower() else "is damaged"
            raise ModelLoadError(
                f"{path}: {what}, not a plain state dict; only weights can be loaded, not pickled code "
                "(save the model's state_dict, or a .safetensors file)."
            ) from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    else:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:
            raise ModelLoadError(
                f"{path}: not a valid safetensors file ({exc}); it may be truncated or corrupt."
            ) from exc
    _check_weights_fit(path, card, state)  # before any real memory goes to a network the card describes
    net = build_model(card)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:4]
        raise ModelLoadError(
            f"{path}: the weights do not fit a {card.architecture} with {card.arch_args or 'default'} arguments, "
            f"{card.in_channels} input channel(s) and {card.out_channels} output(s): {' '.join(s.strip() for s in first)}"
        ) from exc
    net.card = card
    net.source_path = path
    return net.eval()
