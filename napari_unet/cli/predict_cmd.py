"""``napari-unet predict``: probabilities and masks for files, folders and huge images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.cli._base import (
    _drive,
    _inputs,
    _model_args,
    _out_dir,
    _positive_int,
    _prediction_args,
    _report,
    _scale_args,
    command,
    error,
    folder_lock,
    manifest_path,
    outputs_complete,
    settings_from_args,
    slice_numbers,
    write_manifest,
)

OPTIONS = ("model", "device", "tile", "overlap", "batch", "precision", "threshold", "compile", "tta", "block",
           "lazy_gb", "overlay", "truth", "follow", "annotated")  # fmt: skip


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="output folder")
    _model_args(p)
    _prediction_args(p)
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network first (13-37 s once per tile shape; 1.00-1.18x as fast on a 2-core CPU)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average each tile over its 8 flips and quarter turns (8x the time; "
        "refused for models trained with --no-flips)",
    )
    p.add_argument(
        "--block", type=_positive_int, default=2048, help="block side for images opened lazily (larger than --lazy-gb)"
    )
    p.add_argument(
        "--lazy-gb", type=float, default=1.0, help="images larger than this (GB) are predicted out of core into zarr"
    )
    p.add_argument(
        "--overlay",
        action="store_true",
        help="also write <stem>_overlay.png: the image with the prediction's outlines (the busiest slice of a stack)",
    )
    p.add_argument(
        "--truth",
        default=None,
        metavar="DIR",
        help="with --overlay: draw the true labels from DIR (matched by stem) too",
    )
    p.add_argument(
        "--follow",
        default=None,
        metavar="LABELS",
        help="a stack's drawn labels (a file, or a folder matched by stem): its checked slices keep what was drawn, "
        "and on the others only the predicted regions joined across slices to a drawn region of their class are "
        "kept (a region model's mask)",
    )
    p.add_argument(
        "--annotated",
        default=None,
        metavar="Z,...",
        help="with --follow: the checked slices, those drawn and those checked empty (default: the slices with labels)",
    )
    _scale_args(p)


def predict_outputs(path: str, out: str, big: bool = False, suffix: str = ".tif") -> list[str]:
    """The files ``predict`` writes for an input: zarr stores for images read lazily, NIfTI
    (``suffix`` ``.nii.gz``) beside a clinical volume, else TIFF."""
    from napari_unet.io import image_stem

    stem = image_stem(Path(path))
    ext = ".zarr" if big else suffix  # OME-Zarr (NGFF 0.5) for images larger than memory
    return [str(Path(out) / f"{stem}_prob{ext}"), str(Path(out) / f"{stem}_mask{ext}")]


def predict_file(path: str, *, out: str, options: dict) -> list[str]:
    """Predict one file into ``out`` (runs in this process or on a dask worker)."""
    from napari_unet.engine.scale import load_model_cached
    from napari_unet.io import read_image
    from napari_unet.io.writing import result_suffix, write_result
    from napari_unet.objects.pipeline import foreground_mask, segment_iter

    manifest_path(out, path, "predict").unlink(missing_ok=True)  # until all outputs are whole again
    model = load_model_cached(options["model"])
    settings = settings_from_args(options, model.card)
    lazy_bytes = options["lazy_gb"] * 1e9
    img = read_image(path, lazy_threshold=int(lazy_bytes))
    # read_image opens an image over --lazy-gb lazily; a lazy colour or multi-channel one is read plane by plane
    out_of_core = img.lazy and img.channel_axis is None and not img.rgb and img.axes in ("YX", "ZYX", "TYX")
    if out_of_core:
        from napari_unet.engine.run import out_of_core_refusal

        why = out_of_core_refusal(model.card, img.axes)
        if why:
            raise ValueError(f"{path} is larger than --lazy-gb ({options['lazy_gb']:g} GB), so it is predicted block by "
                             f"block, but {why}; raise --lazy-gb if it fits in memory")  # fmt: skip
        if options.get("follow"):
            raise ValueError(f"{path}: --follow needs the stack in memory; this one is predicted block by block (raise "
                             "--lazy-gb if it fits)")  # fmt: skip
    prob_path, mask_path = predict_outputs(path, out, out_of_core, result_suffix(img))
    semantic = model.card.activation == "softmax"  # its mask is the class map, cleaned of specks
    if out_of_core:
        return _predict_out_of_core(model, img, settings, semantic, prob_path, mask_path, path, out, options)
    if img.metadata.get("note"):
        print(img.metadata["note"])
    gen = segment_iter(model, img.data, axes=img.axes, settings=settings, objects=semantic)
    result = _drive(gen, Path(path).name)
    for warning in result.warnings:
        error(f"warning: {path}: {warning}")
    write_result(prob_path, result.probabilities, image=img, axes="C" + img.spatial_axes)
    mask = result.labels if semantic else foreground_mask(result.probabilities, model.card, result.settings)
    if options.get("follow"):
        mask = _followed(mask, path, img, model.card, options)
    write_result(mask_path, mask, image=img, axes=img.spatial_axes, labels=True)
    outputs = [prob_path, mask_path]
    if img.metadata.get("dicom"):  # a DICOM SEG on the source series, for Slicer, OHIF or a PACS
        from napari_unet.io.dicom_seg import write_dicom_seg

        seg = write_dicom_seg(Path(out) / f"{img.name}_seg.dcm", mask, img, class_names=model.card.class_names,
                              model_name=model.card.name)  # fmt: skip
        if seg is None:
            print(f"{path}: the mask is empty, so no DICOM SEG was written (a SEG needs one segment)")
        else:
            outputs.append(str(seg))
    if options.get("overlay"):
        outputs.append(write_report_overlay(img, mask, model.card, out, options.get("truth")))
    write_manifest(out, path, "predict", options, outputs)  # last: the outputs are whole
    return outputs


def _predict_out_of_core(
    model: Any,
    img: Any,
    settings: Any,
    semantic: bool,
    prob_path: str,
    mask_path: str,
    path: str,
    out: str,
    options: dict,
) -> list[str]:
    """An image over --lazy-gb through the same :func:`~napari_unet.objects.pipeline.segment_iter`,
    its probabilities computed block by block into an OME-Zarr store (finished, then renamed
    into place), the mask from the stored result: no second prediction."""
    import shutil

    import dask.array as da

    from napari_unet.io.ome_zarr import open_ome_zarr_array, write_ome_zarr
    from napari_unet.objects.pipeline import segment_iter

    partial = Path(prob_path + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    store = open_ome_zarr_array(partial, (model.card.out_channels, *img.data.shape), np.float32, axes="C" + img.axes,
                                scale=img.scale, units=img.units)  # fmt: skip
    try:
        gen = segment_iter(model, img.data, axes=img.axes, settings=settings, objects=semantic, out=store,
                           out_of_core=True, block=options["block"])  # fmt: skip
        result = _drive(gen, Path(path).name)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if Path(prob_path).exists():
        shutil.rmtree(prob_path)
    partial.rename(prob_path)
    if semantic:  # the class map of segment, cleaned of specks as in memory
        mask = result.labels
    else:
        mask = da.from_zarr(str(prob_path), component="0")[0] > result.settings.threshold
    write_ome_zarr(mask_path, mask.astype(np.uint8), axes=img.axes, scale=img.scale, units=img.units)
    write_manifest(out, path, "predict", options, [prob_path, mask_path])  # last: the outputs are whole
    return [prob_path, mask_path]


def write_report_overlay(img: Any, mask: np.ndarray, card: Any, out: str, truth_dir: str | None) -> str:
    """``<stem>_overlay.png``: the image (its busiest slice, for a stack) with the prediction's
    outlines, and the truth's from ``truth_dir`` when given."""
    from napari_unet.engine.planes import plane_layout, read_plane, select_channels
    from napari_unet.io import read_image
    from napari_unet.objects.report import display_plane, overlay, write_overlay

    truth = None
    if truth_dir:
        found = _truth_file(img.name, truth_dir)
        truth = np.asarray(read_image(found).data)
        if truth.shape != mask.shape:
            raise ValueError(f"{found}: the truth has shape {truth.shape} but the prediction {mask.shape}")
    data, axes = select_channels(img.data, img.axes, card.channels, card.image_channels)
    layout = plane_layout(tuple(data.shape), axes, card.image_channels)
    h, w = mask.shape[-2:]
    flat = mask.reshape(-1, h, w)
    busiest = int(np.argmax((flat > 0).reshape(len(flat), -1).sum(1))) if len(flat) > 1 else 0
    plane = read_plane(data, layout, busiest, card.image_channels)
    picture = overlay(
        display_plane(plane, card.normalisation),
        flat[busiest],
        None if truth is None else truth.reshape(-1, h, w)[busiest],
    )
    path = Path(out) / f"{img.name}_overlay.png"
    write_overlay(path, picture)
    if len(flat) > 1:
        print(f"{img.name}: overlay of slice {busiest}, the one with the most foreground")
    return str(path)


