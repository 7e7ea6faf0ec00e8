"""Training data: (image, labels, checked region) -> normalised planes, targets, crops.

No torch. The checked ("annotated") region is where a person has checked the labels:
whole slices of a stack, or a painted area; only those pixels ever reach the loss.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.engine.planes import normalise_plane

if TYPE_CHECKING:
    from napari_unet.networks.model import ModelCard

__all__ = [
    "TrainingItem",
    "check_classes_drawn",
    "dataset_normalisation",
    "distance_target",
    "grouped_folds",
    "make_targets",
]


def grouped_folds(groups: list[str]) -> list[tuple[list[int], list[int]]]:
    """Leave-one-group-out cross-validation: for each distinct group (e.g. an acquisition,
    a date and cell line), ``(training indices, held-out indices)``; no group is ever on
    both sides of a fold, and every item is held out exactly once.

    >>> grouped_folds(["a", "b", "a", "c"])
    [([1, 3], [0, 2]), ([0, 2, 3], [1]), ([0, 1, 2], [3])]
    """
    names = sorted(set(groups))
    if len(names) < 2:
        raise ValueError(f"cross-validation needs at least two groups, got {len(names)}")
    return [
        ([i for i, g in enumerate(groups) if g != name], [i for i, g in enumerate(groups) if g == name])
        for name in names
    ]


@dataclass
class TrainingItem:
    """One image (2D or a stack) with its labels and the region a person has checked.

    ``region`` is a boolean mask of the labels' shape, or for a stack a list of checked
    slice indices. ``None`` means everything is checked. ``micronuclei``: labels of the
    micronuclei, same shape as ``labels``, for a model with a ``micronuclei`` output; where
    they are not given, that output is not trained on this item (it is neither taught
    micronuclei nor taught that there are none).

    ``weights``: slices of a stack learnt with a weight of their own, ``{slice: weight}``,
    for labels a person has not checked (slices filled by interpolation between checked
    ones): each is learnt whole, its loss weighted by ``weight`` (0: not learnt), and never
    used for validation. A checked slice keeps weight 1.
    """

    image: Any
    labels: Any
    region: Any = None
    name: str = "image"
    axes: str | None = None
    micronuclei: Any = None
    weights: dict[int, float] | None = None


def make_targets(labels: np.ndarray, card: ModelCard, micronuclei: np.ndarray | None = None) -> np.ndarray:
    """Training targets ``(K, H, W)`` float32 for a 2D label image, as the card's outputs ask.

    Sigmoid models: ``foreground`` = any object, ``boundary`` = the inner edge of each
    object (so touching objects are parted by a two-pixel line), ``distance`` = each
    object's :func:`distance_target`, ``micronuclei`` = the
    micronuclei outside the objects (NaN, "not known", when ``micronuclei`` is None: the
    loss leaves that output alone there). Softmax models: one-hot of the class ids in
    ``labels`` (0 = background).
    """
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    if card.activation == "softmax":
        if labels.size and (labels.max() >= card.out_channels or labels.min() < 0):
            bad = int(labels.max()) if labels.max() >= card.out_channels else int(labels.min())
            raise ValueError(
                f"the labels hold class {bad} but the model has {card.out_channels} classes "
                f"({', '.join(f'{i} = {n}' for i, n in enumerate(card.classes))}); give --classes "
                f"{max(int(labels.max()) + 1, 2)} (with a name per class), or fix the labels"
            )
        return np.stack([labels == k for k in range(card.out_channels)]).astype(np.float32)
    out = []
    for i, name in enumerate(card.classes):
        if name == "boundary":
            out.append(find_boundaries(labels, mode="inner") & (labels > 0))
        elif name == "distance":
            out.append(distance_target(labels))
        elif name == "micronuclei":
            if micronuclei is None:
                out.append(np.full(labels.shape, np.nan, np.float32))
            elif np.shape(micronuclei) != labels.shape:
                raise ValueError(
                    f"the micronuclei labels have shape {np.shape(micronuclei)} but the labels {labels.shape}; "
                    "they must cover the same pixels"
                )
            else:
                out.append((np.asarray(micronuclei) > 0) & (labels == 0))
        elif i == 0:  # the first output is the objects' foreground, whatever they are called
            out.append(labels > 0)
        else:
            raise ValueError(
                f"cannot make a target for output {name!r}; an object model's outputs are its foreground "
                "(first), 'boundary', 'distance' and 'micronuclei'"
            )
    return np.stack(out).astype(np.float32)


def distance_target(labels: np.ndarray) -> np.ndarray:
    """Each object's distance to its own edge, over the largest in that object: 1 at its
    centre, falling to 0 at its edge, 0 outside (float32). The pixels of a touching object
    count as outside, so neighbours meet in a valley whatever their size; the image's own
    border does not (an object cut by it keeps its centre where it was)."""
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.float32)
    for k, box in enumerate(ndi.find_objects(labels), 1):
        if box is None:
            continue
        box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)  # one pixel of outside around it
        inside = labels[box] == k
        dist = ndi.distance_transform_edt(inside)
        out[box][inside] = (dist / dist.max())[inside]
    return out


@dataclass
class _Plane:
    image: np.ndarray  # (C, H, W) float32, normalised
    target: np.ndarray  # (K, H, W) float32
    region: np.ndarray  # (H, W) bool
    labels: np.ndarray  # (H, W) instance/class ids, for validation
    source: str
    semantic: bool = False
    weight: float = 1.0  # below 1: labels nobody checked (an interpolated slice); never validated on


def _item_planes(item: TrainingItem, card: ModelCard) -> list[_Plane]:
    from napari_unet.engine.planes import plane_layout, read_plane, select_channels, with_context

    labels = np.asarray(item.labels)
    try:
        image, axes = select_channels(item.image, item.axes, card.channels, card.image_channels)
        image, axes = with_context(image, axes, card.context)
        layout = plane_layout(tuple(image.shape), axes, card.in_channels)
    except ValueError as exc:
        raise ValueError(f"{item.name}: {exc}") from None
    if labels.shape != layout.spatial_shape:
        raise ValueError(
            f"{item.name}: labels have shape {labels.shape} but the image has {layout.spatial_shape}; "
            "the labels must cover the same pixels as the image"
        )
    if labels.dtype.kind not in "biu":
        raise ValueError(f"{item.name}: labels must be integers (0 = background), got {labels.dtype}")
    h, w = layout.spatial_shape[-2:]
    flat_labels = labels.reshape(-1, h, w)
    flat_mn = None
    if item.micronuclei is not None:
        mn = np.asarray(item.micronuclei)
        if mn.shape != labels.shape:
            raise ValueError(f"{item.name}: micronuclei labels have shape {mn.shape} but the labels {labels.shape}")
        flat_mn = mn.reshape(-1, h, w)
    region = item.region
    if region is None:
        region_planes = np.ones((layout.n_planes, h, w), bool)
    elif isinstance(region, (list, tuple, set, range)) or (isinstance(region, np.ndarray) and region.ndim == 1):
        region_planes = np.zeros((layout.n_planes, h, w), bool)
        for z in region:
            if not 0 <= int(z) < layout.n_planes:
                raise ValueError(f"{item.name}: checked slice {z} is outside the stack (0..{layout.n_planes - 1})")
            region_planes[int(z)] = True
    else:
        region = np.asarray(region, bool)
        if region.shape != labels.shape:
            raise ValueError(f"{item.name}: the annotated region has shape {region.shape}, the labels {labels.shape}")
        region_planes = region.reshape(-1, h, w)
    weights = {}
    for z, weight in (item.weights or {}).items():
        if not 0 <= int(z) < layout.n_planes:
            raise ValueError(f"{item.name}: slice {z} given a weight is outside the stack (0..{layout.n_planes - 1})")
        if not 0 <= float(weight) <= 1:
            raise ValueError(f"{item.name}: the weight of slice {z} must be from 0 to 1, got {weight}")
        if float(weight) > 0 and not region_planes[int(z)].all():  # a checked slice keeps weight 1
            weights[int(z)] = float(weight)
    planes = []
    for p in range(layout.n_planes):
        if p in weights:
            region_planes[p] = True
        if not region_planes[p].any():
            continue
        img = normalise_plane(read_plane(image, layout, p, card.in_channels), card.normalisation)
        lab, region = flat_labels[p], region_planes[p].copy()
        mn = None if flat_mn is None else flat_mn[p]
        if card.input_size:  # whole-image mode: the network only ever sees the plane resized
            from napari_unet.engine.whole_image import resize_planes

            size = (card.input_size, card.input_size)
            img, lab, region = resize_planes(img, size), _resize_nearest(lab, size), _resize_nearest(region, size)
            mn = None if mn is None else _resize_nearest(mn, size)
        target = make_targets(lab, card, mn)
        planes.append(
            _Plane(img, target, region, lab, f"{item.name}[{p}]", card.activation == "softmax", weights.get(p, 1.0))
        )
    return planes


def check_classes_drawn(planes: list, card: ModelCard, *, new: bool) -> None:
    """A new class model learns only the classes drawn in the checked data: one with a class
    never drawn is refused (a value beyond its classes is refused as its targets are made)."""
    present: set[int] = set()
    for p in planes:
        present.update(int(v) for v in np.unique(p.labels[p.region]))
    names = card.classes
    missing = [names[k] for k in range(1, len(names)) if k not in present]
    if new and missing:
        if len(missing) > 5:  # say how many, and name the first few (--classes 300 with 3 drawn)
            drawn = len(names) - 1 - len(missing)
            raise ValueError(
                f"{len(missing)} of the {len(names) - 1} classes are drawn nowhere in the checked data (the first: "
                f"{', '.join(missing[:3])}); only {drawn} are: give --classes {drawn + 1} or draw the others"
            )
        raise ValueError(
            f"no region of {', '.join(missing)} is drawn in the checked data; draw at least one of each class "
            f"({', '.join(names[1:])}) so that the new model can learn it"
        )


def _resize_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Labels or a mask resized by nearest neighbour (pixel centres)."""
    h, w = a.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(int), w - 1)
    return a[np.ix_(rows, cols)]


