"""``napari-unet info``: how files read."""

from __future__ import annotations

import argparse

from napari_unet.cli._base import command, error


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files to describe")


@command("info", _info_args)
def info(args: argparse.Namespace) -> int:
    """Describe images as napari-unet reads them: shape, axes, type, pixel size."""
    from napari_unet.io import read_image

    failed = 0
    for path in args.inputs:
        try:
            img = read_image(path)
        except (ValueError, OSError) as exc:
            error(str(exc))
            failed += 1
            continue
        scale = ", ".join(f"{a}={s:g} {u}" for a, s, u in zip(img.spatial_axes, img.scale, img.units))
        kind = "labels" if img.is_labels else "image"
        lazy = " (lazy)" if img.lazy else ""
        print(f"{path}: {kind} {img.axes} {img.shape} {img.data.dtype}{lazy}; {scale}")
    return 1 if failed else 0
