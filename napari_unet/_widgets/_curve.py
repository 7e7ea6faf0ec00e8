"""A tiny live plot of training loss (per step) and validation Dice (per epoch; one line
per class for a multi-class model)."""

from __future__ import annotations

import itertools
from typing import Any

from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QWidget


class CurveWidget(QWidget):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(90)
        self.loss: list[float] = []
        self.dice: list[tuple[int, float]] = []  # (step, dice)
        self.per_class: dict[str, list[tuple[int, float]]] = {}  # class name -> [(step, dice)]

    #: line colours of the classes (the mean Dice keeps its blue)
    CLASS_COLOURS = ((255, 96, 96), (96, 220, 96), (230, 120, 255), (255, 210, 60), (60, 230, 230))

    def clear(self) -> None:
        self.loss, self.dice, self.per_class = [], [], {}
        self.update()

    def add_class_dice(self, step: int, values: dict[str, float]) -> None:
        """One validation Dice per class at ``step`` (a multi-class model's epoch)."""
        for name, value in values.items():
            self.per_class.setdefault(str(name), []).append((int(step), float(value)))
        self.update()

    def add_loss(self, value: float) -> None:
        self.loss.append(float(value))
        if len(self.loss) % 5 == 0:
            self.update()

    def add_dice(self, step: int, value: float) -> None:
        self.dice.append((int(step), float(value)))
        self.update()

    def paintEvent(self, event: Any) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(38, 41, 48))
        w, h = self.width() - 8, self.height() - 16
        n = max(len(self.loss), max((s for s, _ in self.dice), default=0), 2)
        if self.loss:
            top = max(self.loss) or 1.0
            p.setPen(QPen(QColor(240, 160, 60), 1.5))
            pts = [QPointF(4 + w * i / (n - 1), 4 + h * (1 - v / top)) for i, v in enumerate(self.loss)]
            for a, b in itertools.pairwise(pts):
                p.drawLine(a, b)
        if self.dice:
            p.setPen(QPen(QColor(90, 200, 250), 2))
            pts = [QPointF(4 + w * (s - 1) / (n - 1), 4 + h * (1 - d)) for s, d in self.dice]
            for a, b in itertools.pairwise(pts):
                p.drawLine(a, b)
            for pt in pts:
                p.drawEllipse(pt, 2, 2)
        for k, series in enumerate(self.per_class.values()) if len(self.per_class) > 1 else ():
            p.setPen(QPen(QColor(*self.CLASS_COLOURS[k % len(self.CLASS_COLOURS)]), 1.2))
            pts = [QPointF(4 + w * (s - 1) / (n - 1), 4 + h * (1 - d)) for s, d in series]
            for a, b in itertools.pairwise(pts):
                p.drawLine(a, b)
        p.setPen(QColor(200, 200, 200))
        last = f"  val Dice {self.dice[-1][1]:.3f}" if self.dice else ""
        if len(self.per_class) > 1:
            last += "  (" + ", ".join(f"{name} {v[-1][1]:.2f}" for name, v in self.per_class.items()) + ")"
        text = f"loss {self.loss[-1]:.3f}" if self.loss else "loss / validation Dice"
        p.drawText(6, self.height() - 3, text + last)
        p.end()
