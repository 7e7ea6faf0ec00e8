"""``napari-unet interpolate``: fill a stack's labels between the slices a person drew."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from napari_unet.cli._base import command, slice_numbers


def _interpolate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("labels", metavar="LABELS", help="a stack's labels (TIFF, NIfTI, NRRD, ...), drawn on some slices")
    p.add_argument(
        "--annotated",
        required=True,
        metavar="Z,...",
        help="the checked slices, those drawn and those checked empty (slice numbers start at 0)",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the filled labels (.tif, .nii.gz)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")


@command("interpolate", _interpolate_args)
def interpolate_cmd(args: argparse.Namespace) -> int:
    """Fill the slices between checked slices by shape-based interpolation; the checked slices and
    whatever is already labelled between them stay as they are."""
    from napari_unet.io import read_image
    from napari_unet.io.writing import write_result
    from napari_unet.objects.interpolate import fill_between

    checked = slice_numbers(args.annotated)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; give --overwrite to replace it, or another --out")
    if not out.name.lower().endswith((".tif", ".tiff", ".nii", ".nii.gz")):
        raise ValueError(f"--out {out.name}: write the labels as .tif or .nii.gz")
    img = read_image(args.labels)
    if img.channel_axis is not None or img.rgb:
        raise ValueError(f"{args.labels}: holds {img.axes} (colour or channels), not labels; give a labels stack")
    if img.lazy:
        raise ValueError(f"{args.labels}: too large to hold in memory for filling; crop it to the slices you drew")
    labels = np.asarray(img.data)
    try:
        filled, changed = fill_between(labels, checked)
    except ValueError as exc:
        raise ValueError(f"{args.labels}: {exc}") from None
    write_result(out, filled, image=img, axes=img.spatial_axes, labels=True)
    between = [z for a, b in itertools.pairwise(sorted(set(checked))) for z in range(a + 1, b)]
    print(f"{args.labels}: filled {len(changed)} of the {len(between)} slice(s) between the checked ones -> {out}")
    return 0
