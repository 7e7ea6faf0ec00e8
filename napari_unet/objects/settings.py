"""How an image becomes objects: one frozen :class:`Settings`, checked when it is made.

The model card holds a model's own choices (threshold, seed or boundary threshold, the
smallest objects kept); :meth:`Settings.for_model` puts a caller's overrides on top, and
:func:`napari_unet.segment` runs with the result and keeps it beside what it made. Pure
Python and numpy: no torch, no Qt.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari_unet.networks.model import ModelCard

__all__ = ["PRECISIONS", "SEED_OUTPUTS", "Settings", "foreground_mask", "seed_setting"]

#: the setting that places an instance model's seeds -> the model output it reads
SEED_OUTPUTS = {"seed_threshold": "distance", "boundary_threshold": "boundary"}

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Settings:
    """How an image becomes objects: prediction and post-processing, in one place.

    Build it with :meth:`for_model` (the card's values plus overrides); every field is
    checked when it is made, so a bad value fails before any pixel is read.

    Attributes
    ----------
    threshold : float
        Foreground probability above which a pixel belongs to an object, in (0, 1).
    boundary_threshold : float
        Boundary probability below which a foreground pixel may seed an object (models with
        a ``boundary`` output).
    seed_threshold : float
        Distance-to-edge output above which a foreground pixel may seed an object (models
        with a ``distance`` output).
    min_area, max_area : float
        Objects outside ``[min_area, max_area]`` pixels are dropped (``max_area`` None: no
        upper limit).
    min_relative_area : float
        Objects smaller than this share of the median object of their plane are dropped
        (with at least 5 objects in it; one cut by the image border is kept), in [0, 1);
        0 = off. Fragments and specks scale with the nuclei, where a pixel limit does not.
    exclude_border : bool
        Drop objects that touch the image border.
    tile, overlap : int, float or None
        Tile side in pixels and the fraction two neighbouring tiles share. None (the
        default): chosen per image at run time, the tile that computes the fewest pixels
        within the device's memory, with the overlap in pixels the model's receptive field
        asks for (:func:`napari_unet.engine.tile_choice.tiling_for`); the
        result's settings hold the choice.
    batch : int or None
        Tiles per batch; None picks one for the device (8 on CUDA, 4 elsewhere).
    precision : str
        ``auto``, ``fp32``, ``bf16`` or ``fp16``.
    device : str
        ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    compile : bool
        ``torch.compile`` the network first (pays only for long batch jobs).
    tta : bool
        Test-time augmentation: every tile predicted in its 8 flips and quarter turns, the
        logits averaged; 8x the prediction time (refused for models trained without flips).

    >>> Settings(threshold=0.6, min_area=40).threshold
    0.6
    >>> Settings(overlap=1.0)
    Traceback (most recent call last):
    ...
    ValueError: overlap must be in [0, 1), got 1.0
    """

    threshold: float = 0.5
    boundary_threshold: float = 0.5
    seed_threshold: float = 0.5
    min_area: float = 10.0
    max_area: float | None = None
    min_relative_area: float = 0.0
    exclude_border: bool = False
    tile: int | None = None
    overlap: float | None = None
    batch: int | None = None
    precision: str = "auto"
    device: str = "auto"
    compile: bool = False
    tta: bool = False

    def __post_init__(self) -> None:
        def number(name: str, kind: type = float) -> Any:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
            object.__setattr__(self, name, kind(value))
            return kind(value)

        for name in ("threshold", "boundary_threshold", "seed_threshold"):
            if not 0 < number(name) < 1:
                raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {getattr(self, name)}")
        if number("min_area") < 0:
            raise ValueError(f"min_area must be >= 0, got {self.min_area}")
        if self.max_area is not None and number("max_area") < self.min_area:
            raise ValueError(
                f"min_area ({self.min_area:g}) is larger than max_area ({self.max_area:g}); no object could be kept"
            )
        if not 0 <= number("min_relative_area") < 1:
            raise ValueError(
                f"min_relative_area is a share of the median object, in [0, 1), got {self.min_relative_area}"
            )
        if self.tile is not None:
            if isinstance(self.tile, float) and not float(self.tile).is_integer():
                raise ValueError(f"tile must be a whole number of pixels, got {self.tile}")
            if number("tile", int) < 16:
                raise ValueError(f"tile must be at least 16 pixels, got {self.tile}")
        if self.overlap is not None and not 0 <= number("overlap") < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch is not None and number("batch", int) < 1:
            raise ValueError(f"batch must be at least 1 tile, got {self.batch}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a name such as auto, cpu or cuda, got {self.device!r}")
        object.__setattr__(self, "exclude_border", bool(self.exclude_border))
        object.__setattr__(self, "compile", bool(self.compile))
        object.__setattr__(self, "tta", bool(self.tta))

    @classmethod
    def for_model(cls, card: ModelCard | None, **overrides: Any) -> Settings:
        """The card's settings with ``overrides`` on top (an override of None is no override).

        >>> Settings.for_model(None, threshold=0.7, min_area=None).threshold
        0.7
        """
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))}; the settings are {known}")
        base: dict[str, Any] = {}
        if card is not None:
            post = card.postprocess or {}
            base = {"threshold": card.threshold}  # tile and overlap: chosen per image from the card's
            for name in ("boundary_threshold", "seed_threshold", "min_area", "max_area", "min_relative_area"):
                if post.get(name) is not None:
                    base[name] = post[name]
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (checked like a new one)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seed_setting(card: ModelCard | None) -> str | None:
    """The setting that places ``card``'s seeds (``seed_threshold`` for a model with a
    distance output, ``boundary_threshold`` with a boundary output), or None: a model that
    parts objects by their shape alone, or a region model."""
    if card is None or card.activation == "softmax":
        return None
    return next((name for name, output in SEED_OUTPUTS.items() if output in card.classes), None)


def foreground_mask(probabilities: np.ndarray, card: Any, settings: Settings) -> np.ndarray:
    """The mask of a model's output: the class of highest probability (softmax models) or
    foreground ``> settings.threshold``, as uint8."""
    if card is not None and card.activation == "softmax":
        return np.argmax(probabilities, axis=0).astype(np.uint8)
    return (np.asarray(probabilities[0]) > settings.threshold).astype(np.uint8)
