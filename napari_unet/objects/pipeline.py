"""The one pipeline from an image to objects: :func:`segment`.

Every caller turns an image into probabilities and labels here: the CLI's ``predict``
and ``count``, the dock's Predict and Count, the validation inside fine-tuning and the
benchmarks. The settings are one frozen :class:`Settings`, resolved once from the model
card plus the caller's overrides, and every result keeps the settings it was made with,
so the same settings give the same objects everywhere (``tests/test_pipeline.py``
asserts this bit for bit across the CLI, Python, the dock and training).

Probabilities become objects in :func:`labels_iter` only: for a model with a
``boundary`` channel, foreground minus boundary seeds a watershed; for a foreground-only
model the thresholded foreground is split by the distance transform; for a softmax
model the labels are the class of highest probability (a class map, 0 = background).
Thresholds are strict everywhere: a pixel is foreground when its probability is
``> threshold``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.jobs import Progress, run_to_end
from napari_unet.objects.settings import Settings, foreground_mask  # (part of this module's API too)

if TYPE_CHECKING:
    import torch


__all__ = ["Segmentation", "Settings", "foreground_mask", "labels_iter", "objects", "segment", "segment_iter"]


@dataclass(frozen=True)
class Segmentation:
    """What :func:`segment` returns: probabilities, objects, and how they were made.

    Attributes
    ----------
    probabilities : numpy.ndarray
        float32 in [0, 1], ``(classes, *spatial)``: one channel per output of the model.
    labels : numpy.ndarray or None
        Instance ids (int32, 0 = background) for a foreground model, or class ids (uint8,
        0 = background) for a softmax model; None when objects were not asked for.
    settings : Settings
        The settings used, with the device, precision and batch as they were resolved.
    card : ModelCard
        The model's card.
    warnings : tuple of str
        Sentences saying why the result may not be trusted, e.g. an image far from what
        the model was trained on (:func:`napari_unet.objects.fit.fit_warnings`).
    micronuclei : numpy.ndarray or None
        For a model with a ``micronuclei`` output, the micronuclei found outside the
        objects (int32 ids, 0 = none; :func:`napari_unet.objects.micronuclei.micronuclei_labels`);
        None otherwise, or when objects were not asked for.
    """

    probabilities: np.ndarray
    labels: np.ndarray | None
    settings: Settings
    card: Any
    warnings: tuple[str, ...] = ()
    micronuclei: np.ndarray | None = None

    @property
    def kind(self) -> str:
        """``instance`` (objects with ids) or ``semantic`` (a class map)."""
        return "semantic" if self.card.activation == "softmax" else "instance"

    @property
    def mask(self) -> np.ndarray:
        """uint8 mask: foreground ``> threshold`` (instance models), or the class map."""
        return foreground_mask(self.probabilities, self.card, self.settings)


def clean_class_map(class_map: np.ndarray, min_area: float) -> np.ndarray:
    """A 2D class map with every connected region smaller than ``min_area`` pixels set to
    background (the speckle a semantic model leaves on structures that resemble its class)."""
    if min_area <= 1 or not class_map.any():
        return class_map
    from scipy import ndimage as ndi

    out = class_map.copy()
    for k in np.unique(class_map[class_map > 0]):
        lab = ndi.label(class_map == k)[0]
        sizes = np.bincount(lab.ravel())
        small = sizes < min_area
        small[0] = False
        out[small[lab]] = 0
    return out


def labels_iter(probabilities: Any, card: Any, settings: Settings) -> Generator[Progress, None, np.ndarray]:
    """Objects from a model's output ``(K, *spatial)``, slice by slice; yields progress.

    Instance ids stay unique across a stack; a class map (softmax model) loses regions
    under ``settings.min_area``. This is the only place where probabilities become labels.
    """
    from napari_unet.objects.instances import labels_from_probabilities

    prob = probabilities
    spatial = tuple(prob.shape[1:])
    if len(spatial) < 2:
        raise ValueError(f"probabilities must be shaped (classes, ..., Y, X), got {tuple(prob.shape)}")
    n = int(np.prod(spatial[:-2])) if len(spatial) > 2 else 1
    semantic = card is not None and card.activation == "softmax"
    labels = np.zeros(spatial, np.uint8 if semantic else np.int32)
    flat_prob = np.asarray(prob).reshape(prob.shape[0], n, *spatial[-2:]) if isinstance(prob, np.ndarray) else None
    flat_labels = labels.reshape(n, *spatial[-2:])
    offset = 0
    for z in range(n):
        if flat_prob is not None:
            plane = flat_prob[:, z]
        else:  # a zarr or dask array: one slice at a time
            index = np.unravel_index(z, spatial[:-2]) if len(spatial) > 2 else ()
            plane = np.asarray(prob[(slice(None), *index)])
        plane = np.asarray(plane, np.float32)
        if semantic:
            flat_labels[z] = clean_class_map(foreground_mask(plane, card, settings), settings.min_area)
        else:
            lab = labels_from_probabilities(
                plane,
                card,
                threshold=settings.threshold,
                boundary_threshold=settings.boundary_threshold,
                seed_threshold=settings.seed_threshold,
                min_area=settings.min_area,
                max_area=settings.max_area,
                exclude_border=settings.exclude_border,
                min_relative_area=settings.min_relative_area,
            )
            flat_labels[z] = np.where(lab > 0, lab + offset, 0)
            offset += int(lab.max())
        yield Progress(z + 1, n, {"stage": "objects", "objects": offset})
    return labels


def objects(probabilities: Any, card: Any, settings: Settings | None = None) -> np.ndarray:
    """Labels from a model's output with ``settings`` (default: the card's): the synchronous
    :func:`labels_iter`, e.g. to try several thresholds on one prediction."""
    return run_to_end(labels_iter(probabilities, card, settings or Settings.for_model(card)))


def segment_iter(
    model: torch.nn.Module,
    image: Any,
    *,
    axes: str | None = None,
    settings: Settings | None = None,
    objects: bool = True,
    normalise: bool = True,
    out: Any = None,
    channels: list[int] | None = None,
    out_of_core: bool = False,
    block: int | None = None,
    **overrides: Any,
) -> Generator[Progress, None, Segmentation]:
    """Generator form of :func:`segment`: yields :class:`~napari_unet.jobs.Progress` per
    batch of tiles, then per slice of objects; closing it stops between steps."""
    from napari_unet.engine.predict import engine_iter
    from napari_unet.engine.run import DEFAULT_BLOCK, resolve_run
    from napari_unet.objects.fit import fit_warnings
    from napari_unet.objects.micronuclei import has_micronuclei, micronuclei_labels

    run = resolve_run(model, image, axes=axes, settings=settings, channels=channels, out_of_core=out_of_core,
                      block=DEFAULT_BLOCK if block is None else block, **overrides)  # fmt: skip
    card, resolved, n_planes = model.card, run.settings, run.n_planes
    gen = engine_iter(model, run, out=out, normalise=normalise)
    tiles = 0
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            probabilities = stop.value
            break
        except GeneratorExit:
            gen.close()
            raise
        tiles = event.total
        yield Progress(event.done, tiles + (n_planes if objects else 0), {"stage": "predict", **event.info})
    labels = None
    if objects:
        objects_gen = labels_iter(probabilities, card, resolved)
        while True:
            try:
                event = next(objects_gen)
            except StopIteration as stop:
                labels = stop.value
                break
            yield Progress(tiles + event.done, tiles + n_planes, event.info)
    micronuclei = None
    if labels is not None and has_micronuclei(card):
        micronuclei = micronuclei_labels(probabilities, card, labels)
    found = fit_warnings(card, run.image, run.axes, probabilities, resolved) if normalise and not out_of_core else ()
    return Segmentation(probabilities, labels, resolved, card, tuple(found), micronuclei)


def segment(
    model: torch.nn.Module,
    image: Any,
    *,
    axes: str | None = None,
    settings: Settings | None = None,
    objects: bool = True,
    normalise: bool = True,
    out: Any = None,
    channels: list[int] | None = None,
    out_of_core: bool = False,
    block: int | None = None,
    **overrides: Any,
) -> Segmentation:
    """Segment an image: probabilities from the model, then objects, with one set of settings.

    Parameters
    ----------
    model : torch.nn.Module
        From :func:`napari_unet.load_model`, with ``.card``.
    image : array-like
        ``(Y, X)``, ``(Z, Y, X)``, RGB ``(Y, X, 3)``...; numpy, memmap or dask.
    axes : str, optional
        Letters from ``CTZYXS``; inferred from the shape when omitted.
    settings : Settings, optional
        Default: :meth:`Settings.for_model` of the model's card.
    objects : bool
        Also turn the probabilities into labels (False: ``labels`` is None).
    normalise : bool
        Scale the image as the card says (False: it is already scaled, e.g. training data).
    out : array-like, optional
        Preallocated ``(classes, *spatial)`` float32 array for the probabilities.
    channels : list of int, optional
        Which channels of a multi-channel image the model takes, in order (default: the
        card's; e.g. when this image holds them in another order than the training images).
    out_of_core : bool
        Predict block by block as a dask computation (:mod:`napari_unet.engine.scale`), for an image
        larger than memory: give ``out`` (e.g. a zarr array) to keep the probabilities out of
        memory too. The objects equal the in-memory ones for the same image and settings.
    block : int, optional
        Block side for ``out_of_core`` (default 2048; at least the tile).
    **overrides
        Any :class:`Settings` field, on top of ``settings`` (e.g. ``threshold=0.6``).

    Returns
    -------
    Segmentation
        ``.probabilities``, ``.labels``, ``.settings`` (as used) and ``.card``.

    Examples
    --------
    >>> import napari_unet, numpy as np
    >>> model = napari_unet.load_model()
    >>> image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    >>> result = napari_unet.segment(model, image, threshold=0.6, min_area=40, device="cpu")
    >>> result.probabilities.shape, result.labels.shape, result.settings.min_area
    ((3, 64, 64), (64, 64), 40.0)
    """
    options = {"axes": axes, "settings": settings, "objects": objects, "normalise": normalise, "out": out,
               "out_of_core": out_of_core, "block": block}  # fmt: skip
    return run_to_end(segment_iter(model, image, channels=channels, **options, **overrides))
