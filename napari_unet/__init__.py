"""napari-unet: U-Net segmentation, correction, fine-tuning and counting for microscopy.

Importing this package is cheap: it pulls in neither torch nor Qt. ``load_model``,
``segment`` (the one pipeline from an image to objects), ``Settings`` and ``predict`` are
resolved on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("napari_unet.networks.model", "load_model"),
    "predict": ("napari_unet.engine.predict", "predict"),
    "segment": ("napari_unet.objects.pipeline", "segment"),
    "segment_iter": ("napari_unet.objects.pipeline", "segment_iter"),
    "Segmentation": ("napari_unet.objects.pipeline", "Segmentation"),
    "Settings": ("napari_unet.objects.pipeline", "Settings"),
    "read_image": ("napari_unet.io", "read_image"),
    "write_tiff": ("napari_unet.io", "write_tiff"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'napari_unet' has no attribute {name!r}")
