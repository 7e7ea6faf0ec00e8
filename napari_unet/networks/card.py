"""A model card: what a model is, what it expects and where it came from.

The card travels inside the weights file (its safetensors header) and beside it as JSON
(:mod:`napari_unet.networks.model`); it is checked when made, so a card read back is a valid one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

from napari_unet.networks.architectures import ARCHITECTURES, PACKAGED

__all__ = ["ModelCard", "ModelLoadError"]


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
        How images are scaled before the network (:func:`napari_unet.engine.planes.plane_limits`):
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
        How far the network looks, measured (:func:`~napari_unet.networks.architectures.measure_receptive_field`):
        the radius any input pixel reaches and the radii holding 95% and 99% of it.
    spatial_dims : int
        What the network sees at once: 2 (planes; a stack is predicted slice by slice) or 3
        (volumes). Cards written before it existed load as 2.
    spacing : list of float or None
        The pixel (2D) or voxel (3D) spacing the model was trained at, one value per
        spatial axis in the order of the image's axes (``[z,] y, x``), in the units of the
        training images; None when they had none.
    tile, overlap, threshold
        Recommended tile size (pixels), tile overlap (fraction) and mask threshold. The tile
        and overlap are one value for every spatial axis, or one per axis (``[z,] y, x``):
        :attr:`tile_shape` and :attr:`overlap_shape` give them per axis either way.
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
    spatial_dims: int = 2
    spacing: list | None = None
    tile: int | list = 256
    overlap: float | list = 0.25
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
        self._check_spatial()
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
        from napari_unet.engine.planes import check_normalisation

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

    def _check_spatial(self) -> None:
        """``spatial_dims``, and the tile, overlap and spacing as one value or one per axis."""
        dims = self.spatial_dims
        if isinstance(dims, bool) or dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 (planes) or 3 (volumes), got {dims!r}")
        if dims == 3 and (self.context or self.input_size):
            raise ValueError("a 3D network sees the neighbouring slices itself: no context, no input_size")

        def per_axis(name: str, value: Any) -> list:
            if isinstance(value, list | tuple):
                if len(value) != dims:
                    raise ValueError(f"{name} has {len(value)} values; a {dims}D model takes one, or one per axis")
                return list(value)
            return [value] * dims

        tiles = per_axis("tile", self.tile)
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 16 for t in tiles[-2:]) or any(
            isinstance(t, bool) or not isinstance(t, int) or t < 4 for t in tiles
        ):
            raise ValueError(f"tile must be a whole number of pixels, at least 16 (4 along Z), got {self.tile!r}")
        if not all(isinstance(o, int | float) and 0 <= float(o) < 1 for o in per_axis("overlap", self.overlap)):
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.spacing is not None:
            spacing = per_axis("spacing", self.spacing) if isinstance(self.spacing, list | tuple) else None
            if spacing is None or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and 0 < float(v) < float("inf") for v in spacing
            ):
                raise ValueError(f"spacing must be one positive number per spatial axis, got {self.spacing!r}")
            object.__setattr__(self, "spacing", [float(v) for v in spacing])
        for name in ("tile", "overlap"):  # one value where every axis has the same; a list, as JSON gives it back
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                object.__setattr__(self, name, value[0] if len(set(value)) == 1 else list(value))
        if dims == 2 and isinstance(self.tile, list):
            raise ValueError(f"a 2D model's tile is square (the tile engine cuts square tiles), got {self.tile!r}")

    @property
    def tile_shape(self) -> tuple[int, ...]:
        """The tile, one size per spatial axis (``[z,] y, x``)."""
        return (
            tuple(int(t) for t in self.tile) if isinstance(self.tile, list) else (int(self.tile),) * self.spatial_dims
        )

    @property
    def overlap_shape(self) -> tuple[float, ...]:
        """The overlap, one fraction per spatial axis (``[z,] y, x``)."""
        if isinstance(self.overlap, list):
            return tuple(float(o) for o in self.overlap)
        return (float(self.overlap),) * self.spatial_dims

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
