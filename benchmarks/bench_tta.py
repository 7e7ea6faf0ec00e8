"""Test-time augmentation (8 flips and quarter turns): what it costs and what it gains.

    python benchmarks/bench_tta.py [--work ~/.cache/napari-unet/cv-nuclei-microscopy]

Cost: the shipped model on a 1024^2 image cut from the samples, ``segment`` with and without
``tta``, best of two, default precision. Gain: the fold models a grouped cross-validation
left in ``--work`` (``scripts/cv_nuclei.py``: one per acquisition left out of mnfinder's
training + validation images), each predicting the group it never saw, with and without
``tta`` (fp32, the shipped thresholds): pooled object F1@0.5 and @0.75, Dice, median count
error. The test split is never read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import emit_json, machine, table
from bench_predict import real_stack
from cv_nuclei import cv_images, scores

from napari_unet.networks.model import load_model
from napari_unet.objects.pipeline import segment


def best_of(n: int, fn, *args, **kwargs) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "napari-unet" / "cv-nuclei-microscopy"))
    args = parser.parse_args()
    work = Path(args.work)

    shipped = load_model("nuclei")
    image = real_stack(1, 1024)[0]
    segment(shipped, image[:256, :256], device="cpu", objects=False)  # warm up
    plain_s = best_of(2, segment, shipped, image, device="cpu", objects=False)
    tta_s = best_of(2, segment, shipped, image, device="cpu", objects=False, tta=True)

    data, groups, folds = cv_images()
    missing = [k for k in range(len(folds)) if not (work / f"fold{k}.safetensors").is_file()]
    if missing:
        sys.exit(f"{work} lacks the fold models {missing}: run scripts/cv_nuclei.py --work {work} first")
    probs = {False: [], True: []}
    truths = []
    for k, (_, test_idx) in enumerate(folds):
        model = load_model(str(work / f"fold{k}.safetensors"))
        for i in test_idx:
            for tta in (False, True):
                probs[tta].append(segment(model, data[i][1], device="cpu", precision="fp32", tta=tta,
                                          objects=False).probabilities)  # fmt: skip
            truths.append(data[i][2])
        print(f"fold {k} ({groups[test_idx[0]]}): {len(test_idx)} images", flush=True)
    card = shipped.card
    thresholds = (card.threshold, card.postprocess["boundary_threshold"], card.postprocess["min_area"])
    result = {tta: scores(probs[tta], truths, card, *thresholds) for tta in (False, True)}

    print(f"napari-unet test-time augmentation benchmark on {machine()}")
    print(f"cost, shipped model, 1024^2, default precision: {plain_s:.2f} s plain, {tta_s:.2f} s with tta "
          f"({tta_s / plain_s:.1f}x)")  # fmt: skip
    print(f"gain, {len(folds)} fold models from {work.name}, each on the acquisition it never saw "
          f"({len(truths)} images), fp32, thresholds {thresholds}:")  # fmt: skip
    rows = [{"tta": str(t), "F1@0.5": r["f1_50"], "F1@0.75": r["f1_75"], "F1/img": r["f1_50_mean_per_image"],
             "Dice": r["dice"], "median count err %": 100 * r["median_count_error"]} for t, r in result.items()]  # fmt: skip
    print(table(rows))
    emit_json({"benchmark": "tta", "cost_ratio": round(tta_s / plain_s, 2), "plain_s_1024": round(plain_s, 3),
               "folds": len(folds), "work": work.name, "images": len(truths),
               **{f"{'tta' if t else 'plain'}_{k}": round(v, 4) for t, r in result.items() for k, v in r.items()}})  # fmt: skip


if __name__ == "__main__":
    main()
