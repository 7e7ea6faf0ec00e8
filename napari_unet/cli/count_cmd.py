"""``napari-unet count``: objects split, measured and counted per file and slice."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.cli._base import (
    _drive,
    _inputs,
    _model_args,
    _object_args,
    _out_dir,
    _prediction_args,
    _report,
    _scale_args,
    command,
    error,
    folder_lock,
    manifest_path,
    outputs_complete,
    settings_from_args,
    write_csv,
    write_manifest,
)
from napari_unet.io._units import short_unit

OPTIONS = ("model", "device", "input_kind", "tile", "overlap", "batch", "precision", "threshold", "min_area",
           "max_area", "min_relative_area", "seed_threshold", "boundary_threshold", "exclude_border")  # fmt: skip


def _count_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="images, probability TIFFs or masks; files, folders or globs"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--input-kind",
        default="auto",
        choices=["auto", "image", "probability", "mask", "labels"],
        help="what the inputs hold; auto decides per file and says why (default: auto)",
    )
    _model_args(p)
    _prediction_args(p)
    _object_args(p)
    _scale_args(p)


def guess_input_kind(img: Any) -> tuple[str, str]:
    """What a file holds, and why we think so: image, probability, mask or labels."""

    name = img.name.lower()
    if name.endswith("_prob"):
        return "probability", "its name ends in _prob"
    if name.endswith("_mask") and img.data.dtype.kind in "bu" and img.lazy:
        return "mask", "its name ends in _mask (too large to look at every value)"
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


def count_outputs(path: str, out: str, suffix: str = ".tif") -> list[str]:
    """The files ``count`` writes for an input: the labels (NIfTI beside a clinical volume, else
    TIFF), the objects and the counts."""
    from napari_unet.io import image_stem

    stem = image_stem(Path(path))
    return [
        str(Path(out) / f"{stem}_labels{suffix}"),
        str(Path(out) / f"{stem}_objects.csv"),
        str(Path(out) / f"{stem}_counts.csv"),
    ]


def count_file(path: str, *, out: str, options: dict) -> list[str]:
    """Count one file into ``out`` (runs in this process or on a dask worker)."""

    from napari_unet.engine.scale import load_model_cached
    from napari_unet.io import read_image
    from napari_unet.io.writing import result_suffix, write_result
    from napari_unet.objects.count import count_classes, count_iter, count_per_class, count_per_slice, measure
    from napari_unet.objects.micronuclei import add_to_table
    from napari_unet.objects.pipeline import segment_iter

    manifest_path(out, path, "count").unlink(missing_ok=True)  # until all outputs are whole again
    img = read_image(path)
    asked = options["input_kind"]
    kind, why = (asked, "as asked") if asked != "auto" else guess_input_kind(img)
    print(f"{path}: counting it as {kind} ({why})")
    if img.metadata.get("note"):
        print(img.metadata["note"])
    intensity, source, card, labels, micronuclei = None, None, None, None, None
    if kind in ("image", "probability"):
        card = load_model_cached(options["model"]).card
        settings = settings_from_args(options, card)
    else:  # a mask or labels: the object options alone, no model
        from napari_unet.objects.settings import SEED_OUTPUTS

        for name in SEED_OUTPUTS:
            if options.get(name) is not None:
                flag = "--" + name.replace("_", "-")
                error(f"warning: {path}: {flag} sets the seeds in a model's output; this {kind} is parted by its shape")
        settings = settings_from_args({k: v for k, v in options.items() if k not in ("device", *SEED_OUTPUTS)}, None)
    if kind == "image":
        intensity = np.asarray(img.data) if img.channel_axis is None and not img.rgb else None
        model = load_model_cached(options["model"])
        result = _drive(segment_iter(model, img.data, axes=img.axes, settings=settings), Path(path).name)
        for warning in result.warnings:
            error(f"warning: {path}: {warning}")
        labels, micronuclei = result.labels, result.micronuclei
    else:
        source = np.asarray(img.data)
        if kind == "probability" and "C" not in img.axes:
            source = source[None]
        if source.size and source.flat[0] != 0 and np.all(source == source.flat[0]):  # (all 0: no objects, fine)
            raise ValueError(
                f"{path}: every pixel is {source.flat[0]}, so the whole image would be one object; there is nothing "
                "to count (is it the right file?)"
            )
    spatial_scale = img.scale[-2:] if img.units[-1] != "pixel" else None
    unit = short_unit(img.units[-1]) if spatial_scale else "px"
    semantic = card is not None and card.activation == "softmax"
    if labels is None:  # a model's output goes by the settings; a mask's or labels' objects by their areas
        areas = {} if kind == "probability" else {"min_area": settings.min_area, "max_area": settings.max_area,
                 "exclude_border": settings.exclude_border, "min_relative_area": settings.min_relative_area}  # fmt: skip
        gen = count_iter(source, kind=kind, card=card, settings=settings, intensity=intensity, scale=spatial_scale,
                         unit=unit, **areas)  # fmt: skip
        labels, table = _drive(gen, Path(path).name)
    if semantic and kind == "image":  # a class map: each connected region of a class is an object of that class
        labels, table = count_classes(labels, card, settings.min_area, intensity, scale=spatial_scale, unit=unit)
    elif kind == "image":  # objects from the pipeline, as they are: only measured here
        table = measure(labels, intensity, scale=spatial_scale, unit=unit)
        if micronuclei is not None:  # how many each nucleus has, and a total per slice
            table = add_to_table(table, labels, micronuclei)
    labels_path, objects_path, counts_path = count_outputs(path, out, result_suffix(img))
    write_result(labels_path, labels, image=img, axes=img.spatial_axes, labels=True)
    table.insert(0, "file", img.name)
    write_csv(table, objects_path)
    n_slices = int(np.prod(labels.shape[:-2])) if labels.ndim > 2 else 1
    # slice 0 for a 2D image, as in the objects table; a row per class for a semantic model
    per = count_per_class(table, n_slices, card.class_names) if semantic else count_per_slice(table, n_slices)
    per.insert(0, "file", img.name)
    per["unit"] = unit
    write_csv(per, counts_path)
    outputs = [labels_path, objects_path, counts_path]
    write_manifest(out, path, "count", options, outputs)  # last: the outputs are whole
    print(f"{path}: {len(table)} objects -> {objects_path}")
    return outputs


@command("count", _count_args)
def count_cmd(args: argparse.Namespace) -> int:
    """Count and measure objects: <stem>_labels.tif, <stem>_objects.csv and counts.csv."""
    import pandas as pd

    from napari_unet.engine.scale import load_model_cached, run_files
    from napari_unet.networks.model import resolve_model_path

    files = _inputs(args.inputs, skip_labels=True)
    out = _out_dir(args.out)
    options = {k: getattr(args, k) for k in OPTIONS}
    if args.input_kind in ("auto", "image", "probability"):  # a bad model or setting fails once, before any file
        settings_from_args(options, load_model_cached(args.model).card)
    else:
        settings_from_args({k: v for k, v in options.items() if k != "device"}, None)
    if args.workers or args.scheduler:
        options["model"] = str(resolve_model_path(args.model or "nuclei"))
    with folder_lock(out):  # two runs into one folder would mix their files
        results = run_files(
            count_file, files, complete=lambda p: outputs_complete(str(out), p, "count", options),
            workers=args.workers, scheduler=args.scheduler, overwrite=args.overwrite, out=str(out), options=options,
        )  # fmt: skip
        per_file = [
            pd.read_csv(r.outputs[2], keep_default_na=False)
            for r in results
            if r.ok and len(r.outputs) == 3 and Path(r.outputs[2]).exists()
        ]
        if per_file:
            table = pd.concat(per_file, ignore_index=True)
            columns = ("file", "slice", "class", "count", "mean_area", "micronuclei", "unit")
            table = table[[c for c in columns if c in table.columns]]
            write_csv(table, out / "counts.csv")
            print(f"counts: {out / 'counts.csv'}")
    return _report(results)
