"""A multi-channel image opened as one layer per channel (``NAME [chK]``, as the reader
names them), read back as the channels a model takes."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from napari_unet._widgets._common import image_axes

__all__ = ["ChannelStack", "channel_stack"]


class ChannelStack:
    """Several channel layers' data read as one: ``stack[index]`` is the channels of that
    slice, stacked first (each layer read only where asked, so a lazy stack stays lazy)."""

    def __init__(self, layers_data: list[Any]) -> None:
        self.parts = layers_data
        self.shape = tuple(layers_data[0].shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.stack([np.asarray(part[index]) for part in self.parts])


def channel_stack(layers: Any, layer: Any, typed: str, card: Any) -> tuple[Any, str, list[int]]:
    """The channel numbers ``typed`` (Predict's *channels*, e.g. ``2,0``), from the layers of
    ``layer``'s image that the reader made one per channel (``NAME [chK]``), as one stack with
    a channel axis, its axes, and the channels the model takes of it."""
    want = typed.replace(" ", "")
    try:
        numbers = [int(c) for c in want.split(",") if c]
    except ValueError:
        numbers = []
    if len(numbers) != card.image_channels:
        raise ValueError(
            f"the model takes {card.image_channels} channels; type their numbers in 'channels', e.g. "
            f"{','.join(str(c) for c in (card.channels or range(card.image_channels)))}"
        )
    match = re.fullmatch(r"(.*) \[ch(\d+)\]", layer.name)
    base = match.group(1) if match else None
    found = {}
    for other in layers:
        m = re.fullmatch(r"(.*) \[ch(\d+)\]", other.name)
        if m and m.group(1) == base and getattr(other, "rgb", False) is False and other.data.shape == layer.data.shape:
            found[int(m.group(2))] = other
    missing = [c for c in numbers if c not in found]
    if base is None or missing:
        raise ValueError(
            f"the model takes channels {','.join(map(str, numbers))} of a multi-channel image, but "
            + (f"'{layer.name}' is a single-channel layer" if base is None else f"no layer '{base} [ch{missing[0]}]'")
            + "; open the multi-channel file (each channel becomes a layer 'NAME [chK]') and choose one of them"
        )
    return (
        ChannelStack([found[c].data for c in numbers]),
        image_axes(layer)[:-2] + "CYX",
        list(range(len(numbers))),
    )
