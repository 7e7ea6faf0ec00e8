"""Start napari with the plugin: what ``napari-unet view`` runs."""

from __future__ import annotations

from collections.abc import Sequence


def open_viewer(paths: Sequence[str] = (), *, sample: str | None = None) -> int:
    """Open a napari window with a sample and/or files (through our reader), run it."""
    import napari

    viewer = napari.Viewer(title="napari-unet")
    if sample:
        viewer.open_sample("napari-unet", sample)
    for path in paths:
        viewer.open(path, plugin="napari-unet")
    napari.run()
    return 0
