"""The ``napari-unet`` command: the same core as the plugin, over files and folders.

Every sub-command reports a bad input as one line, ``napari-unet: error: ...``, and exits
with status 1; no traceback reaches the user unless ``NAPARI_UNET_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet import __version__

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


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files to describe")


@command("info", _info_args)
def info(args: argparse.Namespace) -> int:
    """Describe images as napari-unet reads them: shape, axes, type, pixel size."""
    from napari_unet.io import read_image

    failed = 0
    for path in args.inputs:
        try:
            img = read_image(path)
        except (ValueError, OSError) as exc:
            error(str(exc))
            failed += 1
            continue
        scale = ", ".join(f"{a}={s:g} {u}" for a, s, u in zip(img.spatial_axes, img.scale, img.units))
        kind = "labels" if img.is_labels else "image"
        lazy = " (lazy)" if img.lazy else ""
        print(f"{path}: {kind} {img.axes} {img.shape} {img.data.dtype}{lazy}; {scale}")
    return 1 if failed else 0


def _view_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files to open")
    p.add_argument("--sample", choices=["rpe1", "u2os", "misc"], help="open a shipped sample image with its labels")


@command("view", _view_args)
def view(args: argparse.Namespace) -> int:
    """Open napari with the plugin, the given files and/or a sample image."""
    import napari

    viewer = napari.Viewer(title="napari-unet")
    if args.sample:
        viewer.open_sample("napari-unet", args.sample)
    for path in args.inputs:
        viewer.open(path, plugin="napari-unet")
    napari.run()
    return 0


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
            if bar is None:
                bar = tqdm(total=event.total, desc=desc, unit="step", leave=False, file=sys.stderr, dynamic_ncols=True)
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


def _inputs(patterns: Sequence[str]) -> list[Path]:
    """Files from paths, folders (their images) and globs, in order, without repeats."""
    import glob

    from napari_unet.io import SUPPORTED_SUFFIXES

    out: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not matches:
            raise FileNotFoundError(f"{pattern}: no files match")
        for m in matches:
            path = Path(m)
            if path.is_dir():
                out += sorted(q for q in path.iterdir() if q.name.lower().endswith(SUPPORTED_SUFFIXES))
            else:
                out.append(path)
    return list(dict.fromkeys(out))


def _out_dir(path: str) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise PermissionError(f"{out}: no permission to write here; choose another --out folder")
    return out


def _scale_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, help="run on a local dask cluster of N single-threaded workers")
    p.add_argument(
        "--scheduler", default=None, help="address of an existing dask.distributed scheduler (tcp://host:8786)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="redo files whose outputs already exist (default: skip them)"
    )


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="output folder")
    _model_args(p)
    p.add_argument("--tile", type=int, default=None, help="tile side in pixels (default: the model's)")
    p.add_argument("--overlap", type=float, default=None, help="tile overlap fraction in [0, 1)")
    p.add_argument("--batch", type=int, default=None, help="tiles per batch")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the network first (~30 s once; pays off for long runs)"
    )
    p.add_argument(
        "--block", type=int, default=2048, help="block side for images opened lazily (larger than --lazy-gb)"
    )
    p.add_argument(
        "--lazy-gb", type=float, default=1.0, help="images larger than this (GB) are predicted out of core into zarr"
    )
    _scale_args(p)


def _predict_one(model: Any, img: Any, args: Any, desc: str) -> Any:
    from napari_unet.predict import predict_iter

    gen = predict_iter(
        model, img.data, axes=img.axes, device=args.device, tile=getattr(args, "tile", None),
        overlap=getattr(args, "overlap", None), batch_size=getattr(args, "batch", None),
        precision=getattr(args, "precision", "auto"), compile=getattr(args, "compile", False),
    )  # fmt: skip
    return _drive(gen, desc)


def predict_outputs(path: str, out: str, lazy_bytes: float = float("inf")) -> list[str]:
    """The files ``predict`` writes for an input (zarr stores for huge images)."""
    from napari_unet.io import _stem

    stem = _stem(Path(path))
    big = Path(path).exists() and Path(path).stat().st_size > lazy_bytes
    ext = "zarr" if big else "tif"
    return [str(Path(out) / f"{stem}_prob.{ext}"), str(Path(out) / f"{stem}_mask.{ext}")]


def predict_file(path: str, *, out: str, options: dict) -> list[str]:
    """Predict one file into ``out`` (runs in this process or on a dask worker)."""
    from napari_unet.io import read_image, write_tiff
    from napari_unet.predict import probabilities_to_mask
    from napari_unet.scale import load_model_cached

    args = argparse.Namespace(**options)
    model = load_model_cached(args.model)
    lazy_bytes = args.lazy_gb * 1e9
    img = read_image(path, lazy_threshold=int(lazy_bytes))
    prob_path, mask_path = predict_outputs(path, out, lazy_bytes)
    if img.lazy and img.channel_axis is None and not img.rgb and img.axes in ("YX", "ZYX"):
        import dask.array as da

        from napari_unet.scale import predict_lazy

        probs = predict_lazy(img.data, args.model, axes=img.axes, block=args.block, tile=args.tile, overlap=args.overlap,
                             device="cpu" if args.device == "auto" else args.device, precision=args.precision)  # fmt: skip
        da.to_zarr(probs, prob_path, overwrite=True)
        import zarr

        stored = da.from_zarr(zarr.open_array(prob_path, mode="r"))
        da.to_zarr((stored[0] > model.card.threshold).astype(np.uint8), mask_path, overwrite=True)
        return [prob_path, mask_path]
    prob = _predict_one(model, img, args, Path(path).name)
    write_tiff(prob_path, prob, axes="C" + img.spatial_axes, scale=img.scale, units=img.units)
    mask = probabilities_to_mask(prob, model.card)
    write_tiff(mask_path, mask, axes=img.spatial_axes, scale=img.scale, units=img.units, labels=True)
    return [prob_path, mask_path]


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


@command("predict", _predict_args)
def predict_cmd(args: argparse.Namespace) -> int:
    """Predict probabilities and a mask for each image: <stem>_prob.tif and <stem>_mask.tif."""
    from napari_unet.model import resolve_model_path
    from napari_unet.scale import load_model_cached, run_files

    files = _inputs(args.inputs)
    out = _out_dir(args.out)
    load_model_cached(args.model)  # a bad model name fails here, once, before any file
    if args.workers or args.scheduler:
        args.model = str(resolve_model_path(args.model or "nuclei"))  # workers resolve the same file
    options = {
        k: getattr(args, k)
        for k in ("model", "device", "tile", "overlap", "batch", "precision", "compile", "block", "lazy_gb")
    }
    results = run_files(
        predict_file, files, expected=lambda p: predict_outputs(p, str(out), args.lazy_gb * 1e9), workers=args.workers,
        scheduler=args.scheduler, overwrite=args.overwrite, out=str(out), options=options,
    )  # fmt: skip
    return _report(results)


def _count_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="images, probability TIFFs or masks; files, folders or globs"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--input-kind", default="auto", choices=["auto", "image", "probability", "mask", "labels"])
    _model_args(p)
    p.add_argument(
        "--min-area",
        type=float,
        default=None,
        help="drop objects smaller than this (pixels; default: the model's, else 10)",
    )
    p.add_argument("--max-area", type=float, default=None, help="drop objects larger than this (pixels)")
    p.add_argument("--exclude-border", action="store_true", help="drop objects touching the image border")
    _scale_args(p)


def guess_input_kind(img: Any) -> tuple[str, str]:
    """What a file holds, and why we think so: image, probability, mask or labels."""
    import numpy as np

    name = img.name.lower()
    if name.endswith("_prob"):
        return "probability", "its name ends in _prob"
    if img.is_labels:
        sample = np.asarray(img.data[tuple(slice(0, 512) for _ in img.shape)])
        values = np.unique(sample)
        if len(values) <= 2 and not img.lazy:
            return "mask", "it is a label file holding only 0 and one value"
        return "labels", "it is a label file (name or tag) with several object ids"
    dtype = img.data.dtype
    if dtype.kind == "f":
        sample = np.asarray(img.data[tuple(slice(0, 512) for _ in img.shape)])
        if sample.min() >= 0 and sample.max() <= 1 and "C" in img.axes:
            return "probability", "float values in [0, 1] with a channel axis"
    if dtype.kind in "bui" and not img.lazy:
        values = np.unique(np.asarray(img.data))
        if len(values) <= 2:
            return "mask", f"it holds only the values {values.tolist()}"
    return "image", "it looks like a raw image"


def count_outputs(path: str, out: str) -> list[str]:
    from napari_unet.io import _stem

    stem = _stem(Path(path))
    return [
        str(Path(out) / f"{stem}_labels.tif"),
        str(Path(out) / f"{stem}_objects.csv"),
        str(Path(out) / f"{stem}_counts.csv"),
    ]


def count_file(path: str, *, out: str, options: dict) -> list[str]:
    """Count one file into ``out`` (runs in this process or on a dask worker)."""
    import numpy as np

    from napari_unet.count import count_iter, count_per_slice
    from napari_unet.io import read_image, write_tiff
    from napari_unet.scale import load_model_cached

    args = argparse.Namespace(**options)
    img = read_image(path)
    kind, why = (args.input_kind, "as asked") if args.input_kind != "auto" else guess_input_kind(img)
    print(f"{path}: counting it as {kind} ({why})")
    intensity, source, card, model = None, np.asarray(img.data), None, None
    if kind in ("image", "probability"):
        model = load_model_cached(args.model)
        card = model.card
    if kind == "image":
        intensity = source if img.channel_axis is None and not img.rgb else None
        source = _predict_one(model, img, args, Path(path).name)
        kind = "probability"
    elif kind == "probability" and "C" not in img.axes:
        source = source[None]
    min_area = (
        args.min_area if args.min_area is not None else float((card.postprocess if card else {}).get("min_area", 10))
    )
    spatial_scale = img.scale[-2:] if img.units[-1] != "pixel" else None
    unit = {"micrometer": "um"}.get(img.units[-1], img.units[-1]) if spatial_scale else "px"
    gen = count_iter(source, kind=kind, card=card, intensity=intensity, scale=spatial_scale, unit=unit,
                     min_area=min_area, max_area=args.max_area, exclude_border=args.exclude_border)  # fmt: skip
    labels, table = _drive(gen, Path(path).name)
    labels_path, objects_path, counts_path = count_outputs(path, out)
    write_tiff(labels_path, labels, axes=img.spatial_axes, scale=img.scale, units=img.units, labels=True)
    table.insert(0, "file", img.name)
    table.to_csv(objects_path, index=False)
    n_slices = int(np.prod(labels.shape[:-2])) if labels.ndim > 2 else 1
    per = count_per_slice(table, n_slices)
    per.insert(0, "file", img.name)
    per["unit"] = unit
    if n_slices == 1:
        per["slice"] = ""
    per.to_csv(counts_path, index=False)
    print(f"{path}: {len(table)} objects -> {objects_path}")
    return [labels_path, objects_path, counts_path]


@command("count", _count_args)
def count_cmd(args: argparse.Namespace) -> int:
    """Count and measure objects: <stem>_labels.tif, <stem>_objects.csv and counts.csv."""
    import pandas as pd

    from napari_unet.model import resolve_model_path
    from napari_unet.scale import run_files

    files = _inputs(args.inputs)
    out = _out_dir(args.out)
    if args.workers or args.scheduler:
        args.model = str(resolve_model_path(args.model or "nuclei"))
    options = {k: getattr(args, k) for k in ("model", "device", "input_kind", "min_area", "max_area", "exclude_border")}
    results = run_files(
        count_file, files, expected=lambda p: count_outputs(p, str(out)), workers=args.workers, scheduler=args.scheduler,
        overwrite=args.overwrite, out=str(out), options=options,
    )  # fmt: skip
    per_file = [
        pd.read_csv(r.outputs[2], keep_default_na=False)
        for r in results
        if r.ok and len(r.outputs) == 3 and Path(r.outputs[2]).exists()
    ]
    if per_file:
        pd.concat(per_file, ignore_index=True)[["file", "slice", "count", "mean_area", "unit"]].to_csv(
            out / "counts.csv", index=False
        )
        print(f"counts: {out / 'counts.csv'}")
    return _report(results)


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="folder of predicted instance labels (or masks)")
    p.add_argument("--truth", required=True, help="folder of ground-truth instance labels; files matched by stem")


def _base_stem(name: str) -> str:
    for suffix in ("_labels", "_label", "_masks", "_mask", "_pred", "_truth", "_gt"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


@command("evaluate", _evaluate_args)
def evaluate_cmd(args: argparse.Namespace) -> int:
    """Compare predicted and true label images: Dice, IoU, object F1, mAP and counts."""
    import numpy as np
    import pandas as pd

    from napari_unet.io import read_image
    from napari_unet.metrics import object_scores

    pred_files, truth_files = _inputs([args.pred]), _inputs([args.truth])
    truth_by = {_base_stem(read_stem(p)): p for p in truth_files}
    rows, failed = [], 0
    for p in pred_files:
        stem = _base_stem(read_stem(p))
        if stem not in truth_by:
            error(f"{p}: no ground truth named {stem}* in {args.truth}; skipped")
            failed += 1
            continue
        try:
            pred, truth = np.asarray(read_image(p).data), np.asarray(read_image(truth_by[stem]).data)
            if pred.shape != truth.shape:
                raise ValueError(f"prediction shape {pred.shape} differs from the truth's {truth.shape}")
            rows.append({"image": stem, **object_scores(pred, truth)})
        except (ValueError, OSError) as exc:
            error(f"{p}: {exc}")
            failed += 1
    if not rows:
        raise ValueError(f"no predicted file in {args.pred} has a matching ground truth in {args.truth}")
    table = pd.DataFrame(rows)
    cols = ["image", "dice", "iou", "precision", "recall", "f1_50", "mAP", "n_pred", "n_true"]
    mean = table[cols[1:7]].mean()
    table.loc[len(table)] = ["MEAN", *mean.tolist(), table["n_pred"].sum(), table["n_true"].sum()] + [np.nan] * (
        len(table.columns) - len(cols)
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"median absolute count error: {100 * float(np.median(table['count_rel_error'].iloc[:-1])):.1f}%")
    return 1 if failed else 0


def read_stem(path: Path) -> str:
    from napari_unet.io import _stem

    return _stem(path)


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", nargs="+", required=True, help="training images")
    p.add_argument("--labels", nargs="+", required=True, help="their label images, in the same order")
    p.add_argument("--annotated", nargs="+", default=None,
                   help="per image: a mask TIFF of the checked region, or checked slices like 0,3,7 (default: all)")  # fmt: skip
    base = p.add_mutually_exclusive_group()
    base.add_argument("--base", default=None, help="model to fine-tune (default: the shipped nuclei model)")
    base.add_argument("--scratch", action="store_true", help="start from random weights")
    p.add_argument(
        "--classes",
        type=int,
        default=1,
        help="with --scratch: 1 = foreground (+boundary), N>1 = N classes incl. background",
    )
    p.add_argument("--out", required=True, help="name of the new model (saved to the user model folder) or a path")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max-seconds", type=float, default=None, help="time budget in seconds")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)


@command("train", _train_args)
def train_cmd(args: argparse.Namespace) -> int:
    """Fine-tune a model on corrected labels (or train one from scratch) and register it."""
    import numpy as np

    from napari_unet.io import read_image
    from napari_unet.model import ModelCard, load_model, save_model, user_model_dir
    from napari_unet.train import TrainConfig, Trainer, TrainingItem

    if len(args.images) != len(args.labels):
        raise ValueError(
            f"got {len(args.images)} images but {len(args.labels)} label files; give one label file per image"
        )
    if args.annotated and len(args.annotated) != len(args.images):
        raise ValueError("give one --annotated entry per image (a mask file or slice list like 0,3)")
    items = []
    for k, (ip, lp) in enumerate(zip(args.images, args.labels)):
        img, lab = read_image(ip), read_image(lp)
        region = None
        if args.annotated:
            spec = args.annotated[k]
            if all(c.isdigit() or c == "," for c in spec):
                region = [int(v) for v in spec.split(",") if v]
            else:
                region = np.asarray(read_image(spec).data) > 0
        items.append(TrainingItem(img.data, np.asarray(lab.data).astype(np.int32), region, img.name, img.axes))
    base, card = None, None
    if args.scratch:
        if args.classes > 1:
            card = ModelCard(
                "scratch",
                classes=("background", *[f"class {i}" for i in range(1, args.classes)]),
                activation="softmax",
                arch_args={"features": [16, 32, 64, 128, 256]},
            )
        else:
            card = ModelCard(
                "scratch", classes=("foreground", "boundary"), arch_args={"features": [16, 32, 64, 128, 256]}
            )
    else:
        base = load_model(args.base)
    name = Path(args.out).name
    config = TrainConfig(epochs=args.epochs, max_seconds=args.max_seconds, device=args.device, seed=args.seed)
    trainer = Trainer(items, base=base, card=card, config=config, name=name)

    def show(e: Any) -> dict:
        i = e.info
        return {"loss": f"{i.get('loss', 0):.3f}", **({"val_dice": f"{i['val_dice']:.3f}"} if "val_dice" in i else {})}

    result = _drive(trainer.steps(), "train", show)
    dest = Path(args.out) if (os.sep in args.out or args.out.endswith(".safetensors")) else user_model_dir() / name
    path = save_model(result.model, dest, result.card)
    print(result.verdict())
    print(f"saved {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-unet", description="U-Net segmentation for microscopy images.")
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_arguments, fn) in _COMMANDS.items():
        p = sub.add_parser(name, help=(fn.__doc__ or "").strip().splitlines()[0], description=fn.__doc__)
        add_arguments(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except (ValueError, OSError) as exc:
        if os.environ.get("NAPARI_UNET_DEBUG"):
            raise
        error(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
