"""``napari-unet suggest``: which slices of a stack (or regions of one image) to check next."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from napari_unet.cli._base import _drive, _model_args, _positive_int, command, error, settings_from_args, slice_numbers


def _suggest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="a stack (TIFF, NIfTI, NRRD, DICOM folder, ...) or one large image")
    _model_args(p)
    p.add_argument("--labels", default=None, metavar="L", help="the labels as they are now, to check against the image")
    p.add_argument(
        "--annotated", default=None, metavar="Z,...", help="slices already checked: left out of the ranking (from 0)"
    )
    p.add_argument("--n", type=_positive_int, default=10, metavar="K", help="print the K slices most worth checking")
    p.add_argument(
        "--json", default=None, metavar="FILE", help='write every unchecked slice\'s score: {"slices": [...]}'
    )
    p.add_argument(
        "--method",
        default="both",
        choices=("both", "flips", "margin"),
        help="flips: how much the answer moves when the image is mirrored (3 predictions); margin: how close each "
        "pixel's probability is to the decision (1 prediction); both: their sum",
    )
    p.add_argument("--region", type=_positive_int, default=256, help="one 2D image: the side of the regions ranked")


@command("suggest", _suggest_args)
def suggest_cmd(args: argparse.Namespace) -> int:
    """Rank the unchecked slices of a stack (or the regions of one image) by how much a person's
    check is likely to change them: the pixels the model is unsure of, summed."""
    from napari_unet.engine.scale import load_model_cached
    from napari_unet.io import read_image
    from napari_unet.objects.suggest import check_labels_fit, rank_regions, rank_slices, uncertainty_iter

    model = load_model_cached(args.model)
    settings = settings_from_args({"device": args.device}, model.card)
    checked = slice_numbers(args.annotated) if args.annotated else []
    img = read_image(args.image)
    if img.lazy:
        raise ValueError(f"{args.image}: too large to rank in memory; crop it to the part you are checking")
    spatial = tuple(n for n, a in zip(img.data.shape, img.axes) if a not in "CS")
    stack = spatial[:-2]
    n_slices = int(np.prod(stack)) if stack else 1
    outside = [z for z in checked if z >= n_slices]
    if outside:
        raise ValueError(
            f"--annotated: slice(s) {outside} do not exist; {args.image} has slices 0 to {n_slices - 1}"
            if stack else f"--annotated: {args.image} is one 2D image, it has no slices"
        )  # fmt: skip
    if args.labels is not None:
        labels = np.asarray(read_image(args.labels).data)
        check_labels_fit(labels, model.card, spatial, source=f"the labels {args.labels}")
        if checked:
            flat = labels.reshape(-1, *labels.shape[-2:])
            if not any(flat[z].any() for z in checked):
                error(f"warning: the --annotated slices {checked} hold no labels in {args.labels}; were they drawn?")
    elif checked and not stack:
        raise ValueError(f"--annotated: {args.image} is one 2D image, it has no slices")

    job = uncertainty_iter(model, img.data, axes=img.axes, method=args.method, settings=settings)
    _, u, method = _drive(job, "predicting (each mirrored view)")
    if method != args.method:
        error(f"note: model {model.card.name!r} was trained without mirror flips; ranked by the margin alone")
    if not stack:  # one image: its regions
        regions = rank_regions(u, size=args.region)
        for r in regions[: args.n]:
            print(f"y {r.y}-{r.y + r.height}, x {r.x}-{r.x + r.width}: {r.score:.1f} pixel(s) likely to change")
        payload = {"regions": [r.__dict__ for r in regions], "method": method}
    else:
        ranked = rank_slices(u, checked=checked)
        if not ranked:
            raise ValueError(f"every slice of {args.image} is checked; there is nothing left to suggest")
        for s in ranked[: args.n]:
            print(f"slice {s.z}: {s.score:.1f} pixel(s) likely to change")
        payload = {"slices": [{"z": s.z, "score": s.score} for s in ranked], "method": method}
    if args.json:
        out = Path(args.json)
        out.write_text(json.dumps(payload, indent=1))
        print(f"-> {out}")
    return 0
