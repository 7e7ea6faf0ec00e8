"""What one training run is given (:class:`TrainConfig`) and what it gives back
(:class:`TrainResult`): the settings, checked when made, and the best checkpoint with the
quality gate's verdict. :mod:`napari_unet.training.train` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from napari_unet.training.losses import LOSSES

__all__ = ["TrainConfig", "TrainResult"]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. ``max_seconds`` and ``epochs`` both bound it."""

    epochs: int = 20
    steps_per_epoch: int = 25
    max_seconds: float | None = None
    batch_size: int = 4
    crop: int = 192
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 10
    patience: int = 6
    val_fraction: float = 0.25
    #: weights are scored and kept as an exponential moving average over steps (0 = off):
    #: a minute of small noisy batches leaves the raw weights jumping from step to step
    ema: float = 0.9
    foreground_bias: float = 0.6
    #: ``none``, ``light``, ``medium`` or ``heavy`` (True/False: medium/none)
    augment: bool | str = True
    #: ``dice_ce``, ``dice``, ``ce``, ``focal`` or ``dice_focal``
    loss: str = "dice_ce"
    #: weight of each output class in the cross-entropy or focal term (None: equal)
    class_weights: tuple[float, ...] | None = None
    #: a semantic model's crops also centre on checked background it marks as a class (its
    #: false positives, found after each epoch): what it confuses, it learns to leave out
    hard_negatives: bool = True
    #: early stopping waits at least this many epochs (and half of max_seconds) before it
    #: may stop a run: a model trained from scratch learns little in its first epochs
    min_epochs: int = 0
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.batch_size < 1:
            raise ValueError("epochs, steps_per_epoch and batch_size must be at least 1")
        if self.crop < 16:
            raise ValueError(f"crop must be at least 16 pixels, got {self.crop}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        from napari_unet.training.augment import LEVELS

        if self.augmentation not in ("none", *LEVELS):
            raise ValueError(f"augment must be none, {', '.join(LEVELS)}, got {self.augment!r}")
        if self.class_weights is not None:
            object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
            if any(not w >= 0 for w in self.class_weights) or not any(self.class_weights):
                raise ValueError(f"class weights must be >= 0 and not all 0, got {list(self.class_weights)}")
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be positive, got {self.lr}")

    @property
    def augmentation(self) -> str:
        """The augmentation level by name."""
        if isinstance(self.augment, bool):
            return "medium" if self.augment else "none"
        return str(self.augment)


@dataclass
class TrainResult:
    model: Any
    card: Any
    history: list[dict]
    best_epoch: int
    best_score: float
    parent_scores: dict | None
    new_scores: dict
    better: bool | None
    stopped: bool
    seconds: float

    def headline(self) -> str:
        """The verdict in a few words, whole in one line of a notification (the detail is
        :meth:`verdict`, shown in the step)."""
        if self.parent_scores is None:
            dice = self.new_scores.get("dice")
            return f"new model, held-out Dice {dice:.2f}" if dice is not None else "new model trained"
        return "better than its parent" if self.better else "NOT better than its parent"

    def verdict(self) -> str:
        new = self.new_scores
        if self.parent_scores is None:
            per_class = new.get("classes") or {}
            if per_class:
                names = ", ".join(f"{v['name']} {v['dice']:.3f}" for v in per_class.values())
                return f"new model: Dice per class {names} on held-out checked data (no parent to compare)"
            return (
                f"new model: Dice {new['dice']:.3f}, F1 {new['f1']:.3f} on held-out checked data (no parent to compare)"
            )
        old = self.parent_scores
        word = "better" if self.better else "not better"
        return (
            f"new model is {word}: Dice {new['dice']:.3f} vs {old['dice']:.3f}, "
            f"object F1 {new['f1']:.3f} vs {old['f1']:.3f} on held-out checked data"
        )
