"""Counting: how well merged ground truth is split again, and how fast counting runs.

    python benchmarks/bench_count.py

1. Splitting alone: every hand-drawn nucleus of an image is merged into one binary mask
   (so touching nuclei become one blob) and split again with ``split_mask``. Its ``h`` is
   chosen on mnfinder's training split, then reported on the validation split (F1@0.5 and
   count error against the hand-drawn instances). The test split is never read.
2. The shipped model's counts on the validation split (foreground + boundary channels).
3. Speed: a 4096x4096 mask with ~5,000 nuclei, and a 50-slice 1024x1024 stack: splitting,
   measuring (the full table) and contours, each timed; and the 4096x4096 labels with
   ~1,500 hole pixels punched in, counted as corrected labels (holes filled, filtered,
   measured, outlined), once step after step and once as the Count button runs it (the
   outlines traced on a second thread while the table is measured).
"""

from __future__ import annotations

import time

import numpy as np
from _common import emit_json, machine, table
from mnfinder import iter_split
from scipy import ndimage as ndi

from napari_unet.jobs import run_to_end
from napari_unet.networks.model import load_model
from napari_unet.objects.count import contours, count_iter, measure
from napari_unet.objects.instances import split_mask
from napari_unet.objects.metrics import count_error, match_objects
from napari_unet.objects.pipeline import segment


