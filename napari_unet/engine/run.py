"""One run of a model over an image, resolved once.

:func:`resolve_run` is the only place where a run's device, precision, batch, tile,
overlap, plane layout and engine are decided: :func:`napari_unet.segment`,
:func:`napari_unet.predict` and :func:`napari_unet.engine.scale.predict_lazy` call it once
and hand the :class:`Run` to :func:`napari_unet.engine.predict.engine_iter`, which keeps no
defaults of its own. The engine is an option of the run, chosen here, not by the callers; the
three that tile share one grid (:class:`~napari_unet.engine.tiling.Grid`), its weights and
blending order (the host tiling and the device loop are N-D; the blocks loop is 2D so far):

``tiles``
    Tiles cut on the host, batched through the network (:mod:`napari_unet.engine.tiling`).
``device``
    The same grid, weights and blending order with each plane kept on the GPU
    (:mod:`napari_unet.engine.device`); chosen on CUDA, where host-side tiling costs more
    than the network.
``whole``
    Each plane resized to the network's fixed input (:mod:`napari_unet.engine.whole_image`).
``blocks``
    Out of core: the image as a dask computation, block by block, each block running
    exactly the tiles of the plane's grid that touch it (:mod:`napari_unet.engine.scale`), so the
    probabilities equal the in-memory ones; written into ``out`` (e.g. a zarr store) one
    plane at a time.

No Qt, and torch only inside the functions that run the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari_unet.objects.settings import Settings

if TYPE_CHECKING:
    import torch

    from napari_unet.engine.planes import PlaneLayout

__all__ = ["DEFAULT_BLOCK", "ENGINES", "Run", "default_batch", "out_of_core_refusal", "resolve_run"]

ENGINES = ("tiles", "device", "whole", "blocks")

#: side of the blocks the out-of-core engine predicts (it reads one tile more on each side)
DEFAULT_BLOCK = 2048


def tiling_engine(device: torch.device, compile: bool) -> str:
    """``device`` (each plane kept on the GPU) on CUDA, where host-side tiling costs more than
    the network, unless the network is compiled; ``tiles`` (host tiling) elsewhere."""
    return "device" if device.type == "cuda" and not compile else "tiles"


def default_batch(device: torch.device) -> int:
    """Tiles per batch when none is asked for: 8 on CUDA, 4 elsewhere."""
    return 8 if device.type == "cuda" else 4


@dataclass(frozen=True)
class Run:
    """A run as resolved: what :func:`~napari_unet.engine.predict.engine_iter` carries out.

    Attributes
    ----------
    settings : Settings
        Every field decided: the device's name, precision, batch, tile and overlap.
    device : torch.device
        Where the network runs.
    image, axes :
        The image as the network reads it (channels chosen, neighbouring slices added for a
        2.5D model) and its axes.
    layout : PlaneLayout
        How the image splits into the planes the network sees.
    engine : str
        One of :data:`ENGINES`.
    block : int
        Block side for the ``blocks`` engine.
    """

    settings: Settings
    device: Any
    image: Any
    axes: str
    layout: PlaneLayout
    engine: str
    block: int = DEFAULT_BLOCK

    @property
    def n_planes(self) -> int:
        return self.layout.n_planes


def out_of_core_refusal(card: Any, axes: str) -> str | None:
    """Why an image of ``axes`` cannot go block by block through ``card``'s model, or None."""
    if card.input_size or card.context or card.channels:
        return (
            f"model {card.name!r} resizes whole images or reads neighbouring slices or chosen channels, which the "
            "out-of-core engine does not do yet"
        )
    if axes not in ("YX", "ZYX", "TYX"):
        return f"the out-of-core engine takes grayscale YX, ZYX or TYX images, got axes {axes!r}"
    return None


def resolve_run(
    model: Any,
    image: Any,
    *,
    axes: str | None = None,
    settings: Settings | None = None,
    channels: list[int] | None = None,
    out_of_core: bool = False,
    block: int = DEFAULT_BLOCK,
    prepared: bool = False,
    **overrides: Any,
) -> Run:
    """Decide everything about one run, once: a bad device, shape or setting fails here,
    before any pixel is predicted.

    ``settings`` (default: the card's) with ``overrides`` on top; the tile, when not given,
    is the one that computes the fewest pixels for this plane within the device's memory
    (:func:`napari_unet.engine.tile_choice.tiling_for`). ``prepared``: the image is already what
    the network reads (its channels chosen, a 2.5D model's neighbouring slices added).
    """
    from napari_unet.engine.inference import pick_device, resolve_precision
    from napari_unet.engine.planes import plane_layout, select_channels, with_context

    card = getattr(model, "card", None)
    if card is None:
        raise ValueError("the model has no card; load it with napari_unet.load_model")
    if card.spatial_dims != 2:
        raise ValueError(
            f"model {card.name!r} is a {card.spatial_dims}D network, and napari-unet predicts with 2D networks only "
            "so far (a stack slice by slice); choose a 2D model"
        )
    settings = settings or Settings.for_model(card)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:
        Settings.for_model(None, **changes)  # names an unknown setting
        settings = settings.replace(**changes)
    if block < 1:
        raise ValueError(f"block must be a positive number of pixels, got {block}")
    dev = pick_device(settings.device)  # an absent device, then a shape that does not fit, before any work
    try:
        if not prepared:
            image, axes = select_channels(image, axes, card.channels if channels is None else channels,
                                          card.image_channels)  # fmt: skip
            image, axes = with_context(image, axes, card.context)
        layout = plane_layout(tuple(image.shape), axes, card.in_channels)
    except ValueError as exc:
        raise ValueError(f"model {card.name!r}: {exc}") from None
    axes = layout.axes
    if out_of_core:
        why = out_of_core_refusal(card, axes)
        if why:
            raise ValueError(why)
    if settings.tta:
        from napari_unet.engine.inference import check_tta_allowed

        check_tta_allowed(card)
    precision = resolve_precision(settings.precision, dev)
    resolved = settings.replace(
        device=str(dev) if settings.device == "auto" else settings.device,
        precision=precision,
        batch=settings.batch or default_batch(dev),
    )
    if card.input_size:  # whole-image mode: one tile, the plane resized to the network's input
        resolved = resolved.replace(tile=card.input_size, overlap=0.0)
    elif resolved.tile is None:  # the tile that computes the fewest pixels for this plane shape
        from napari_unet.engine.tile_choice import tiling_for

        chosen = tiling_for(card, layout.spatial_shape[-2:], divisor=getattr(model, "size_divisor", 16),
                            precision=precision, device=dev, batch=resolved.batch)  # fmt: skip
        resolved = resolved.replace(tile=chosen.tile, overlap=chosen.overlap if settings.overlap is None else settings.overlap,
                                    batch=resolved.batch if settings.batch is not None else chosen.batch)  # fmt: skip
    elif resolved.overlap is None:
        resolved = resolved.replace(overlap=card.overlap)
    if card.input_size:
        engine = "whole"
    elif out_of_core:
        engine = "blocks"
    else:
        engine = tiling_engine(dev, resolved.compile)
    return Run(resolved, dev, image, axes, layout, engine, int(block))
