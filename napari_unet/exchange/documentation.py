"""The words of an exported package: its README (what goes in, what comes out, how objects
are made of it, how it was validated and trained) and the input's one-line description."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from napari_unet.exchange._common import _identifier

if TYPE_CHECKING:
    from napari_unet.exchange.export import ExportResult
    from napari_unet.networks.model import ModelCard


def _input_text(card: ModelCard) -> str:
    norm = card.normalisation
    kind = norm.get("kind")
    scaled = {
        "percentile": f"scaled by its own {norm.get('low')}-{norm.get('high')} percentiles per channel",
        "zscore": "scaled to zero mean and unit variance per channel",
        "dataset": "scaled by the training set's mean and standard deviation",
        "range": f"scaled from {norm.get('min')}-{norm.get('max')} to 0-1",
        "window": f"a CT window, level {norm.get('level')} width {norm.get('width')} HU, clipped to 0-1",
        "none": "taken as it is",
    }.get(kind, kind)
    what = "RGB" if card.in_channels == 3 and not card.context else f"{card.in_channels}-channel"
    return f"{what} image, {scaled}"


def _splitting(card: Any) -> str:
    """How napari-unet parts touching objects with this model's outputs, and which it keeps."""
    post = card.postprocess or {}
    if "distance" in card.classes:
        how = (
            "napari-unet seeds one object where the distance channel is above "
            f"{post.get('seed_threshold', 0.5)} and grows the seeds down it by a watershed, within the foreground."
        )
    elif "boundary" in card.classes:
        how = (
            "napari-unet splits touching objects by a watershed from the foreground minus the boundary channel "
            f"(below {post.get('boundary_threshold', 0.5)})."
        )
    else:
        how = "napari-unet splits touching objects by a watershed on the distance transform of the mask."
    kept = f" Objects under {post.get('min_area', 10):g} pixels are dropped"
    if post.get("min_relative_area"):
        kept += (
            f", and those under {post['min_relative_area']:g} of the image's median object (with at least 5 objects; "
            "an object cut by the image border is kept)"
        )
    return how + kept + "."


def _documentation(card: ModelCard, result: ExportResult, halo: int, version: str) -> str:
    metrics = "\n".join(
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in card.metrics.items()
    )
    training = card.training or {}
    lines = [
        f"# {card.name}",
        "",
        card.description or f"A napari-unet {card.kind} model.",
        "",
        "Made with [napari-unet](https://github.com/napari-unet/napari-unet) "
        f"{version}: a {card.architecture} ({json.dumps(card.arch_args)}).",
        "",
        "## Input",
        "",
        f"- {_input_text(card)}.",
        (f"- channels {card.channels} of a multi-channel image, in that order." if card.channels else ""),
        (
            f"- 2.5D: the slice with {card.context} neighbouring slice(s) on each side as channels."
            if card.context
            else ""
        ),
        (
            f"- whole images, resized to {card.input_size}x{card.input_size} pixels."
            if card.input_size
            else f"- any size: the network mirrors the image out to a multiple of the step and crops its output "
            f"back; tiles of a multiple of the step waste nothing. napari-unet uses {card.tile}-pixel tiles, "
            f"{halo} pixels of halo on each side."
        ),
        "",
        "## Output",
        "",
        *(f"- `{_identifier(c)}`: {card.outputs.get(c, c)}" for c in card.classes),
        "",
        (
            f"Objects: threshold the first channel at {card.threshold}; {_splitting(card)}"
            if card.kind == "instance"
            else "Class map: the most probable class of each pixel (0 = background)."
        ),
        "",
        "## Validation",
        "",
        "Measured by napari-unet on images held out from training:",
        "",
        "| metric | value |",
        "|---|---|",
        metrics or "| (none recorded) | |",
        "",
        "## Training data and licence",
        "",
        f"- {card.licence or 'not recorded'}",
        f"- images: {len(training.get('images', []))} ({', '.join(map(str, training.get('images', [])[:5]))}"
        f"{', ...' if len(training.get('images', [])) > 5 else ''})",
        (f"- fine-tuned from `{card.parent}`." if card.parent else ""),
        "",
        "## Test tensors",
        "",
        f"Cut from {result.example}, and predicted by napari-unet itself.",
        "",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"
