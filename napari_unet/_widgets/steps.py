"""The dock's steps, in order: one entry each. A new step is its own file (a
:class:`~napari_unet._widgets._step.Step`) plus one entry here (or :func:`add_step`).

The widget is named as ``"module:Class"`` and imported only when the dock is built, so
napari's start-up pays for none of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["STEPS", "StepEntry", "add_step", "step_class"]


@dataclass(frozen=True)
class StepEntry:
    """One tab of the dock: its title, the widget (``"module:Class"`` or the class) and the
    dock attribute it is reached by."""

    title: str
    widget: Any
    attribute: str


STEPS: list[StepEntry] = [
    StepEntry("Predict", "napari_unet._widgets.predict_widget:PredictWidget", "predict_step"),
    StepEntry("Correct", "napari_unet._widgets.correct_widget:CorrectWidget", "correct_step"),
    StepEntry("Suggest", "napari_unet._widgets.suggest_widget:SuggestWidget", "suggest_step"),
    StepEntry("Fine-tune", "napari_unet._widgets.train_widget:TrainWidget", "train_step"),
    StepEntry("Count", "napari_unet._widgets.count_widget:CountWidget", "count_step"),
]


def add_step(entry: StepEntry, *, after: str | None = None) -> None:
    """Register a step: last, or after the step titled ``after``. A title or attribute
    already taken is refused."""
    if any(e.title == entry.title or e.attribute == entry.attribute for e in STEPS):
        raise ValueError(f"a step titled {entry.title!r} or reached as {entry.attribute!r} is already in the dock")
    titles = [e.title for e in STEPS]
    if after is not None and after not in titles:
        raise ValueError(f"no step titled {after!r}; the steps are {', '.join(titles)}")
    STEPS.insert(titles.index(after) + 1 if after is not None else len(STEPS), entry)


def step_class(entry: StepEntry) -> type:
    """The widget class of an entry, imported now."""
    if not isinstance(entry.widget, str):
        return entry.widget
    module, _, name = entry.widget.partition(":")
    return getattr(importlib.import_module(module), name)