def _has_foreground(plane: _Plane) -> bool:
    return bool((plane.labels[plane.region] > 0).any())


def _split_validation(
    planes: list[_Plane], fraction: float, rng: np.random.Generator, crop: int
) -> tuple[list[_Plane], list[_Plane]]:
    """Hold out whole planes when there are several, else a share of tiles of the one plane.

    Planes with objects and empty planes are held out separately, each in proportion
    (at least one of a kind that has two or more), so that with 3 lesion slices and 3
    lesion-free ones both kinds are validated and both are trained on. Planes of a weight
    below 1 (labels nobody checked) are trained on and never validated on.
    """
    unchecked = [p for p in planes if p.weight < 1]
    planes = [p for p in planes if p.weight >= 1]
    if unchecked:
        if not planes:
            raise ValueError("nothing is checked: interpolated slices alone cannot be validated on; check a slice")
        train, val = _split_validation(planes, fraction, rng, crop)
        return train + unchecked, val
    if len(planes) >= 2:
        groups = [[i for i, p in enumerate(planes) if _has_foreground(p)]]
        groups.append([i for i in range(len(planes)) if i not in groups[0]])
        held: list[int] = []
        for group in groups:
            if len(group) >= 2:
                order = rng.permutation(group)
                held += [int(i) for i in order[: max(1, round(fraction * len(group)))]]
        if not held:  # one plane with objects and one without: both are learnt from, and tiles of
            # the one with objects are held out (holding it out whole left nothing to learn objects from)
            with_objects = groups[0][0] if groups[0] else 0
            train, val = _split_validation([planes[with_objects]], fraction, rng, crop)
            return [p for i, p in enumerate(planes) if i != with_objects] + train, val
        return [p for i, p in enumerate(planes) if i not in held], [planes[i] for i in sorted(held)]
    (plane,) = planes
    h, w = plane.region.shape
    cell = max(32, min(crop, h // 2, w // 2))
    gy, gx = max(1, math.ceil(h / cell)), max(1, math.ceil(w / cell))
    cells = [
        (i, j)
        for i in range(gy)
        for j in range(gx)
        if plane.region[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell].any()
    ]
    if len(cells) < 2:
        raise ValueError("the annotated region is too small to hold some of it out for validation; annotate more")
    order = [int(k) for k in rng.permutation(len(cells))]
    with_objects = [
        k for k, (i, j) in enumerate(cells)
        if (plane.labels[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell] > 0).any()
    ]  # fmt: skip
    if len(with_objects) == 1:  # every object in one cell (a first lesion): it is learnt from, not held out
        order.remove(with_objects[0])
    chosen = order[: max(1, round(fraction * len(cells)))]
    val_mask = np.zeros_like(plane.region)
    for k in chosen:
        i, j = cells[k]
        val_mask[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell] = True
    train_plane = copy.copy(plane)
    train_plane.region = plane.region & ~val_mask
    val_plane = copy.copy(plane)
    val_plane.region = plane.region & val_mask
    return [train_plane], [val_plane]


class _Sampler:
    """Random crops, biased toward annotated foreground, from annotated regions only."""

    def __init__(self, planes: list[_Plane], crop: int, bias: float, rng: np.random.Generator) -> None:
        self.planes, self.crop, self.bias, self.rng = planes, crop, bias, rng
        area = np.array([p.region.sum() * p.weight for p in planes], float)
        self.p = area / area.sum()
        self.where = [np.flatnonzero(p.region) for p in planes]
        self.semantic = bool(planes) and planes[0].semantic
        self.fg = [np.flatnonzero(p.region & (p.labels > 0)) for p in planes]
        # a semantic model's crops centred on foreground pick the class first, so a lesion
        # of 0.1% of a slice is seen as often as a lung: class id -> [(plane, pixels)]
        self.by_class: dict[int, list[tuple[int, np.ndarray]]] = {}
        for k, p in enumerate(planes if self.semantic else []):
            values = p.labels[p.region]
            for cls in np.unique(values[values > 0]):
                self.by_class.setdefault(int(cls), []).append((k, np.flatnonzero(p.region & (p.labels == cls))))

    #: share of the crops not centred on a class that centre on a hard negative, when there are some
    HARD_SHARE = 0.5

    def set_hard_negatives(self, pools: list[tuple[int, np.ndarray]]) -> None:
        """Pixels where the model marks a class on checked background: ``[(plane, flat indices)]``.
        Crops centre on them too, so that what the model confuses with a class is what it
        learns to leave out (a semantic model's false positives on vessels, say)."""
        self.hard = [(k, where) for k, where in pools if len(where)]

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs, ys, ms = [], [], []
        c = self.crop
        hard = getattr(self, "hard", [])
        for _ in range(n):
            if self.by_class and self.rng.random() < self.bias:
                pools = self.by_class[list(self.by_class)[self.rng.integers(len(self.by_class))]]
                k, pool = pools[self.rng.integers(len(pools))]
            elif hard and self.rng.random() < self.HARD_SHARE:
                k, pool = hard[self.rng.integers(len(hard))]
            else:
                k = self.rng.choice(len(self.planes), p=self.p)
                pool = (
                    self.fg[k]
                    if not self.semantic and len(self.fg[k]) and self.rng.random() < self.bias
                    else self.where[k]
                )
            plane = self.planes[k]
            cy, cx = np.unravel_index(pool[self.rng.integers(len(pool))], plane.region.shape)
            xs.append(_crop(plane.image, cy, cx, c))
            ys.append(_crop(plane.target, cy, cx, c))
            ms.append(_crop(plane.region[None].astype(np.float32) * np.float32(plane.weight), cy, cx, c))
        return np.stack(xs), np.stack(ys), np.stack(ms)


def _crop(a: np.ndarray, cy: int, cx: int, c: int) -> np.ndarray:
    """A ``c``x``c`` window centred near (cy, cx), zero-padded where it leaves the plane."""
    _, h, w = a.shape
    y0, x0 = cy - c // 2, cx - c // 2
    out = np.zeros((a.shape[0], c, c), np.float32)
    sy, sx = max(0, y0), max(0, x0)
    ey, ex = min(h, y0 + c), min(w, x0 + c)
    out[:, sy - y0 : ey - y0, sx - x0 : ex - x0] = a[:, sy:ey, sx:ex]
    return out


def _merge_stats(old: dict, new: dict) -> dict:
    """The range of each statistic over a parent's training data and this run's."""
    out = dict(new)
    for key, (lo, hi) in (old or {}).items():
        if key in out:
            out[key] = [min(lo, out[key][0]), max(hi, out[key][1])]
    return out


def dataset_normalisation(items: Sequence[TrainingItem], card: Any) -> dict:
    """``{"kind": "dataset", "mean": [...], "std": [...]}``: per channel, over the
    annotated planes of the training images (from the same strided sample as percentiles)."""
    from napari_unet.engine.planes import percentile_sample, plane_layout, read_plane, select_channels, with_context

    sums = np.zeros((card.in_channels, 3))
    for item in items:
        image, axes = select_channels(item.image, item.axes, card.channels, card.image_channels)
        image, axes = with_context(image, axes, card.context)
        layout = plane_layout(tuple(image.shape), axes, card.in_channels)
        for p in range(layout.n_planes):
            sample = np.asarray(percentile_sample(read_plane(image, layout, p, card.in_channels)), np.float64)
            flat = sample.reshape(card.in_channels, -1)
            sums += np.stack([np.full(card.in_channels, flat.shape[1]), flat.sum(1), (flat**2).sum(1)], 1)
    mean = sums[:, 1] / sums[:, 0]
    std = np.sqrt(np.maximum(sums[:, 2] / sums[:, 0] - mean**2, 0))
    return {"kind": "dataset", "mean": [round(float(v), 6) for v in mean],
            "std": [round(float(v), 6) if v > 0 else 1.0 for v in std]}  # fmt: skip
