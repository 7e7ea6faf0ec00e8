"""Do thresholds chosen by cross-validation hold up on the group they were not chosen on?

    python scripts/cv_thresholds.py [--work DIR]

Reads the out-of-fold probabilities that ``scripts/cv_nuclei.py`` keeps (one file per left-out
acquisition; nothing is trained here). For each acquisition in turn, the foreground threshold,
boundary threshold and minimum area are chosen by pooled object F1@0.5 on the other
acquisitions and scored on the one left out (nested selection). Printed: each fold's choice
and its held-out F1 beside the shipped thresholds', the pooled nested figures, and the
figures of a few fixed foreground thresholds. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from cv_nuclei import cv_images, scores  # noqa: E402

from napari_unet.networks.model import load_model  # noqa: E402
from napari_unet.objects.metrics import match_objects  # noqa: E402
from napari_unet.objects.pipeline import Settings, objects  # noqa: E402

GRID = list(itertools.product((0.4, 0.5, 0.6, 0.7), (0.3, 0.4, 0.5), (15.0, 25.0)))
FIXED = (0.5, 0.6, 0.7, 0.8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "napari-unet" / "cv-nuclei"),
                        help="the folder cv_nuclei.py kept its folds in")  # fmt: skip
    work = Path(parser.parse_args().work)
    data, groups, folds = cv_images()
    names = [n for n, _, _ in data]
    missing = [k for k in range(len(folds)) if not (work / f"fold{k}.npz").is_file()]
    if missing:
        raise SystemExit(f"{work} has no predictions for fold(s) {missing}: run scripts/cv_nuclei.py first")
    card = load_model("nuclei").card
    shipped = (card.threshold, card.postprocess["boundary_threshold"], card.postprocess["min_area"])
    grid = GRID if shipped in GRID else [*GRID, shipped]

    fold_of, probs, counts = {}, {}, {}  # counts[image, thresholds] = tp, fp, fn, n_pred, n_true
    for k, (_, test_idx) in enumerate(folds):
        saved = np.load(work / f"fold{k}.npz")
        for i in test_idx:
            fold_of[i], probs[i] = k, saved[names[i].replace("/", "__")]
            for t in grid:
                settings = Settings.for_model(card, threshold=t[0], boundary_threshold=t[1], min_area=t[2])
                m = match_objects(objects(probs[i], card, settings), data[i][2])
                counts[i, t] = (m["tp"], m["fp"], m["fn"], m["n_pred"], m["n_true"])

    def f1(images: list[int], t: tuple) -> float:
        tp, fp, fn = (sum(counts[i, t][j] for i in images) for j in range(3))
        return 2 * tp / max(1, 2 * tp + fp + fn)

    def count_errors(images: list[int], t: tuple) -> list[float]:
        return [abs(counts[i, t][3] - counts[i, t][4]) / max(1, counts[i, t][4]) for i in images]

    every = sorted(fold_of)
    print(f"{len(every)} images, {len(folds)} acquisitions; grid of {len(grid)} threshold sets; folds from {work}")
    print(f"{'left out':20} {'chosen on the others':22} {'F1 chosen':>9} {'F1 shipped':>10}")
    tp = fp = fn = 0
    nested_errors, wins = [], 0
    for k in range(len(folds)):
        inner = [i for i in every if fold_of[i] != k]
        outer = [i for i in every if fold_of[i] == k]
        best = max(grid, key=lambda t: f1(inner, t))
        tp, fp, fn = (a + sum(counts[i, best][j] for i in outer) for j, a in enumerate((tp, fp, fn)))
        nested_errors += count_errors(outer, best)
        wins += f1(outer, best) > f1(outer, shipped)
        print(f"{groups[outer[0]]:20} {best!s:22} {f1(outer, best):9.4f} {f1(outer, shipped):10.4f}")
    nested = {"f1_50": 2 * tp / max(1, 2 * tp + fp + fn), "median_count_error": float(np.median(nested_errors))}
    at_shipped = {"f1_50": f1(every, shipped), "median_count_error": float(np.median(count_errors(every, shipped)))}
    print(f"\nnested choice: pooled F1@0.5 {nested['f1_50']:.4f}, median count error {nested['median_count_error']:.1%}; "
          f"better than the shipped thresholds on {wins} of {len(folds)} left-out acquisitions")  # fmt: skip
    print(f"shipped {shipped}: pooled F1@0.5 {at_shipped['f1_50']:.4f}, "
          f"median count error {at_shipped['median_count_error']:.1%}")  # fmt: skip
    truths = [data[i][2] for i in every]
    fixed = {}
    print(
        f"\n{'foreground threshold':22} {'F1@0.5':>7} {'F1@0.75':>8} {'Dice':>6} {'count err':>10}  (boundary, area shipped)"
    )
    for thr in FIXED:
        s = scores([probs[i] for i in every], truths, card, thr, shipped[1], shipped[2])
        fixed[str(thr)] = {key: round(v, 4) for key, v in s.items()}
        print(f"{thr:<22} {s['f1_50']:7.4f} {s['f1_75']:8.4f} {s['dice']:6.4f} {s['median_count_error']:10.1%}")
    print(json.dumps({"nested": nested, "shipped": at_shipped, "nested_wins": int(wins), "folds": len(folds),
                      "fixed_foreground_thresholds": fixed}))  # fmt: skip


if __name__ == "__main__":
    main()