def _check_follow(options: dict, card: Any) -> None:
    """``--follow`` and ``--annotated`` that cannot work, refused before any image is predicted."""
    if options.get("annotated") and not options.get("follow"):
        raise ValueError(
            "--annotated goes with --follow LABELS (the drawn labels whose regions the prediction follows)"
        )
    if not options.get("follow"):
        return
    if card.activation != "softmax":
        raise ValueError(
            f"--follow keeps the regions of a region model (--classes 2 or more); model {card.name!r} finds objects"
        )
    if not Path(options["follow"]).exists():
        raise FileNotFoundError(f"{options['follow']}: no such file or folder (given as --follow)")
    if options.get("annotated"):
        slice_numbers(options["annotated"])


def _followed(mask: np.ndarray, path: str, img: Any, card: Any, options: dict) -> np.ndarray:
    """The class map with only the regions that continue the drawn ones (``--follow``)."""
    from napari_unet.io import read_image
    from napari_unet.objects.continuation import keep_continuing

    given = options["follow"]  # (a region model, and slice numbers that parse: _check_follow, before any image)
    found = Path(given) if Path(given).is_file() else _truth_file(img.name, given, "--follow")
    drawn = np.asarray(read_image(found).data)
    spec = options.get("annotated")
    if spec:
        checked = slice_numbers(spec)
    else:
        checked = [z for z in range(len(drawn)) if drawn[z].any()] if drawn.ndim == 3 else []
    try:
        followed, left_out = keep_continuing(mask, drawn, checked)
    except ValueError as exc:
        raise ValueError(f"{path} with {found}: {exc}") from None
    names = dict(enumerate(card.classes))
    if left_out:
        said = ", ".join(f"{n} of {names.get(c, c)}" for c, n in left_out.items())
        print(f"{path}: left out the predicted regions not joined to a drawn one ({said})")
    return followed


