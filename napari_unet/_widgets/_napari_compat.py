"""Everything the dock needs from napari that napari does not offer publicly, in one place.

Each accessor returns None where a napari version keeps the thing elsewhere, so the dock
degrades (a confirmation or a warm-up is skipped) rather than breaks;
:func:`missing_private_api` lists what this napari lacks, and a test fails loudly when
napari moves one of them.
"""

from __future__ import annotations

from typing import Any


def qt_window(viewer: Any) -> Any:
    """The viewer's QMainWindow (for the close-with-unsaved-work guard), or None."""
    window = getattr(viewer, "window", None)
    return getattr(window, "_qt_window", None) if window is not None else None


def layer_overlays(layer: Any) -> Any:
    """A layer's overlays by name (the Labels drawing tools' among them), or None."""
    return getattr(layer, "_overlays", None)


def missing_private_api(viewer: Any, labels_layer: Any) -> list[str]:
    """The private napari attributes used here that this napari does not have."""
    missing = []
    if qt_window(viewer) is None:
        missing.append("Window._qt_window")
    overlays = layer_overlays(labels_layer)
    if overlays is None:
        missing.append("Layer._overlays")
    else:
        from napari_unet._widgets._common import TOOL_OVERLAYS

        missing += [f"Labels._overlays[{name!r}]" for name in TOOL_OVERLAYS if name not in overlays]
    return missing
