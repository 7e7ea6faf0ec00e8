"""Prediction jobs over chosen planes of a stack: generators run in a worker thread,
yielding progress and putting each finished plane's probabilities and labels into
``partial`` (plane -> result, a :class:`~napari_unet.work.workflow.PredictionRun`'s), which the
dock moves into its layers on the GUI thread a few at a time (or
:meth:`~napari_unet.work.workflow.PredictionRun.write_all` puts into the work). No Qt here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["engine_job", "plane_job"]


def engine_job(model: Any, data: Any, axes: str, settings: Any, planes: list[int], partial: dict) -> Any:
    """Planes of a lazily opened stack through :func:`napari_unet.segment` out of core.

    The blocks engine the CLI runs for images larger than memory: the blocks of a plane are
    predicted in parallel threads, each plane only when its turn comes, so memory holds
    about one plane whatever the stack's length, and its objects equal the in-memory ones.
    Stops between planes.
    """
    from napari_unet.jobs import Progress
    from napari_unet.objects.pipeline import segment

    plane_axes = axes.replace("T", "").replace("Z", "")
    for k, p in enumerate(planes):
        yield Progress(k, len(planes), {"plane": p, "engine": "blocks"})
        result = segment(model, data[p], axes=plane_axes, settings=settings, out_of_core=True)
        partial[p] = (result.probabilities, result.labels)
        yield Progress(k + 1, len(planes), {"plane": p, "planes_done": k + 1, "engine": "blocks"})
    return len(planes)


def plane_job(
    model: Any,
    data: Any,
    axes: str,
    spatial: tuple[int, ...],
    planes: list[int],
    settings: Any,
    partial: dict,
    warnings: set[str],
    channels: list[int] | None = None,
) -> Any:
    """Segment plane by plane with :func:`napari_unet.segment`, yielding progress and
    each finished plane's result."""
    from napari_unet.jobs import Progress
    from napari_unet.objects.pipeline import segment_iter

    stack_shape = spatial[:-2]
    plane_axes = axes.replace("T", "").replace("Z", "")  # YX, YXS or CYX
    steps_per_plane = None
    for k, p in enumerate(planes):
        index = np.unravel_index(p, stack_shape) if stack_shape else ()
        plane, paxes = np.asarray(data[tuple(index)]), plane_axes
        context = model.card.context
        if context and len(stack_shape) == 1 and "C" not in plane_axes and "S" not in plane_axes:
            # a 2.5D model sees the neighbouring slices too, as channels (the ends repeat)
            near = [min(max(p + d, 0), stack_shape[0] - 1) for d in range(-context, context + 1)]
            plane, paxes = np.stack([np.asarray(data[z]) for z in near]), "C" + plane_axes
        gen = segment_iter(model, plane, axes=paxes, settings=settings, channels=channels)
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            steps_per_plane = ev.total
            yield Progress(k * ev.total + ev.done, len(planes) * ev.total, {"plane": p})
        # stored here, in the worker, rather than sent through a signal: the GUI reads it only
        # after the job has ended (returned or aborted), so no result can arrive late
        partial[p] = (result.probabilities, result.labels)
        warnings.update(result.warnings)  # (a set: one notification per kind of warning)
        done = (k + 1) * (steps_per_plane or 1)
        yield Progress(done, len(planes) * (steps_per_plane or 1), {"plane": p, "planes_done": k + 1})
    return len(planes)
