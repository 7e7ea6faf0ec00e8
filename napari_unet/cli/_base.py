"""What every sub-command shares: registration, error lines, progress bars, inputs, outputs."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from napari_unet.objects.settings import PRECISIONS

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, add_arguments: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    """Register a sub-command: ``add_arguments`` fills its parser, the function runs it."""

    def register(fn: Command) -> Command:
        _COMMANDS[name] = (add_arguments, fn)
        return fn

    return register


def error(message: str) -> None:
    print(f"napari-unet: error: {message}", file=sys.stderr)


def _drive(gen: Any, desc: str, show: Callable[[Any], dict] | None = None) -> Any:
    """Run a core generator to its end under a tqdm bar; returns the generator's result."""
    from tqdm import tqdm

    bar = None
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            if bar is None:  # starts at the first step done, so its rate is not taken from no time at all
                bar = tqdm(total=event.total, initial=event.done, desc=desc, unit="step", leave=False, file=sys.stderr,
                           dynamic_ncols=True)  # fmt: skip
            bar.n = event.done
            if show is not None:
                bar.set_postfix(show(event), refresh=False)
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()
        gen.close()


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default=None, help="registered model name or model file (default: the shipped nuclei model)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")


def _inputs(patterns: Sequence[str], *, skip_labels: bool = False) -> list[Path]:
    """Inputs from paths, folders (their images) and globs, in order, without repeats.

    What a folder holds comes from the reader table (:mod:`napari_unet.io.formats`): its image
    files, and each DICOM series in it (or below it) as one input ``FOLDER#LABEL``; an
    OME-Zarr store is one image. With ``skip_labels``, a folder's label files
    (``*_labels.tif``, ``*_mask.nii.gz``: ground truth or earlier results) are left out; a label
    file named on its own is kept. A folder or pattern with no image is an error.
    """
    import glob

    from napari_unet.io.formats import describe_formats, format_for

    out: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not matches:
            raise FileNotFoundError(f"{pattern}: no files match")
        for m in matches:
            path = Path(m)
            fmt = format_for(path, look_inside=False) if path.is_dir() else None
            if path.is_dir() and fmt is None:  # a folder of images (an OME-Zarr store is one image)
                found = _folder_inputs(path, skip_labels)
                if not found:
                    raise FileNotFoundError(f"no images found in {path} (napari-unet reads {describe_formats()})")
                out += found
            else:
                out.append(path)
    return list(dict.fromkeys(out))


def _folder_inputs(folder: Path, skip_labels: bool) -> list[Path]:
    """A folder's image files by their names, then its DICOM series (files without an ending are
    looked at only when the folder holds DICOM)."""
    from napari_unet.io import is_label_path
    from napari_unet.io.dicom import find_series, holds_dicom
    from napari_unet.io.formats import format_for

    found = []
    for q in sorted(folder.iterdir()):
        fmt = format_for(q, look_inside=False)
        if fmt is None or fmt.name == "DICOM" or (skip_labels and is_label_path(q)):
            continue
        found.append(q)
    if holds_dicom(folder):
        scan = find_series(folder)
        for note in scan.notes(folder):
            error(f"warning: {note}")
        found += [Path(s.named_in(folder)) for s in scan.series]
    return found


def _out_dir(path: str) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise PermissionError(f"{out}: no permission to write here; choose another --out folder")
    return out


def slice_numbers(spec: str) -> list[int]:
    """``--annotated`` slice numbers, ``"0,3,7"`` -> ``[0, 3, 7]``; they start at 0.

    >>> slice_numbers("0, 3,7")
    [0, 3, 7]
    """
    try:
        numbers = [int(v) for v in str(spec).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--annotated takes slice numbers like 3,7,12, got {spec!r}") from None
    negative = [n for n in numbers if n < 0]
    if negative:
        raise ValueError(f"--annotated: slice numbers start at 0 (the first slice), got {negative[0]} in {spec!r}")
    return numbers


def negative_slices_given(argv: Sequence[str]) -> str | None:
    """The value after ``--annotated`` that starts with a minus sign, which argparse would take
    for an option ("expected at least one argument"), else None."""
    for option, value in itertools.pairwise(argv):
        if option == "--annotated" and len(value) > 1 and value[0] == "-" and value[1].isdigit():
            return value
    return None


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (a negative worker count used to hang)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _prediction_args(p: argparse.ArgumentParser) -> None:
    """How images are predicted: the Settings fields a user sets on the command line."""
    p.add_argument(
        "--tile", type=_positive_int, default=None,
        help="tile side in pixels (default: chosen per image, the fewest computed pixels within 256 MiB for the network on a "
        "CPU, half the free memory on a GPU; --tile 256 uses the least memory)",
    )  # fmt: skip
    p.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="tile overlap fraction in [0, 1) (default: with the tile, twice the 99%% radius of the model's receptive field)",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=None,
        help="tiles per batch (default: with the tile, at most 8 on CUDA, 4 elsewhere)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: bf16 on a GPU or a CPU with native bf16 (masks Dice >= 0.999 vs fp32), else fp32",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="foreground probability threshold in (0, 1) (default: the model's)",
    )


