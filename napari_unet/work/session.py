"""One image's working state on disk, so that a crash never loses a user's corrections.

A session folder holds the corrected labels (one ``.npy`` file per slice, so an autosave
rewrites only the slices that changed; labels painted straight into a zarr store on disk,
as for a lazily opened stack, are not copied: the state records the store), the list of
checked slices or the painted checked region, and a small ``state.json``.

Each save is a generation: its slice and region files carry the generation in their
names, every file is written to a temporary name and renamed into place, and
``state.json`` (written last) names the generation of every slice. Files of older
generations are removed only after the new state is in place. So a crash at any moment
leaves one whole save, the new or the previous one, never slices of one save with the
checked list of another; leftover temporary files are removed by the next save.

The folder is ``<image folder>/<image file name>.napari-unet/`` (``cells.day1.tif`` and
``cells.day2.tif`` get two folders) when that is writable, else under the user data
folder, keyed by the image's path (or, for an image without a file, its name and shape).

>>> import numpy as np, tempfile
>>> s = Session.for_image(None, name="cells", shape=(3, 8, 8), root=tempfile.mkdtemp())
>>> labels = np.zeros((3, 8, 8), np.uint16); labels[1, 2:4, 2:4] = 5
>>> s.save(labels, checked=[1], dirty={1})
>>> back, checked, region = s.load()
>>> int(back[1].sum()), checked
(20, [1])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet._atomic import atomic_write as _atomic_write

__all__ = ["Session"]


def _sessions_root() -> Path:
    if os.environ.get("NAPARI_UNET_SESSIONS"):
        return Path(os.environ["NAPARI_UNET_SESSIONS"])
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-unet", appauthor=False)) / "sessions"


class Session:
    """Corrections of one image: labels, checked slices/region, autosaved atomically."""

    def __init__(self, folder: str | os.PathLike, shape: tuple[int, ...]) -> None:
        self.folder = Path(folder)
        self.shape = tuple(int(n) for n in shape)
        self.last_save: float | None = None

    @classmethod
    def for_image(
        cls,
        path: str | os.PathLike | None,
        *,
        name: str = "image",
        shape: tuple[int, ...],
        root: str | os.PathLike | None = None,
    ) -> Session:
        """The session of an image file (beside it if writable) or of an unsaved image."""
        if path is not None and root is None:
            from napari_unet.io import image_stem

            path = Path(path)
            beside = path.parent / f"{image_stem(path)}.napari-unet"  # the whole name: cells.day1.tif -> cells.day1
            if os.access(path.parent, os.W_OK):
                return cls(beside, shape)
        key_source = str(Path(path).resolve()) if path is not None else f"{name}:{tuple(shape)}"
        key = hashlib.sha1(key_source.encode()).hexdigest()[:12]
        base = Path(root) if root is not None else _sessions_root()
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
        return cls(base / f"{safe}-{key}", shape)

    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    def exists(self) -> bool:
        return self.state_path.is_file()

    def _slice_path(self, z: int, generation: int | None = None) -> Path:
        if generation is None:  # a save from before generations
            return self.folder / f"labels_{z:05d}.npy"
        return self.folder / f"labels_{z:05d}.g{generation}.npy"

    def _region_path(self, generation: int | None = None) -> Path:
        return self.folder / ("region.npy" if generation is None else f"region.g{generation}.npy")

    def _n_slices(self) -> int:
        return int(np.prod(self.shape[:-2])) if len(self.shape) > 2 else 1

    def save(
        self,
        labels: np.ndarray,
        *,
        checked: Iterable[int] = (),
        region: np.ndarray | None = None,
        dirty: Iterable[int] | None = None,
        extra: dict | None = None,
    ) -> None:
        """Write the slices in ``dirty`` (all when None) as a new generation, then the state.

        The state file is written last and names the file of every slice, so a reader never
        sees a state that points at slices that were not written, nor slices newer than
        its checked list.
        """
        if tuple(labels.shape) != self.shape:
            raise ValueError(f"labels have shape {tuple(labels.shape)} but this session is for {self.shape}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        stack = self.shape[:-2]
        previous = self._read_state(missing_ok=True) or {}
        generation = int(previous.get("generation", 0)) + 1
        slices = {int(z): g for z, g in previous.get("slices", {}).items()}

        def plane(z: int) -> np.ndarray:  # one slice at a time: labels may be a zarr array on disk
            return np.asarray(labels[tuple(np.unravel_index(z, stack))] if stack else labels)

        on_disk = zarr_location(labels)
        if on_disk is not None:  # painted straight into a store on disk: nothing to copy
            targets: Iterable[int] = ()
        else:
            targets = range(self._n_slices()) if dirty is None else sorted({int(z) for z in dirty})
        if previous and "generation" not in previous:  # a save from before generations: carry its files over
            for z in range(self._n_slices()):
                if self._slice_path(z).exists() and z not in set(targets):
                    os.link(
                        self._slice_path(z), self._slice_path(z, generation)
                    )  # the old file stays until the state is written
                    slices[z] = generation
            if self._region_path().exists() and region is None:
                os.link(self._region_path(), self._region_path(generation))
                previous["region"] = generation
        for z in targets:
            _atomic_write(self._slice_path(z, generation), lambda tmp, z=z: _save_npy(tmp, plane(z)))
            slices[z] = generation
        region_generation = previous.get("region")
        if region is not None:
            _atomic_write(self._region_path(generation), lambda tmp: _save_npy(tmp, np.asarray(region, bool)))
            region_generation = generation
        state = {
            "shape": list(self.shape),
            "dtype": str(labels.dtype),
            "checked": sorted({int(z) for z in checked}),
            "generation": generation,
            "slices": {str(z): g for z, g in sorted(slices.items())},
            "region": region_generation,
            "has_region": region_generation is not None,
            "saved_at": time.time(),
            **({"labels_zarr": on_disk} if on_disk is not None else {}),
            **(extra or {}),
        }
        _atomic_write(self.state_path, lambda tmp: Path(tmp).write_text(json.dumps(state, indent=1)))
        self.last_save = state["saved_at"]
        self._remove_stale(state)

    def _read_state(self, *, missing_ok: bool = False) -> dict | None:
        """The saved state; a state file that cannot be read is refused with what to do."""
        if not self.exists():
            if missing_ok:
                return None
            raise FileNotFoundError(f"{self.folder}: no saved corrections here")
        try:
            state = json.loads(self.state_path.read_text())
            if not isinstance(state, dict) or "shape" not in state:
                raise ValueError("it is not a napari-unet session state")
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"{self.state_path}: the saved state cannot be read ({exc}); the corrections cannot be restored "
                f"automatically. Move the folder {self.folder} aside to start afresh; its slice files are kept."
            ) from exc
        return state

    def _remove_leftovers(self) -> None:
        """Temporary files a crash left behind (a save in progress when the process died)."""
        for tmp in self.folder.glob(".*.part"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _remove_stale(self, state: dict) -> None:
        """Slice and region files of older generations, once the new state is in place."""
        keep = {self._slice_path(int(z), g).name for z, g in state["slices"].items()}
        if state.get("region") is not None:
            keep.add(self._region_path(state["region"]).name)
        for old in [*self.folder.glob("labels_*.npy"), *self.folder.glob("region*.npy")]:
            if old.name not in keep:
                with contextlib.suppress(OSError):
                    old.unlink()

    def load(self) -> tuple[np.ndarray, list[int], np.ndarray | None] | None:
        """``(labels, checked slices, region or None)``, or None when nothing was saved."""
        state = self._read_state(missing_ok=True)
        if state is None:
            return None
        if tuple(state["shape"]) != self.shape:
            raise ValueError(
                f"{self.folder}: the saved corrections are for shape {tuple(state['shape'])}, not {self.shape}; "
                "they belong to another version of this image"
            )
        versioned = "generation" in state
        region_file = (
            self._region_path(state["region"]) if versioned and state.get("region") is not None else
            None if versioned else self._region_path()
        )  # fmt: skip
        region = np.load(region_file) if region_file is not None and region_file.exists() else None
        on_disk = state.get("labels_zarr")
        if on_disk is not None:  # labels kept in a zarr store: opened lazily, as they were
            import zarr

            try:
                labels = zarr.open_array(on_disk["store"], path=on_disk["path"], mode="r+")
            except Exception as exc:
                raise ValueError(
                    f"{self.folder}: the corrections were painted into {on_disk['store']}, which cannot be opened "
                    f"({exc}); was it moved or deleted?"
                ) from exc
            if tuple(labels.shape) != self.shape:
                raise ValueError(f"{on_disk['store']} holds shape {tuple(labels.shape)}, not {self.shape}")
            return labels, list(state.get("checked", [])), region
        labels = np.zeros(self.shape, np.dtype(state.get("dtype", "int32")))
        planes = labels.reshape(-1, *self.shape[-2:])
        files = (
            {int(z): self._slice_path(int(z), g) for z, g in state.get("slices", {}).items()}
            if versioned
            else {z: self._slice_path(z) for z in range(self._n_slices())}
        )
        for z, p in files.items():
            if p.exists():
                planes[z] = np.load(p)
            elif versioned:
                raise ValueError(f"{p}: a slice of the saved corrections is missing; the session folder was changed")
        return labels, list(state.get("checked", [])), region

    def state(self) -> dict[str, Any]:
        """The saved state, ``{}`` when there is none; ``{"error": sentence}`` when it cannot be read."""
        try:
            return self._read_state(missing_ok=True) or {}
        except ValueError as exc:
            return {"error": str(exc)}


def zarr_location(labels: Any) -> dict | None:
    """Where a zarr array on a local disk keeps its data, or None for anything else.

    Painting into such an array writes its chunks to disk as it goes (zarr writes each
    chunk file atomically), so a session only records where they are.
    """
    root = getattr(getattr(labels, "store", None), "root", None)
    if root is None or not isinstance(getattr(labels, "path", None), str):
        return None
    return {"store": str(root), "path": labels.path}


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)
