"""Warm-ups that keep the window responsive: what the background jobs will import and build,
done once on the GUI thread when a dock widget opens (never at napari start-up), and the
start-up objects frozen out of the garbage collector's full passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["freeze_startup_objects", "preload_core", "preload_layers", "preload_training", "refreeze_soon"]


def preload_core() -> None:
    """Import what the background jobs will need, now, on the GUI thread.

    Importing a module holds Python's GIL: the first ``skimage.segmentation`` import
    inside a training worker froze the window for ~0.35 s (benchmarks/bench_responsiveness.py).
    Done when a dock widget is created (the user is opening it), never at napari start-up.
    """
    import pandas  # noqa: F401 - a Labels layer's features table: 0.2 s at the first result layer
    import scipy.ndimage
    import scipy.optimize  # noqa: F401
    import skimage.measure
    import skimage.morphology
    import skimage.segmentation  # noqa: F401
    import torch  # noqa: F401

    import napari_unet.engine.inference
    import napari_unet.objects.count
    import napari_unet.objects.metrics
    import napari_unet.objects.pipeline
    import napari_unet.training.train  # noqa: F401

    freeze_startup_objects()


_FROZEN = False


def freeze_startup_objects() -> None:
    """Exclude the objects napari, Qt and torch made at start-up from later garbage
    collections (``gc.freeze``), once per process.

    A full collection walks every tracked object while holding the GIL, and a napari
    window with torch loaded holds ~0.5 million: 110-210 ms each here, at moments no one
    chooses, freezing the window (the 0.3 s gaps bench_responsiveness saw now and then
    while training). Garbage is collected first, so nothing collectable is kept.
    """
    global _FROZEN
    if _FROZEN:
        return
    import gc

    gc.collect()
    gc.freeze()
    _FROZEN = True


_REFREEZE_PENDING = False
#: layers added since the last freeze: outside the frozen generation, so napari's own
#: collection on removal reclaims them and no refreeze is needed
_YOUNG: Any = None


def _note_young_layer(event: Any) -> None:
    global _YOUNG
    import weakref

    if _FROZEN:
        if _YOUNG is None:
            _YOUNG = weakref.WeakSet()
        _YOUNG.add(event.value)


def refreeze_soon(event: Any = None) -> None:
    """After a layer is removed: give frozen objects back to the collector (a closed
    layer caught in a reference cycle would otherwise keep its memory), collect, freeze
    what is still alive. Once per event-loop turn, however many widgets ask; not for a
    layer added since the last freeze (a full collection takes ~0.2 s here, and napari
    collects such a layer itself when it removes it)."""
    global _REFREEZE_PENDING
    if not _FROZEN or _REFREEZE_PENDING:
        return
    removed = getattr(event, "value", None)
    if removed is not None and _YOUNG is not None and removed in _YOUNG:
        return
    from qtpy.QtCore import QTimer

    _REFREEZE_PENDING = True

    def run() -> None:
        global _REFREEZE_PENDING, _YOUNG
        import gc

        _REFREEZE_PENDING = False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        _YOUNG = None  # every layer alive is frozen now

    QTimer.singleShot(0, run)


def preload_training() -> None:
    """Run one throw-away optimizer step on the GUI thread when the Fine-tune widget opens.

    The first ``AdamW.step()`` in a process imports ``torch.distributed.tensor``, sympy and
    more; done inside the training worker, that held the GIL and froze the window for
    ~0.3 s (py-spy --gil on benchmarks/bench_responsiveness.py's fine-tune).
    """
    import torch

    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.AdamW([param], lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    (param * 2).sum().backward()
    optimizer.step()
    scheduler.step()
    torch.amp.GradScaler("cuda", enabled=False)


def preload_layers() -> None:
    """Build, once, the pieces napari makes the first time it shows a Labels layer.

    The first result Labels layer in a process took 0.25-0.41 s on the GUI thread (its
    features table imports pandas; its polygon overlay builds vispy's anti-grain line dash
    atlas); warmed here when the Predict widget opens, the first one takes ~0.15 s like
    every later one (benchmarks/bench_responsiveness.py). Only a warm-up: if a napari or
    vispy version builds things differently, nothing breaks.
    """
    try:
        from napari.layers import Labels
        from vispy.scene.visuals import Line, Polygon

        Labels(np.zeros((2, 2), np.int32))
        Polygon(border_method="agg")
        Line(method="agg")
    except Exception:  # a warm-up must never stop the widget from opening
        pass
