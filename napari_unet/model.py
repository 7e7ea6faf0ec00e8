"""U-Net models as files: architectures, model cards, safe save/load and a registry.

A model is a safetensors weights file whose header also holds the model card (JSON), with
the same card beside it as ``<name>.json`` for people to read. Nothing here unpickles an
untrusted file: ``.pt``/``.pth`` state dicts are read with ``torch.load(weights_only=True)``.

torch is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_unet.architectures import ARCHITECTURES, PACKAGED, build_model

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
    "save_model",
    "user_model_dir",
]

SHIPPED_DIR = Path(__file__).parent / "models"
CARD_KEY = "napari_unet.card"
DEFAULT_MODEL = "nuclei"


class ModelLoadError(ValueError):
    """A model cannot be loaded; the message names the file and says what to do."""


@dataclass(frozen=True)
class ModelCard:
    """What a model is, what it expects and where it came from.

    Attributes
    ----------
    name : str
        Registry name (file stem).
    architecture : str
        One of :data:`ARCHITECTURES`.
    arch_args : dict
        Keyword arguments of the architecture (e.g. ``features``).
    in_channels : int
        Image channels the network takes (1 = grayscale, 3 = RGB).
    classes : tuple of str
        Name of each output channel. With ``activation="softmax"`` the first is background.
    activation : str
        ``"sigmoid"`` (independent channels) or ``"softmax"`` (exclusive classes).
    outputs : dict
        What each output channel means, for counting (e.g. ``{"boundary": "..."}``).
    normalisation : dict
        How images are scaled before the network (:func:`napari_unet.planes.plane_limits`):
        ``{"kind": "percentile", "low": 1, "high": 99.8}`` per slice, ``{"kind": "zscore"}``
        per slice, ``{"kind": "dataset", "mean": [...], "std": [...]}`` (the training set's,
        per channel), ``{"kind": "range", "min": 0, "max": 255}``, a CT window
        ``{"kind": "window", "level": -600, "width": 1500}`` (or ``"preset": "lung"``), or
        ``{"kind": "none"}``.
    channels : list of int or None
        Which channels of a multi-channel image the network takes, in order (None: all).
    input_size : int or None
        Whole-image mode: every plane is resized to ``input_size`` squared for the network
        and its output resized back (None: tiles at full resolution).
    context : int
        2.5D: the slices on each side of a stack's slice that the network also sees, as
        extra channels (``in_channels`` = image channels x (2 context + 1)); 0 = 2D.
    flips : bool
        Whether mirror flips are a valid augmentation (False when left and right matter,
        as for lungs); a fine-tune keeps it.
    input_stats : dict
        Simple statistics of the scaled training inputs (and of the foreground share of
        the labels), so that an image far from them can be warned about.
    receptive_field : dict
        How far the network looks, measured (:func:`~napari_unet.architectures.measure_receptive_field`):
        the radius any input pixel reaches and the radii holding 95% and 99% of it.
    tile, overlap, threshold
        Recommended tile size (pixels), tile overlap (fraction) and mask threshold.
    postprocess : dict
        Settings for turning outputs into objects (e.g. ``boundary_threshold``).
    training, metrics : dict
        Training data, settings and the figures measured on held-out data.
    parent : str or None
        The model this one was fine-tuned from.
    """

    name: str
    architecture: str = "unet"
    arch_args: dict = field(default_factory=dict)
    in_channels: int = 1
    classes: tuple[str, ...] = ("foreground",)
    activation: str = "sigmoid"
    outputs: dict = field(default_factory=dict)
    normalisation: dict = field(default_factory=lambda: {"kind": "percentile", "low": 1.0, "high": 99.8})
    channels: list | None = None
    input_size: int | None = None
    context: int = 0
    flips: bool = True
    input_stats: dict = field(default_factory=dict)
    receptive_field: dict = field(default_factory=dict)
    tile: int = 256
    overlap: float = 0.25
    threshold: float = 0.5
    postprocess: dict = field(default_factory=dict)
    description: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    licence: str = ""
    parent: str | None = None
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    format_version: int = 1

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES + PACKAGED:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if not 1 <= int(self.in_channels) <= 16:
            raise ValueError(f"in_channels must be 1 to 16, got {self.in_channels}")
        if isinstance(self.context, bool) or not isinstance(self.context, int) or not 0 <= self.context <= 3:
            raise ValueError(f"context must be 0 to 3 neighbouring slices on each side, got {self.context!r}")
        if self.context and int(self.in_channels) % (2 * self.context + 1):
            raise ValueError(
                f"in_channels={self.in_channels} does not hold {2 * self.context + 1} slices (context {self.context})"
            )
        if not self.classes:
            raise ValueError("a model needs at least one output class")
        if self.activation not in ("sigmoid", "softmax"):
            raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {self.activation!r}")
        if self.activation == "softmax" and len(self.classes) < 2:
            raise ValueError("a softmax model needs at least two classes (background first)")
        if not 0 <= float(self.overlap) < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if isinstance(self.tile, bool) or not isinstance(self.tile, int) or self.tile < 16:
            raise ValueError(f"tile must be a whole number of pixels, at least 16, got {self.tile!r}")
        if not 0 < float(self.threshold) < 1:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"class names must differ from each other, got {list(self.classes)}")
        if self.channels is not None:
            if len(self.channels) != int(self.in_channels):
                raise ValueError(f"channels {self.channels} do not match in_channels={self.in_channels}")
            object.__setattr__(self, "channels", [int(c) for c in self.channels])
        if self.input_size is not None and (
            isinstance(self.input_size, bool) or not isinstance(self.input_size, int) or self.input_size < 16
        ):
            raise ValueError(f"input_size must be a whole number of pixels, at least 16, got {self.input_size!r}")
        from napari_unet.planes import check_normalisation

        object.__setattr__(self, "normalisation", check_normalisation(self.normalisation))
        object.__setattr__(self, "flips", bool(self.flips))
        object.__setattr__(self, "classes", tuple(self.classes))
        for name in (
            "arch_args",
            "outputs",
            "normalisation",
            "input_stats",
            "receptive_field",
            "postprocess",
            "training",
            "metrics",
        ):  # as JSON will give them back
            object.__setattr__(self, name, json.loads(json.dumps(getattr(self, name))))

    @property
    def out_channels(self) -> int:
        return len(self.classes)

    @property
    def image_channels(self) -> int:
        """Channels the network takes from each slice of the image (without 2.5D context)."""
        return int(self.in_channels) // (2 * self.context + 1)

    @property
    def kind(self) -> str:
        """``instance`` (objects with ids, counted) or ``semantic`` (a class per pixel)."""
        return "semantic" if self.activation == "softmax" else "instance"

    @property
    def class_names(self) -> dict[int, str]:
        """Label value -> class name of a semantic model's class map (0 = background)."""
        return dict(enumerate(self.classes)) if self.activation == "softmax" else {1: self.classes[0]}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def summary(self) -> str:
        """A few lines for a tooltip or ``--help``: what the model does and how well."""
        lines = [f"{self.name}: {self.architecture}, {self.in_channels} in -> {', '.join(self.classes)}"]
        if self.description:
            lines.append(self.description)
        if self.metrics:
            lines.append(
                "metrics: "
                + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.metrics.items())
            )
        if self.parent:
            lines.append(f"fine-tuned from {self.parent}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- files


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
        from napari_unet.exchange import packaged_network

        net = packaged_network(path, card)
        net.source_path = path
        return net
    if path.suffix in (".pt", ".pth"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelLoadError(
                f"{path}: cannot be read as a plain state dict ({exc}); only weights can be loaded, not pickled code."
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
