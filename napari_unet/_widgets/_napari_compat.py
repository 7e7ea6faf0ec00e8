"""Everything the dock needs from napari that napari does not offer publicly, in one place.

Each accessor returns None where a napari version keeps the thing elsewhere, so the dock
degrades (a confirmation or a warm-up is skipped) rather than breaks;
:func:`missing_private_api` lists what this napari lacks, and a test fails loudly when
napari moves one of them.
"""

from __future__ import annotations

from typing import Any

#: napari's Labels drawing-tool overlays: napari builds their vispy visuals when the layer is
#: added (~40-50 ms of the ~0.1-0.17 s one insertion takes on the GUI thread here), although
#: they only draw in paint/polygon mode
TOOL_OVERLAYS = ("polygon", "brush_stroke")


def qt_window(viewer: Any) -> Any:
    """The viewer's QMainWindow (for the close-with-unsaved-work guard), or None."""
    window = getattr(viewer, "window", None)
    return getattr(window, "_qt_window", None) if window is not None else None


def layer_overlays(layer: Any) -> Any:
    """A layer's overlays by name (the Labels drawing tools' among them), or None."""
    return getattr(layer, "_overlays", None)


def history_lengths(layer: Any) -> tuple[int, int] | None:
    """How many steps napari can undo and redo on a Labels layer, or None. An undo changes the
    labels without a paint event; these lengths are how the Correct step tells that one happened."""
    undo, redo = getattr(layer, "_undo_history", None), getattr(layer, "_redo_history", None)
    return None if undo is None or redo is None else (len(undo), len(redo))


def notification_toasts() -> list | None:
    """The toasts napari shows now, oldest first (``NapariQtNotification._instances``), or None."""
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:
        return None
    instances = getattr(NapariQtNotification, "_instances", None)
    return list(instances) if instances is not None else None


def missing_private_api(viewer: Any, labels_layer: Any) -> list[str]:
    """The private napari attributes used here that this napari does not have."""
    missing = []
    if qt_window(viewer) is None:
        missing.append("Window._qt_window")
    overlays = layer_overlays(labels_layer)
    if overlays is None:
        missing.append("Layer._overlays")
    else:
        missing += [f"Labels._overlays[{name!r}]" for name in TOOL_OVERLAYS if name not in overlays]
    if history_lengths(labels_layer) is None:
        missing.append("Labels._undo_history/_redo_history")
    return missing