def _truth_file(stem: str, folder: str, given_as: str = "--truth") -> Path:
    from napari_unet.cli.evaluate_cmd import _base_stem, read_stem

    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: no such file or folder (given as {given_as})")
    for candidate in sorted(Path(folder).iterdir()):
        if candidate.is_file() and _base_stem(read_stem(candidate)) == stem:
            return candidate
    raise FileNotFoundError(f"no true labels for {stem} in {folder} (looked for {stem}.tif, {stem}_labels.tif ...)")


@command("predict", _predict_args)
def predict_cmd(args: argparse.Namespace) -> int:
    """Predict probabilities and a mask for each image: <stem>_prob.tif and <stem>_mask.tif."""
    from napari_unet.engine.scale import load_model_cached, run_files
    from napari_unet.networks.model import resolve_model_path

    files = _inputs(args.inputs, skip_labels=True)
    out = _out_dir(args.out)
    options = {k: getattr(args, k) for k in OPTIONS}
    card = load_model_cached(args.model).card  # a bad model name fails here, once, before any file
    settings_from_args(options, card)  # and so does a bad setting
    _check_follow(options, card)  # and --follow's options, before any prediction
    if args.workers or args.scheduler:
        options["model"] = str(resolve_model_path(args.model or "nuclei"))  # workers resolve the same file
    with folder_lock(out):  # two runs into one folder would mix their files
        results = run_files(
            predict_file, files, complete=lambda p: outputs_complete(str(out), p, "predict", options),
            workers=args.workers, scheduler=args.scheduler, overwrite=args.overwrite, out=str(out), options=options,
        )  # fmt: skip
    return _report(results)
