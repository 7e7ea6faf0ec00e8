"""Any image, any classes: three first models trained from scratch from the command line.

    python benchmarks/bench_anyimage.py [--seconds 180] [--ct-data DIR]

Each task runs the CLI a user would (``train --scratch``, ``predict``, ``evaluate --json``)
with ``--seconds`` of training on this machine, and scores what it predicts on data the
model never saw:

- lateral: chest-X-ray-like phantoms whose left and right lungs are two classes (12 to
  train, 8 unseen), whole-image mode (``--input-size 128``), ``--no-flips``;
- H&E: RGB H&E-like tiles of nuclei, instance model (8 to train, 6 unseen);
- CT/MR lesions from the pyradiomics 3.0.1 sdist (``--ct-data``: its ``data/`` folder):
  brain1 (MR) trained on 3 lesion + 3 lesion-free checked slices, lung1 (CT, int16 HU) on
  2 lesion + 4 lesion-free (its lesion spans only 3 slices), each scored by the Dice pooled
  over every other slice of the volume. lung2 is reserved for independent evaluation and
  is never read here. A lesion model from 6 slices varies a lot with the random seed
  (crops, augmentation, initial weights): ``--seeds N`` trains N of each and reports
  every run, their mean and their range. Each lesion model predicts twice: as it is, and
  with ``predict --follow`` (the drawn slices kept, and on the others only the regions
  joined across slices to the drawn lesion): "followed".
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit_json, machine, table

from napari_unet._synthetic import he_tile, lateral_phantom
from napari_unet.cli import main
from napari_unet.io import read_image, write_tiff


def cli(*args: str) -> None:
    code = main([str(a) for a in args])
    if code != 0:
        raise SystemExit(f"napari-unet {args[0]} failed ({code})")


def synthetic(folder: Path, make, train_seeds, test_seeds, suffix: str = ".tif") -> dict[str, Path]:
    import imageio.v3 as iio

    dirs = {k: folder / k for k in ("train", "train_labels", "test", "test_labels")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for split, seeds in (("train", train_seeds), ("test", test_seeds)):
        for s in seeds:
            image, labels = make(s)
            if suffix == ".png":
                iio.imwrite(dirs[split] / f"x{s}.png", image)
            else:
                write_tiff(dirs[split] / f"x{s}.tif", image)
            write_tiff(dirs[f"{split}_labels"] / f"x{s}_labels.tif", labels, labels=True)
    return dirs


def run_task(
    name: str, dirs: dict[str, Path], train_args: list[str], seconds: float, work: Path, instances: bool = False
) -> dict:
    t0 = time.perf_counter()
    cli("train", "--scratch", "--images", *sorted(dirs["train"].iterdir()), "--labels",
        *sorted(dirs["train_labels"].iterdir()), "--out", name, "--max-seconds", seconds, *train_args)  # fmt: skip
    trained = time.perf_counter() - t0
    pred = work / f"{name}_pred"
    cli("predict", dirs["test"], "--model", name, "--out", pred, "--overlay", "--truth", dirs["test_labels"])
    if instances:  # objects (touching nuclei apart) come from count; predict's mask is the foreground
        pred = work / f"{name}_objects"
        cli("count", dirs["test"], "--model", name, "--out", pred)
        for extra in pred.glob("*.csv"):
            extra.unlink()
    report = work / f"{name}.json"
    kind = "instance" if instances else "semantic"
    main(["evaluate", "--pred", str(pred), "--truth", str(dirs["test_labels"]), "--kind", kind, "--json", str(report)])
    return {"seconds": trained, **json.loads(report.read_text())}


def lesion_task(case: str, data: Path, checked: list[int], seconds: float, work: Path, extra: list[str]) -> dict:
    image, labels = read_image(data / f"{case}_image.nrrd"), read_image(data / f"{case}_label.nrrd")
    work.mkdir(parents=True, exist_ok=True)
    img_path, lab_path = work / f"{case}.tif", work / f"{case}_labels.tif"
    write_tiff(img_path, image.data, axes="ZYX", scale=image.scale, units=image.units)
    truth = (np.asarray(labels.data) > 0).astype(np.uint8)
    write_tiff(lab_path, truth, axes="ZYX", labels=True)
    t0 = time.perf_counter()
    cli("train", "--scratch", "--classes", "2", "--class-names", "lesion", "--images", img_path, "--labels",
        lab_path, "--annotated", ",".join(map(str, checked)), "--out", f"lesion-{case}", "--max-seconds", seconds,
        *extra)  # fmt: skip
    trained = time.perf_counter() - t0
    pred = work / f"{case}_pred"
    cli("predict", img_path, "--model", f"lesion-{case}", "--out", pred)
    followed = work / f"{case}_followed"  # only the regions joined to the drawn lesion, as --follow keeps them
    drawn = np.where(np.isin(np.arange(len(truth)), checked)[:, None, None], truth, 0).astype(np.uint8)
    write_tiff(work / f"{case}_drawn.tif", drawn, axes="ZYX", labels=True)
    cli("predict", img_path, "--model", f"lesion-{case}", "--out", followed, "--follow", work / f"{case}_drawn.tif",
        "--annotated", ",".join(map(str, checked)))  # fmt: skip
    others = [z for z in range(len(truth)) if z not in checked]
    t = truth[others] > 0
    lesion_slices = [z for z in others if truth[z].any()]

    def scored(folder: Path) -> tuple[float, np.ndarray]:
        p = (np.asarray(read_image(folder / f"{case}_mask.tif").data) > 0)[others]
        return 2 * float((p & t).sum()) / max(1.0, float(p.sum() + t.sum())), p

    dice, p = scored(pred)
    dice_followed, _ = scored(followed)
    return {"seconds": trained, "dice": dice, "dice_followed": dice_followed, "predicted_px": int(p.sum()),
            "true_px": int(t.sum()), "slices_scored": len(others), "lesion_slices_scored": len(lesion_slices),
            "slices_with_false_positives": int(sum(bool((p[i] & ~t[i]).any()) for i in range(len(others))))}  # fmt: skip


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--ct-data", type=Path, default=None, help="pyradiomics-3.0.1/data (skipped when absent)")
    parser.add_argument("--only", choices=("lateral", "he", "lesion"), default=None)
    parser.add_argument("--context", type=int, default=0, help="2.5D context of the lesion models (0 = 2D)")
    parser.add_argument("--seeds", type=int, default=1, help="lesion models trained per case, seeds 0..N-1")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load: {os.getloadavg()[0]:.2f} (1 min)")
    work = Path(tempfile.mkdtemp(prefix="bench-anyimage-"))
    os.environ["NAPARI_UNET_MODELS"] = str(work / "models")
    rows, figures = [], {}
    if args.only in (None, "lateral"):
        dirs = synthetic(work / "lateral", lambda s: lateral_phantom(s, 320), range(12), range(100, 108))
        r = run_task("lateral", dirs, ["--classes", "3", "--class-names", "left_lung,right_lung", "--no-flips",
                                       "--input-size", "128"], args.seconds, work)  # fmt: skip
        c = r["mean"]["classes"]
        rows.append({"task": "lateral phantoms, left/right lung", "train s": r["seconds"], "unseen": len(r["images"]),
                     "Dice": f"left {c['1']['dice']:.3f}, right {c['2']['dice']:.3f}", "object F1": "",
                     "target": "each class >= 0.90"})  # fmt: skip
        figures.update(lateral_left_dice=c["1"]["dice"], lateral_right_dice=c["2"]["dice"])
    if args.only in (None, "he"):
        dirs = synthetic(work / "he", lambda s: he_tile(s, 256), range(8), range(100, 106), ".png")
        r = run_task("he", dirs, ["--classes", "1"], args.seconds, work, instances=True)
        m = r["mean"]
        rows.append({"task": "RGB H&E-like nuclei (instances)", "train s": r["seconds"], "unseen": len(r["images"]),
                     "Dice": f"{m['dice']:.3f}", "object F1": f"{m['f1_50']:.3f}",
                     "target": "Dice >= 0.90, F1 >= 0.80"})  # fmt: skip
        figures.update(he_dice=m["dice"], he_f1=m["f1_50"])
    if args.only in (None, "lesion") and args.ct_data and (args.ct_data / "lung1_image.nrrd").exists():
        for case, checked, extra in (
            ("brain1", [11, 14, 17, 4, 8, 21], ["--normalize", "percentile"]),
            ("lung1", [32, 34, 20, 26, 40, 46], ["--normalize", "window:soft_tissue"]),
        ):
            runs = []
            for seed in range(args.seeds):
                r = lesion_task(case, args.ct_data, checked, args.seconds, work / f"seed{seed}",
                                [*extra, "--context", str(args.context), "--seed", str(seed)])  # fmt: skip
                runs.append(r)
                rows.append({"task": f"{case} lesion, 6 checked slices, seed {seed}", "train s": r["seconds"],
                             "unseen": f"{r['slices_scored']} slices ({r['lesion_slices_scored']} with lesion)",
                             "Dice": f"{r['dice']:.3f}; followed {r['dice_followed']:.3f}", "object F1": "",
                             "target": ">= 0.60 on all other slices"})  # fmt: skip
            dices = [r["dice"] for r in runs]
            followed = [r["dice_followed"] for r in runs]
            if len(runs) > 1:
                rows.append({"task": f"{case}: mean of {len(runs)} seeds", "train s": "", "unseen": "",
                             "Dice": f"{np.mean(dices):.3f} ({min(dices):.3f}-{max(dices):.3f}); followed "
                             f"{np.mean(followed):.3f} ({min(followed):.3f}-{max(followed):.3f})", "object F1": "",
                             "target": ">= 0.60"})  # fmt: skip
            figures[f"{case}_lesion_dice"] = float(np.mean(dices))
            figures[f"{case}_lesion_dice_runs"] = [round(d, 4) for d in dices]
            figures[f"{case}_lesion_dice_followed"] = float(np.mean(followed))
            figures[f"{case}_lesion_dice_followed_runs"] = [round(d, 4) for d in followed]
            figures[f"{case}_false_positive_slices"] = [r["slices_with_false_positives"] for r in runs]
    print(table(rows, ["task", "train s", "unseen", "Dice", "object F1", "target"], floatfmt="{:.0f}"))
    print(f"(work folder: {work})")
    emit_json(figures)


if __name__ == "__main__":
    main_()
