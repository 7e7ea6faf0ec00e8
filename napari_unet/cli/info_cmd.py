"""``napari-unet info``: how files read."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from napari_unet.cli._base import command, error

if TYPE_CHECKING:
    from napari_unet.io import ImageData


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files or folders to describe (a DICOM folder: each series)"
    )


@command("info", _info_args)
def info(args: argparse.Namespace) -> int:
    """Describe images as napari-unet reads them: shape, axes, type, pixel size."""
    from napari_unet.cli._base import _inputs
    from napari_unet.io import read_image
    from napari_unet.io.formats import format_for

    failed = 0
    for given in args.inputs:
        paths = [given]
        if Path(given).is_dir() and format_for(given, look_inside=False) is None:
            try:  # a folder of DICOM or images: each series and file it holds
                paths = _inputs([given])
            except FileNotFoundError:  # none: read_image says what the folder is
                pass
        for path in paths:
            try:
                img = read_image(path)
            except (ValueError, OSError) as exc:
                error(str(exc))
                failed += 1
                continue
            print(describe(path, img))
            if img.metadata.get("note"):
                print(f"  note: {img.metadata['note']}")
    return 1 if failed else 0


def describe(path: object, img: ImageData) -> str:
    """One line for an image: kind, axes, shape, type, voxel size and, for a DICOM series,
    what it is (never whom)."""
    scale = ", ".join(f"{a}={s:g} {u}" for a, s, u in zip(img.spatial_axes, img.scale, img.units))
    kind = "labels" if img.is_labels else "image"
    lazy = " (lazy)" if img.lazy else ""
    line = f"{path}: {kind} {img.axes} {img.shape} {img.data.dtype}{lazy}; {scale}"
    dicom = img.metadata.get("dicom")
    if dicom:
        said = f"{dicom['modality']} series {dicom['series_number']} '{dicom['series_description']}'"
        line += f"; {said}, {len(dicom['files'])} slice(s) ordered by position"
    if img.metadata.get("window"):
        centre, width = img.metadata["window"]
        line += f"; window {centre:g}/{width:g}"
    return line
