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

from napari_unet._sample_data import NUCLEI_SAMPLES, SAMPLE_DIR, SAMPLES, sample_paths
from napari_unet.io import read_image
from napari_unet.networks.model import load_model
from napari_unet.objects.metrics import match_objects, object_scores
from napari_unet.objects.micronuclei import has_micronuclei
from napari_unet.objects.pipeline import segment


def micronuclei_path(key: str):
    """mnfinder's micronuclei of a shipped sample (``<stem>_micronuclei.tif``)."""
    return SAMPLE_DIR / f"{SAMPLES[key][0]}_micronuclei.tif"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    model = load_model(args.model)
    sets = {"validation": list(iter_split("validation", micronuclei=True))}
    sets["sample_data (train split)"] = [
        (key, *(np.asarray(read_image(p).data) for p in (*sample_paths(key), micronuclei_path(key)))) for key in NUCLEI_SAMPLES
    ]  # fmt: skip
    marks = has_micronuclei(model.card)
    rows, summary, mn_rows = [], {}, []
    for set_name, items in sets.items():
        scores, mn_scores = [], []
        for name, image, truth, mn_truth in items:
            t = time.perf_counter()
            result = segment(model, image, device="cpu", precision=args.precision)
            seconds = time.perf_counter() - t
            s = object_scores(result.labels, truth)
            scores.append(s)
            rows.append({"set": set_name, "image": name, **{k: s[k] for k in ("dice", "iou", "precision", "recall", "f1_50", "mAP")},
                         "f1_50_img": s["f1_50"],
                         "n_pred": s["n_pred"], "n_true": s["n_true"], "count_err_%": 100 * s["count_rel_error"],
                         "seconds": seconds})  # fmt: skip
            if marks:  # micronuclei: found (IoU >= 0.3, they are a few to 200 px) and counted
                m = match_objects(result.micronuclei, mn_truth, threshold=0.3)
                mn_scores.append(m)
                mn_rows.append({"set": set_name, "image": name, "f1_30": m["f1"], "tp": m["tp"], "fp": m["fp"], "fn": m["fn"],
                                "n_pred": m["n_pred"], "n_true": m["n_true"],
                                "count_err_%": 100 * abs(m["n_pred"] - m["n_true"]) / max(1, m["n_true"])})  # fmt: skip
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
        if mn_scores:
            tp, fp, fn = (sum(m[k] for m in mn_scores) for k in ("tp", "fp", "fn"))
            errors = [r["count_err_%"] for r in mn_rows if r["set"] == set_name]
            mn_rows.append({"set": set_name, "image": "POOLED", "f1_30": 2 * tp / max(1, 2 * tp + fp + fn), "tp": tp, "fp": fp, "fn": fn,
                            "n_pred": sum(m["n_pred"] for m in mn_scores), "n_true": sum(m["n_true"] for m in mn_scores),
                            "count_err_%": float(np.median(errors))})  # fmt: skip
            summary[set_name]["mn_f1_30"] = mn_rows[-1]["f1_30"]
            summary[set_name]["mn_median_count_error"] = mn_rows[-1]["count_err_%"] / 100
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
    if mn_rows:
        print(
            "\nmicronuclei (the model's micronuclei output, outside its nuclei) against mnfinder's mn_masks; matched at IoU >= 0.3"
        )
        print(table(mn_rows, ["set", "image", "f1_30", "tp", "fp", "fn", "n_pred", "n_true", "count_err_%"]))
    val = summary["validation"]
    mn_figures = {}
    if marks:
        mn_figures = {"val_mn_f1_30": round(val["mn_f1_30"], 4), "val_mn_median_count_error": round(val["mn_median_count_error"], 4),
                      "sample_mn_f1_30": round(summary["sample_data (train split)"]["mn_f1_30"], 4)}  # fmt: skip
    emit_json({**mn_figures, "benchmark": "accuracy", "model": args.model, "val_dice": round(val["dice"], 4), "val_f1_50": round(val["f1_50"], 4),
               "val_f1_50_mean_per_image": round(val["f1_50_mean_per_image"], 4),
               "val_mAP": round(val["mAP"], 4), "val_median_count_error": round(val["median_count_error"], 4),
               "sample_dice": round(summary["sample_data (train split)"]["dice"], 4)})  # fmt: skip


if __name__ == "__main__":
    main()
