"""``napari-unet evaluate``: predicted vs true label images, matched by file stem."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.cli._base import _inputs, command, error

#: what else ``predict`` writes beside the masks, left out of --pred folders
OTHER_OUTPUTS = ("_prob", "_overlay")

#: a label image whose largest value is at most this is read as a class map under --kind auto
MAX_CLASSES = 20


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="folder of predicted labels: instance ids, masks or class maps")
    p.add_argument("--truth", required=True, help="folder of ground-truth labels; files matched by stem")
    p.add_argument(
        "--kind",
        choices=("auto", "semantic", "instance"),
        default="auto",
        help=f"semantic: label values are classes, scored per class; instance: values are object ids. auto: "
        f"semantic when no truth image has a value above {MAX_CLASSES}",
    )
    p.add_argument("--json", default=None, metavar="FILE", help="also write every figure as JSON to FILE")


def _base_stem(name: str) -> str:
    for suffix in ("_labels", "_label", "_masks", "_mask", "_pred", "_truth", "_gt"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def score_pair(pred: np.ndarray, truth: np.ndarray, semantic: bool, classes: list[int]) -> dict[str, Any]:
    """Every figure for one image: per class (semantic), pixel accuracy, the foreground's
    Dice/IoU/precision/recall, object F1@0.5 and mAP, and counts."""
    from scipy import ndimage as ndi

    from napari_unet.objects.metrics import class_scores, object_scores, pixel_accuracy

    if semantic:  # objects are the connected regions of each class
        pred_obj, truth_obj = _components(pred, ndi), _components(truth, ndi)
        accuracy = pixel_accuracy(pred, truth)
    else:
        # a 0/1 mask (what predict writes for an object model): its connected regions are its objects
        pred_obj = ndi.label(pred > 0)[0] if pred.max() == 1 else pred
        truth_obj = ndi.label(truth > 0)[0] if truth.max() == 1 else truth
        accuracy = pixel_accuracy(pred > 0, truth > 0)
    scores = object_scores(pred_obj, truth_obj)
    row = {
        "dice": scores["dice"],
        "iou": scores["iou"],
        "precision": scores["precision"],
        "recall": scores["recall"],
        "pixel_accuracy": accuracy,
        "f1_50": scores["f1_50"],
        "mAP": scores["mAP"],
        "n_pred": int(scores["n_pred"]),
        "n_true": int(scores["n_true"]),
        "count_rel_error": scores["count_rel_error"],
    }
    if semantic:
        row["classes"] = class_scores(pred, truth, classes)
    return row


def _components(class_map: np.ndarray, ndi: Any) -> np.ndarray:
    """Instance ids of the connected regions of every class (a region never spans two classes)."""
    out = np.zeros(class_map.shape, np.int32)
    offset = 0
    for k in np.unique(class_map[class_map > 0]):
        lab, n = ndi.label(class_map == k)
        out[lab > 0] = lab[lab > 0] + offset
        offset += n
    return out


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if not (isinstance(r[key], float) and math.isnan(r[key]))]
    return float(np.mean(values)) if values else float("nan")


@command("evaluate", _evaluate_args)
def evaluate_cmd(args: argparse.Namespace) -> int:
    """Compare predicted and true labels: per class Dice/IoU/precision/recall, pixel accuracy,
    object F1 and mAP, and counts; per image and as a mean."""
    import pandas as pd

    from napari_unet.io import read_image

    for option, folder in (("--pred", args.pred), ("--truth", args.truth)):
        if not Path(folder).is_dir():
            raise FileNotFoundError(
                f"{folder}: no such folder (given as {option}); give the folder that holds the label images"
            )
    pred_files = [p for p in _inputs([args.pred]) if not read_stem(p).endswith(OTHER_OUTPUTS)]
    truth_files = _inputs([args.truth])
    truth_by = {_base_stem(read_stem(p)): p for p in truth_files}
    pairs, failed = [], 0
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
            for name, a in (("prediction", pred), ("truth", truth)):
                if a.dtype.kind not in "biu":
                    raise ValueError(f"the {name} holds {a.dtype} values; labels are integers (0 = background)")
                if a.size and int(a.min()) < 0:
                    raise ValueError(
                        f"the {name} holds the value {int(a.min())}; labels are 0 (background) or positive ids"
                    )
            pairs.append((stem, pred, truth))
        except (ValueError, OSError) as exc:
            error(f"{p}: {exc}")
            failed += 1
    if not pairs:
        raise ValueError(f"no predicted file in {args.pred} has a matching ground truth in {args.truth}")
    semantic = args.kind == "semantic" or (
        args.kind == "auto" and max(int(t.max()) if t.size else 0 for _, _, t in pairs) <= MAX_CLASSES
    )
    classes = sorted({int(v) for _, p, t in pairs for v in (*np.unique(p), *np.unique(t)) if v > 0}) if semantic else []
    rows = [{"image": stem, **score_pair(pred, truth, semantic, classes)} for stem, pred, truth in pairs]
    cols = ["dice", "iou", "precision", "recall", "pixel_accuracy", "f1_50", "mAP"]
    mean: dict[str, Any] = {c: _mean(rows, c) for c in cols}
    mean.update(n_pred=int(sum(r["n_pred"] for r in rows)), n_true=int(sum(r["n_true"] for r in rows)))
    mean["median_count_error"] = float(np.median([r["count_rel_error"] for r in rows]))
    if semantic:
        mean["classes"] = {
            str(k): {m: _mean([r["classes"][str(k)] for r in rows], m) for m in ("dice", "iou", "precision", "recall")}
            for k in classes
        }
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "classes"} for r in rows])
    table.loc[len(table)] = {"image": "MEAN", **{k: v for k, v in mean.items() if k in table.columns}}
    show = ["image", *cols, "n_pred", "n_true"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[show].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if semantic and not classes:
        print("\nper class: none (neither the predictions nor the truth hold a class other than background)")
    elif semantic:
        per_class = pd.DataFrame(
            [{"class": k, **v} for k, v in mean["classes"].items()],
            columns=["class", "dice", "iou", "precision", "recall"],
        )
        print("\nper class (mean over images):")
        print(per_class.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"median absolute count error: {100 * mean['median_count_error']:.1f}%")
    if args.json:
        from napari_unet._atomic import atomic_write

        report = {"kind": "semantic" if semantic else "instance", "images": rows, "mean": mean}
        text = json.dumps(_plain(report), indent=2, allow_nan=False)
        atomic_write(Path(args.json), lambda tmp: Path(tmp).write_text(text + "\n"))
        print(f"figures: {args.json}")
    return 1 if failed else 0


def _plain(value: Any) -> Any:
    """JSON-ready: numpy numbers as Python ones, NaN (no objects to score) as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    return value


def read_stem(path: Path) -> str:
    from napari_unet.io import image_stem

    return image_stem(path)
