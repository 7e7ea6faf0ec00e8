"""The state of a viewer's work, free of napari and Qt: what the dock's steps share.

A :class:`Workflow` (one per viewer) holds the current model and one :class:`Work` per
image: the image, the working labels, the probabilities and the settings that made
them, the checked slices or checked region, and the autosave session. The rules
between them live here, where they are tested without a window:

- no prediction ever overwrites a checked slice or a checked region, unless the caller
  asks for it explicitly (:meth:`Work.plan` and :meth:`Work.merge`);
- Count uses the settings Predict used (:attr:`Work.settings`);
- a model switch is one call (:meth:`Workflow.switch_model`), and every step hears it.

The widgets are views of this state. They pass their napari layers as opaque keys
(:meth:`Workflow.work_for`, :meth:`Workflow.find`): this module never looks inside them,
and no step finds another's data by a layer's name or metadata.

>>> import numpy as np
>>> flow = Workflow(model_name="nuclei")
>>> work = flow.work_for("image layer", name="cells", shape=(4, 8, 8), root=None, session=False)
>>> work.labels = np.zeros((4, 8, 8), np.int32)
>>> work.mark_checked(2)
>>> work.plan([0, 1, 2, 3])
([0, 1, 3], [2])
>>> work.merge(2, np.ones((8, 8), np.int32)) is None   # a checked slice is never written
True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PredictionRun", "Work", "Workflow"]


@dataclass(eq=False)
class Work:
    """One image's work: labels, probabilities, checked slices/region, session.

    Attributes
    ----------
    name : str
        The image's name, for messages.
    shape : tuple of int
        Spatial shape ``([T,] [Z,] Y, X)`` of the image, its labels and probabilities.
    image, labels, region : array-like or None
        The image, the working labels (edited in place by the user) and the checked
        region (a boolean/0-1 array of the labels' shape: where a person checked them).
    axes : str or None
        The image's axes as its reader gave them (``ZYX``, ``TYX``, ``YXS``...).
    probabilities : array-like or None
        ``(classes, *shape)`` float32 of the last prediction.
    settings : napari_unet.objects.pipeline.Settings or None
        The settings the labels and probabilities were made with.
    card : ModelCard or None
        The card of the model that made them.
    checked : set of int
        Flat slice numbers a person checked.
    interpolated : set of int
        Slices filled between checked ones (:meth:`fill_between`) that nobody has checked
        yet; checking one makes it checked. Training learns them with a weight of their own.
    session : napari_unet.work.session.Session or None
        Where the corrections autosave.
    """

    name: str
    shape: tuple[int, ...]
    path: str | None = None
    image: Any = None
    axes: str | None = None
    labels: Any = None
    region: Any = None
    probabilities: Any = None
    settings: Any = None
    card: Any = None
    checked: set[int] = field(default_factory=set)
    interpolated: set[int] = field(default_factory=set)
    predicted: set[int] = field(default_factory=set)
    session: Any = None
    handles: dict[str, Any] = field(default_factory=dict)  # role -> the caller's handle (a layer)
    _filled: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # slice -> where a filling wrote

    def role_of(self, key: Any) -> str | None:
        """``image``, ``labels``, ``probability``, ``region``... or None: what ``key`` is here."""
        for role, handle in self.handles.items():
            if handle is key:
                return role
        return None

    @property
    def n_slices(self) -> int:
        return int(np.prod(self.shape[:-2])) if len(self.shape) > 2 else 1

    def _check_slice(self, z: int) -> int:
        z = int(z)
        if not 0 <= z < self.n_slices:
            raise ValueError(f"slice {z} is outside {self.name} (0..{self.n_slices - 1})")
        return z

    # ----------------------------------------------------------------- checked data

    def mark_checked(self, z: int) -> None:
        z = self._check_slice(z)
        self.checked.add(z)
        self.interpolated.discard(z)

    def unmark(self, z: int) -> None:
        self.checked.discard(self._check_slice(z))

    def checked_slices(self) -> list[int]:
        return sorted(self.checked)

    def interpolated_slices(self) -> list[int]:
        """Slices filled between checked ones and not checked since; a slice whose filled
        pixels were all taken away again (an undo, an eraser) is no longer one."""
        for z in sorted(self.interpolated):
            mask = self._filled.get(z)
            if mask is not None and self.labels is not None and not np.asarray(self._plane(self.labels, z))[mask].any():
                self.interpolated.discard(z)
                self._filled.pop(z, None)
        return sorted(self.interpolated - self.checked)

    def _plane(self, data: Any, z: int) -> Any:
        return data[tuple(np.unravel_index(z, self.shape[:-2]))] if len(self.shape) > 2 else data

    def fill_between(self, probabilities: Any = None) -> tuple[np.ndarray, list[int]]:
        """The labels with the slices between checked slices filled by shape-based
        interpolation (:func:`napari_unet.objects.interpolate.fill_between`), and the slices
        that received pixels; with ``probabilities`` (``(Y, X)`` maps of the stack's slices,
        the model's foreground), the filled shapes follow the image where the model is sure.
        Nothing is written: the caller puts the new pixels into the labels (one undo step
        in the dock), then calls :meth:`mark_interpolated`."""
        from napari_unet.objects.interpolate import fill_between

        if self.labels is None:
            raise ValueError(f"{self.name}: there are no labels to fill; predict or draw some first")
        if len(self.shape) != 3:
            raise ValueError(
                f"{self.name} is {'one 2D image' if len(self.shape) == 2 else 'a ' + str(len(self.shape)) + 'D stack'}; "
                "filling between slices needs a Z stack (Z, Y, X)"
            )
        labels = np.asarray(self.labels)
        return fill_between(labels, self.checked_slices(), probability=probabilities)

    def mark_interpolated(self, slices: Iterable[int], filled: np.ndarray | None = None) -> None:
        """Mark ``slices`` as filled, not checked; ``filled``: where the filling wrote (the
        stack's shape), so that a filling taken back unmarks its slices."""
        for z in slices:
            z = self._check_slice(z)
            if z in self.checked:
                continue
            self.interpolated.add(z)
            if filled is not None:
                self._filled[z] = np.asarray(self._plane(filled, z), bool)

    def training_weights(self, weight: float) -> dict[int, float]:
        """``{slice: weight}`` for the interpolated slices nobody checked (0: not learnt)."""
        if not 0 <= weight <= 1:
            raise ValueError(f"the weight of interpolated slices must be from 0 to 1, got {weight}")
        return {z: float(weight) for z in self.interpolated_slices()} if weight > 0 else {}

    def has_region(self) -> bool:
        return self.region is not None and bool(np.asarray(self.region).any())

    def training_region(self) -> Any:
        """Where a person checked the labels, as training takes it: the painted region
        (with whole checked slices added), else the list of checked slices.

        Raises ``ValueError`` with what to do when nothing is checked.
        """
        if self.has_region():
            region = np.asarray(self.region) > 0
            if self.checked and len(self.shape) > 2:
                flat = region.reshape(-1, *region.shape[-2:])
                for z in self.checked:
                    flat[z] = True
            return region
        if self.checked:
            return self.checked_slices()
        raise ValueError(
            "nothing is checked yet: mark the slices you corrected (Correct step), or paint a checked region"
        )

    # ----------------------------------------------------------------- the rules of prediction

    def plan(self, planes: Iterable[int], *, overwrite_checked: bool = False) -> tuple[list[int], list[int]]:
        """Which of ``planes`` a prediction may write: ``(to predict, checked slices kept)``.

        Checked slices are kept unless ``overwrite_checked`` (an explicit choice).
        """
        planes = sorted({self._check_slice(z) for z in planes})
        if overwrite_checked:
            return planes, []
        return [z for z in planes if z not in self.checked], [z for z in planes if z in self.checked]

    def merge(self, z: int, labels: np.ndarray, *, overwrite_checked: bool = False) -> np.ndarray | None:
        """The labels a prediction may write into slice ``z``: None for a checked slice
        (unless ``overwrite_checked``), the current labels inside a checked region, the
        new labels elsewhere. Asked again as each slice arrives, so a slice checked while
        the prediction ran is kept too."""
        z = self._check_slice(z)
        if z in self.checked and not overwrite_checked:
            return None
        if self.has_region() and self.labels is not None:
            index = tuple(np.unravel_index(z, self.shape[:-2])) if len(self.shape) > 2 else ()
            keep = np.asarray(self.region[index]) > 0
            if keep.any():
                return np.where(keep, np.asarray(self.labels[index]), labels)
        return labels

    def record_prediction(self, planes: Iterable[int], settings: Any, card: Any) -> None:
        """Remember which slices hold predictions and the settings that made them."""
        self.predicted.update(int(z) for z in planes)
        self.settings, self.card = settings, card


@dataclass(eq=False)
class PredictionRun:
    """One prediction into a :class:`Work`, as it goes: what the Predict step shows, free of Qt.

    The worker puts each finished plane in :attr:`partial`; :meth:`take` applies the rules
    of prediction to one of them (a checked slice or region is kept; a new object's id
    continues from the largest in the labels) and records it as written or kept.

    >>> import numpy as np
    >>> work = Work("cells", (2, 4, 4), labels=np.zeros((2, 4, 4), np.int32))
    >>> work.mark_checked(1)
    >>> run = PredictionRun(work, settings=None, card=None, planes=[0, 1])
    >>> run.take(0, np.ones((4, 4), np.int32)).max(), run.take(1, np.ones((4, 4), np.int32))
    (np.int32(1), None)
    >>> run.written, run.kept
    ([0], [1])
    """

    work: Work
    settings: Any
    card: Any
    planes: list[int]
    overwrite: bool = False
    semantic: bool = False
    kept: list[int] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    #: plane -> (probabilities, labels) finished by the worker and not yet written
    partial: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    warnings: set[str] = field(default_factory=set)
    started: bool = False
    ended: bool = False
    cancelled: bool = False
    closed: bool = False
    result: Any = None
    next_id: int | None = None

    def take(self, z: int, labels: np.ndarray) -> np.ndarray | None:
        """The labels plane ``z`` may receive, ids shifted past those already in the work's
        labels (an instance model), or None: a checked slice, kept."""
        if self.next_id is None:
            self.next_id = _max_label(self.work.labels) + 1
        if self.semantic or self.next_id <= 1:  # class ids are names, not objects: kept as they are
            shifted = labels
        else:
            shifted = np.where(labels > 0, labels + (self.next_id - 1), 0)
        merged = self.work.merge(z, shifted, overwrite_checked=self.overwrite)
        if merged is None:
            if z not in self.kept:
                self.kept.append(z)
            return None
        if not self.semantic:
            self.next_id += int(labels.max()) if labels.size else 0
        self.written.append(z)
        self.work.predicted.add(z)
        return merged

    def write_all(self) -> dict[tuple, Any]:
        """Put every finished plane into the work's labels and probabilities, through
        :meth:`take` (for a caller with no layers to fill plane by plane); returns the
        probabilities of the planes written, by their index into the stack."""
        work, written = self.work, {}
        for z in sorted(self.partial):
            prob, labels = self.partial.pop(z)
            merged = self.take(z, labels)
            if merged is None:
                continue
            index = tuple(np.unravel_index(z, work.shape[:-2])) if len(work.shape) > 2 else ()
            work.labels[index] = merged
            if work.probabilities is not None and tuple(work.probabilities.shape[1:]) == tuple(work.shape):
                work.probabilities[(slice(None), *index)] = prob
            written[index] = prob
        return written

    def finish(self) -> None:
        """Remember, on the work, which slices this run wrote and the settings that made them."""
        if self.written:
            self.work.record_prediction(self.written, self.settings, self.card)

    def outcome(self, failed: str | None = None) -> str:
        """How the run ended, in one line for the step's status."""
        n, kept = len(self.written), self.kept
        kept_note = f"; {len(kept)} checked slice(s) kept" if kept else ""
        if self.closed:
            return f"stopped: the image or a result layer was closed (kept {n} slice(s))"
        if self.result is not None:
            return f"done: {n} slice(s){kept_note}"
        if self.cancelled:
            return (f"cancelled: kept {n} slice(s)" if n else "cancelled; nothing was finished") + kept_note
        if failed is not None:
            return f"stopped by an error: {failed} (kept {n} slice(s))"
        return f"stopped: kept {n} slice(s)"


def _max_label(data: Any) -> int:
    """Largest id in a labels array, 0 for none. A zarr store the Predict step fills records
    it in its attributes: scanning a huge store on the GUI thread would freeze the window."""
    if data is None:
        return 0
    if isinstance(data, np.ndarray):
        return int(data.max()) if data.size else 0
    attrs = getattr(data, "attrs", None)
    if attrs is not None:
        return int(attrs.get("napari_unet_max_label", 0))
    return int(np.max(np.asarray(data)))


class Workflow:
    """The work of one viewer: the current model and one :class:`Work` per image.

    Listeners: ``connect("model", fn)`` is called with the new model's name after
    :meth:`switch_model`; ``connect("predicted", fn)`` with the :class:`Work` after a
    prediction wrote into it; ``connect("checked", fn)`` after the checked slices change.
    :meth:`repredict` predicts a work's unchecked slices again, whichever steps are open.
    """

    def __init__(self, model_name: str | None = None) -> None:
        from napari_unet.networks.model import default_model_name

        self.model_name = model_name or default_model_name()
        self.works: list[Work] = []
        self._listeners: dict[str, list[Callable[..., Any]]] = {}
        self._model: tuple[str, Any] | None = None

    # ----------------------------------------------------------------- events

    def connect(self, event: str, callback: Callable[..., Any]) -> None:
        self._listeners.setdefault(event, []).append(callback)

    def disconnect(self, event: str, callback: Callable[..., Any]) -> None:
        if callback in self._listeners.get(event, []):
            self._listeners[event].remove(callback)

    def emit(self, event: str, *args: Any) -> None:
        for callback in list(self._listeners.get(event, [])):
            callback(*args)

    def repredict(self, work: Work, model: Any, settings: Any = None) -> tuple[PredictionRun, Any]:
        """Predict the unchecked slices of ``work`` again with ``model`` (Fine-tune's
        *Re-predict*), whichever steps are open: ``(run, job)``, the job a generator to run
        in a worker; then :meth:`PredictionRun.write_all` and :meth:`PredictionRun.finish`
        on the thread that owns the labels. Checked slices and regions are kept."""
        from napari_unet.objects.settings import Settings
        from napari_unet.work.plane_jobs import plane_job

        if work.image is None or work.labels is None:
            raise ValueError(f"{work.name}: choose the image and the labels it learnt from first")
        planes, kept = work.plan(range(work.n_slices))
        if not planes:
            raise ValueError(f"every slice of {work.name} is checked, so there is nothing to predict again")
        device = work.settings.device if work.settings is not None else None
        settings = settings or Settings.for_model(model.card, device=device)
        run = PredictionRun(work, settings, model.card, planes, kept=kept, semantic=model.card.activation == "softmax")
        axes = work.axes or ("YX" if len(work.shape) == 2 else "ZYX" if len(work.shape) == 3 else None)
        job = plane_job(model, work.image, axes, work.shape, planes, settings, run.partial, run.warnings)
        return run, job

    # ----------------------------------------------------------------- the model

    def switch_model(self, name: str, model: Any = None) -> None:
        """Make ``name`` the current model for every step (``model``: already loaded)."""
        from napari_unet.networks.model import resolve_model_path

        if model is None:
            resolve_model_path(name)  # an unknown name fails here, with the known ones listed
        self.model_name = name
        self._model = (name, model) if model is not None else None
        self.emit("model", name)

    def model(self) -> Any:
        """The current model, loaded on first use."""
        from napari_unet.networks.model import load_model

        if self._model is None or self._model[0] != self.model_name:
            self._model = (self.model_name, load_model(self.model_name))
        return self._model[1]

    # ----------------------------------------------------------------- works

    def find(self, key: Any) -> Work | None:
        """The work ``key`` (an image, labels, probability or region handle) belongs to."""
        if key is None:
            return None
        for work in self.works:
            if work.role_of(key) is not None:
                return work
        return None

    def work_for(
        self,
        key: Any,
        *,
        name: str,
        shape: tuple[int, ...],
        path: str | os.PathLike | None = None,
        role: str = "image",
        root: str | os.PathLike | None = None,
        session: bool = True,
    ) -> Work:
        """The work of an image (``key``: its handle in ``role``), made on first use with its session."""
        work = self.find(key)
        if work is not None:
            return work
        shape = tuple(int(n) for n in shape)
        work = Work(name=name, shape=shape, path=str(path) if path is not None else None, handles={role: key})
        if session:
            from napari_unet.work.session import Session

            work.session = Session.for_image(path, name=name, shape=shape, root=root)
        self.works.append(work)
        return work

    def attach(self, work: Work, key: Any, role: str) -> None:
        """Make ``key`` (a result layer, say) the handle of ``work`` in ``role``."""
        other = self.find(key)
        if other is not None and other is not work:
            other.handles = {r: k for r, k in other.handles.items() if k is not key}
        work.handles[role] = key

    def forget(self, key: Any) -> None:
        """Drop a handle that went away (a closed layer); a work with no handle left goes too."""
        for work in list(self.works):
            work.handles = {r: k for r, k in work.handles.items() if k is not key}
            if not work.handles:
                self.works.remove(work)
