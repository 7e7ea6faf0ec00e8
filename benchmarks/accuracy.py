"""Accuracy of the shipped nuclei model on mnfinder's validation split and the sample data.

    python benchmarks/accuracy.py [--model nuclei]

Never reads the test split (reserved for independent evaluation). The sample images come
from the training split, so their figures show fit, not generalisation.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import emit_json, machine, table
from mnfinder import iter_split

from napari_unet._sample_data import NUCLEI_SAMPLES, sample_paths
from napari_unet.io import read_image
from napari_unet.metrics import object_scores
from napari_unet.model import load_model
from napari_unet.pipeline import segment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    model = load_model(args.model)
    sets = {"validation": [(name, img, lab) for name, img, lab in iter_split("validation")]}
    sets["sample_data (train split)"] = [
        (key, np.asarray(read_image(sample_paths(key)[0]).data), np.asarray(read_image(sample_paths(key)[1]).data))
        for key in NUCLEI_SAMPLES
    ]
    rows, summary = [], {}
    for set_name, items in sets.items():
        scores = []
        for name, image, truth in items:
            t = time.perf_counter()
            pred = segment(model, image, device="cpu", precision=args.precision).labels
            s = object_scores(pred, truth)
            scores.append(s)
            rows.append({"set": set_name, "image": name, **{k: s[k] for k in ("dice", "iou", "precision", "recall", "f1_50", "mAP")},
                         "f1_50_img": s["f1_50"],
                         "n_pred": s["n_pred"], "n_true": s["n_true"], "count_err_%": 100 * s["count_rel_error"],
                         "seconds": time.perf_counter() - t})  # fmt: skip
        # pooled object F1 over the set (every object counts once: a dense image weighs more), and
        # beside it the mean of the per-image F1s; means of the other per-image figures
        mean = {k: float(np.mean([s[k] for s in scores])) for k in ("dice", "iou", "precision", "recall", "mAP")}
        tp, fp, fn = (sum(s[k] for s in scores) for k in ("tp_50", "fp_50", "fn_50"))
        mean["f1_50"] = 2 * tp / max(1, 2 * tp + fp + fn)
        mean["f1_50_mean_per_image"] = float(np.mean([s["f1_50"] for s in scores]))
        rows.append({"set": set_name, "image": "POOLED", **mean, "f1_50_img": mean["f1_50_mean_per_image"], "n_pred": sum(s["n_pred"] for s in scores),
                     "n_true": sum(s["n_true"] for s in scores),
                     "count_err_%": 100 * float(np.median([s["count_rel_error"] for s in scores])), "seconds": float("nan")})  # fmt: skip
        summary[set_name] = {**mean, "median_count_error": float(np.median([s["count_rel_error"] for s in scores]))}
    print(f"napari-unet accuracy benchmark: model {args.model} ({args.precision}) on {machine()}")
    print("POOLED rows: f1_50 pooled over every object of the set; f1_50_img the mean of the per-image F1s;")
    print("count_err_% the median over images; the other columns the mean over images")
    print(
        table(
            rows,
            [
                "set",
                "image",
                "dice",
                "iou",
                "precision",
                "recall",
                "f1_50",
                "f1_50_img",
                "mAP",
                "n_pred",
                "n_true",
                "count_err_%",
                "seconds",
            ],
        )
    )
    val = summary["validation"]
    emit_json({"benchmark": "accuracy", "model": args.model, "val_dice": round(val["dice"], 4), "val_f1_50": round(val["f1_50"], 4),
               "val_f1_50_mean_per_image": round(val["f1_50_mean_per_image"], 4),
               "val_mAP": round(val["mAP"], 4), "val_median_count_error": round(val["median_count_error"], 4),
               "sample_dice": round(summary["sample_data (train split)"]["dice"], 4)})  # fmt: skip


if __name__ == "__main__":
    main()
