"""Long work as generators: the progress event they yield and the helper that drives one.

Every long job of the core (prediction, counting, training) is a generator that yields
:class:`Progress` and returns its result (``StopIteration.value``); it can be stopped
between steps by closing it. The dock runs it in napari's ``thread_worker``, the CLI
under a tqdm bar, and tests with :func:`run_to_end`. No torch, no Qt.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Progress", "relay", "run_to_end"]

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long job: ``done`` of ``total`` units, plus figures (e.g. loss)."""

    done: int
    total: int
    info: dict = field(default_factory=dict)


def run_to_end(gen: Generator) -> Any:
    """Exhaust a progress generator and return its result (``StopIteration.value``).

    >>> def job():
    ...     yield Progress(1, 2)
    ...     yield Progress(2, 2)
    ...     return "done"
    >>> run_to_end(job())
    'done'
    """
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def relay(gen: Generator[Progress, None, T], transform: Callable[[Progress], Progress]) -> Generator[Progress, None, T]:
    """``gen``'s events passed through ``transform`` (e.g. progress rescaled into a larger
    job), and its result returned; closing the relay closes ``gen``."""
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            yield transform(event)
    finally:
        gen.close()
