"""A model card: what a model is, what it expects and where it came from.

The card travels inside the weights file (its safetensors header) and beside it as JSON
(:mod:`napari_unet.model`); it is checked when made, so a card read back is a valid one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

from napari_unet.architectures import ARCHITECTURES, PACKAGED

__all__ = ["ModelCard"]


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
