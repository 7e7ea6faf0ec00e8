"""``napari-unet view``: the window, with the plugin and files or a sample (the napari side is in _widgets)."""

from __future__ import annotations

import argparse

from napari_unet.cli._base import command


def _view_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files to open")
    p.add_argument(
        "--sample", choices=["rpe1", "u2os", "misc", "ct"], help="open a shipped sample image with its labels"
    )


@command("view", _view_args)
def view(args: argparse.Namespace) -> int:
    """Open napari with the plugin, the given files and/or a sample image."""
    from napari_unet._widgets.launch import open_viewer

    return open_viewer(args.inputs, sample=args.sample)
