"""``napari-unet evaluate``: predicted vs true label images, matched by file stem."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_unet.cli._base import _inputs, command, error


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
    import pandas as pd

    from napari_unet.io import read_image
    from napari_unet.metrics import object_scores

    for option, folder in (("--pred", args.pred), ("--truth", args.truth)):
        if not Path(folder).is_dir():
            raise FileNotFoundError(
                f"{folder}: no such folder (given as {option}); give the folder that holds the label images"
            )
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