def pooled_f1(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    tp = fp = fn = 0
    errs = []
    for pred, truth in pairs:
        m = match_objects(pred, truth)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        errs.append(count_error(pred, truth)["rel_error"])
    return 2 * tp / max(1, 2 * tp + fp + fn), float(np.median(errs))


def synthetic_mask(shape: tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """n ellipse-ish nuclei (radius 9-16 px), many touching, as one binary mask."""
    mask = np.zeros(shape, bool)
    ys, xs = rng.uniform(20, shape[0] - 20, n), rng.uniform(20, shape[1] - 20, n)
    r = rng.uniform(9, 16, n)
    for y, x, rr in zip(ys, xs, r):
        y0, y1, x0, x1 = int(y - rr), int(y + rr) + 1, int(x - rr), int(x + rr) + 1
        yy, xx = np.mgrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= (yy - y) ** 2 / rr**2 + (xx - x) ** 2 / (0.8 * rr) ** 2 <= 1
    return mask


def main() -> None:
    rows = []
    train = [(img, lab) for _, img, lab in iter_split("training")]
    val = [(name, img, lab) for name, img, lab in iter_split("validation")]
    best_h, best_f1 = None, -1.0
    for h in (0.75, 1.0, 1.5, 2.0, 3.0):
        f1, err = pooled_f1([(split_mask(lab > 0, h=h), lab) for _, lab in train])
        rows.append(
            {
                "part": "split merged GT (training, choosing h)",
                "setting": f"h={h}",
                "F1@0.5": f1,
                "median count err %": 100 * err,
            }
        )
        if f1 > best_f1:
            best_h, best_f1 = h, f1
    split_val = [(split_mask(lab > 0, h=best_h), lab) for _, _, lab in val]
    f1_split, err_split = pooled_f1(split_val)
    rows.append(
        {
            "part": "split merged GT (validation)",
            "setting": f"h={best_h}",
            "F1@0.5": f1_split,
            "median count err %": 100 * err_split,
        }
    )
    for (name, _, lab), (pred, _) in zip(val, split_val):
        m = match_objects(pred, lab)
        rows.append(
            {
                "part": "  per image",
                "setting": name,
                "F1@0.5": m["f1"],
                "median count err %": 100 * count_error(pred, lab)["rel_error"],
            }
        )
    model = load_model("nuclei")
    model_pairs = [(segment(model, img, device="cpu", precision="fp32").labels, lab) for _, img, lab in val]
    f1_model, err_model = pooled_f1(model_pairs)
    rows.append(
        {
            "part": "shipped model (validation)",
            "setting": "fg + boundary",
            "F1@0.5": f1_model,
            "median count err %": 100 * err_model,
        }
    )
    for (name, _, lab), (pred, _) in zip(val, model_pairs):
        c = count_error(pred, lab)
        rows.append({"part": "  per image", "setting": f"{name}: {c['n_pred']} vs {c['n_true']}", "F1@0.5": match_objects(pred, lab)["f1"],
                     "median count err %": 100 * c["rel_error"]})  # fmt: skip

    rng = np.random.default_rng(0)
    speed = []
    big = synthetic_mask((4096, 4096), 5200, rng)
    stack = np.stack([synthetic_mask((1024, 1024), 320, rng) for _ in range(50)])
    intensity = rng.random(big.shape, dtype=np.float32)
    for name, mask, inten in (("4096x4096 image", big, intensity), ("50x1024x1024 stack", stack, None)):
        t = time.perf_counter()
        labels = split_mask(mask, h=best_h)
        t_split = time.perf_counter() - t
        t = time.perf_counter()
        tab = measure(labels, inten)
        t_measure = time.perf_counter() - t
        t = time.perf_counter()
        polys = contours(labels)
        t_contours = time.perf_counter() - t
        speed.append({"input": name, "objects": len(tab), "split s": t_split, "measure s": t_measure, "contours s": t_contours,
                      "total s": t_split + t_measure + t_contours, "polygons": len(polys)})  # fmt: skip
        if mask.ndim == 2:  # corrected labels counted as they are: holes filled, areas filtered, measured
            punched = labels.copy()
            centres = ndi.center_of_mass(labels > 0, labels, np.arange(1, int(labels.max()) + 1))
            for cy, cx in [centres[i] for i in rng.choice(len(centres), 170, replace=False)]:
                punched[int(cy) - 1 : int(cy) + 2, int(cx) - 1 : int(cx) + 2] = 0  # ~1,500 hole pixels
            seq, together = [], []
            for _ in range(3):  # alternated, best of three: one run of each is at the mercy of the page faults
                t = time.perf_counter()
                out, tab = run_to_end(count_iter(punched, kind="labels", intensity=inten))
                t_filter_measure = time.perf_counter() - t
                t = time.perf_counter()
                polys = contours(out)
                seq.append((t_filter_measure, time.perf_counter() - t))
                t = time.perf_counter()  # as the Count button runs it: the outlines traced while the table is measured
                _, tab2, polys2 = run_to_end(count_iter(punched, kind="labels", intensity=inten, with_contours=True))
                together.append(time.perf_counter() - t)
            t_filter_measure, t_contours = min(seq, key=sum)
            speed.append({"input": f"{name}, corrected labels with holes", "objects": len(tab), "split s": 0.0,
                          "measure s": t_filter_measure, "contours s": t_contours,
                          "total s": t_filter_measure + t_contours, "polygons": len(polys)})  # fmt: skip
            speed.append({"input": f"{name}, the same, with_contours=True (the Count button)", "objects": len(tab2),
                          "split s": 0.0, "measure s": float("nan"), "contours s": float("nan"), "total s": min(together),
                          "polygons": len(polys2)})  # fmt: skip

    print(f"napari-unet counting benchmark on {machine()}")
    print(table(rows, ["part", "setting", "F1@0.5", "median count err %"]))
    print()
    print(
        table(
            speed, ["input", "objects", "split s", "measure s", "contours s", "total s", "polygons"], floatfmt="{:.2f}"
        )
    )
    emit_json({"benchmark": "count", "split_h": best_h, "split_val_f1": round(f1_split, 4), "split_val_median_count_error": round(err_split, 4),
               "model_val_f1": round(f1_model, 4), "model_val_median_count_error": round(err_model, 4),
               "big_objects": speed[0]["objects"], "big_total_s": round(speed[0]["total s"], 2), "big_labels_count_s": round(speed[2]["total s"], 2),
               "big_labels_count_one_after_other_s": round(speed[1]["total s"], 2), "stack_total_s": round(speed[3]["total s"], 2)})  # fmt: skip


if __name__ == "__main__":
    main()