def _object_args(p: argparse.ArgumentParser) -> None:
    """Which objects are kept: the Settings fields about objects."""
    p.add_argument(
        "--min-area", type=float, default=None, help="drop objects smaller than this, in pixels (default: the model's)"
    )
    p.add_argument(
        "--max-area",
        type=float,
        default=None,
        help="drop objects larger than this, in pixels (default: no upper limit)",
    )
    p.add_argument(
        "--min-relative-area",
        type=float,
        default=None,
        help="drop objects smaller than this share of the image's median object, in [0, 1) (0: off; "
        "default: the model's)",
    )
    p.add_argument(
        "--seed-threshold",
        type=float,
        default=None,
        help="models with a distance output (the shipped nuclei model): an object's seed is where the distance to its "
        "edge is above this share, in (0, 1); raise it to part touching objects more, lower it to keep an uneven "
        "object whole; near 1 small objects lose their seeds and touching ones stay joined (default: the model's)",
    )
    p.add_argument(
        "--boundary-threshold",
        type=float,
        default=None,
        help="models with a boundary output: an object's seed is where the boundary probability is below this, in "
        "(0, 1); lower it to part touching objects more (default: the model's)",
    )
    p.add_argument("--exclude-border", action="store_true", help="drop objects touching the image border")


def settings_from_args(options: dict, card: Any) -> Any:
    """One :class:`~napari_unet.objects.pipeline.Settings` from the model card and the command's options."""
    from napari_unet.objects.pipeline import Settings

    if options.get("device") not in (None, "auto"):
        from napari_unet.engine.inference import check_device

        check_device(options["device"])  # an absent device is named before any file is read
    names = ("threshold", "min_area", "max_area", "min_relative_area", "seed_threshold", "boundary_threshold", "tile",
             "overlap", "batch", "precision", "device", "compile", "tta")  # fmt: skip
    given = {k: options.get(k) for k in names if options.get(k) is not None}
    from napari_unet.objects.settings import SEED_OUTPUTS, seed_setting

    for name, output in SEED_OUTPUTS.items():
        if name in given and card is not None and output not in card.classes:
            other = seed_setting(card)
            instead = f"; give --{other.replace('_', '-')} instead" if other else ""
            raise ValueError(
                f"--{name.replace('_', '-')} sets the seeds of a model with a {output} output; model {card.name!r} has "
                f"the outputs {', '.join(card.classes)}{instead}"
            )
    if options.get("exclude_border"):
        given["exclude_border"] = True
    return Settings.for_model(card, **given)


def _scale_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="run on a local dask cluster of N single-threaded workers (default: files one after another here)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing dask.distributed scheduler (tcp://host:8786) (default: none)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="redo files whose outputs already exist (default: skip them)"
    )


# --------------------------------------------------------------------------- finished outputs


def manifest_path(out: str | os.PathLike, path: str | os.PathLike, command: str) -> Path:
    """Where a run records that one input's outputs are whole (hidden, beside them)."""
    from napari_unet.io import image_stem

    return Path(out) / f".{image_stem(Path(path))}.{command}.json"


def write_manifest(out: str, path: str, command: str, options: dict, outputs: list[str]) -> None:
    """Record, last and atomically, the options a file's outputs were made with and their sizes."""
    import json

    from napari_unet._atomic import atomic_write

    record = {
        "input": str(path),
        "options": {k: v for k, v in sorted(options.items())},
        "outputs": {str(o): _size(o) for o in outputs},
    }
    atomic_write(manifest_path(out, path, command), lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))


def _size(path: str | os.PathLike) -> int:
    p = Path(path)
    if p.is_dir():  # a zarr store
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def outputs_complete(out: str, path: str, command: str, options: dict) -> bool:
    """True when the outputs of ``path`` exist whole, made with the same ``options``: a run
    cut short (a full disk, Ctrl-C) or made with other options is done again."""
    import json

    try:
        record = json.loads(manifest_path(out, path, command).read_text())
        if record.get("options") != {k: v for k, v in sorted(options.items())} or record.get("input") != str(path):
            return False  # other options, or another input of the same name (scan.tif beside scan.nii.gz)
        return all(_size(o) == size for o, size in record["outputs"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold the output folder for this run: a second run into it is refused at once
    rather than mixing its files with this one's (Linux and macOS; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(out / ".napari-unet.lock", "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OSError(
                f"{out}: another napari-unet run is writing into this folder; wait for it to end or choose "
                "another --out folder"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def write_csv(table: Any, path: str | os.PathLike) -> None:
    """A table as CSV, atomically: a full disk leaves the old file, and a symbolic link
    planted at ``path`` is replaced, not followed."""
    from napari_unet._atomic import atomic_write

    atomic_write(Path(path), lambda tmp: table.to_csv(tmp, index=False))


def _report(results: list[Any]) -> int:
    failed = [r for r in results if not r.ok]
    for r in results:
        if r.ok:
            print(f"{r.path}: {'skipped, outputs exist' if r.skipped else ', '.join(r.outputs)}")
        else:
            error(r.message if r.path in r.message else f"{r.path}: {r.message}")
    if failed and len(results) > 1:
        error(f"{len(failed)} of {len(results)} file(s) failed; the others finished")
    return 1 if failed else 0
