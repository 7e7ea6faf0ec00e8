"""Filling between drawn slices: how close shape-based interpolation comes to the true shape
on the slices a person did not draw, against plain signed-distance interpolation (no
alignment of the shapes' centres) and against copying the nearest drawn slice.

    python benchmarks/bench_interpolate.py [--data pyradiomics-3.0.1/data] [--step 3]

Cases: the lung CT sample's lesion (napari_unet/sample_data), seeded synthetic ellipsoids
(one, two that merge, a tilted one), and with ``--data`` the lesions of the pyradiomics 3.0.1
sdist (brain1, brain2, breast1, lung1; lung2 is reserved and never read). A person draws every
``--step``-th slice across the lesion, from its first slice to its last (both drawn); Dice is
measured on the slices between, where the filling happens. Speed: seconds per filled slice.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import emit_json, machine, table

from napari_unet.io import read_image
from napari_unet.objects.interpolate import fill_between


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


def nearest_copy(labels: np.ndarray, checked: list[int]) -> np.ndarray:
    out = labels.copy()
    for z in range(checked[0], checked[-1] + 1):
        if z not in checked:
            out[z] = labels[min(checked, key=lambda c: (abs(c - z), c))]
    return out


def ellipsoids(rng: np.random.Generator) -> dict[str, np.ndarray]:
    z, y, x = np.indices((30, 96, 96))
    one = (((z - 15) / 12) ** 2 + ((y - 48) / 30) ** 2 + ((x - 44) / 22) ** 2 < 1).astype(np.int32)
    two = ((((z - 15) / 12) ** 2 + ((y - 30 - 0.8 * z) / 14) ** 2 + ((x - 30) / 14) ** 2 < 1)
           | (((z - 15) / 12) ** 2 + ((y - 66 + 0.8 * z) / 14) ** 2 + ((x - 60) / 14) ** 2 < 1)).astype(np.int32)  # fmt: skip
    tilt = (((z - 15) / 10) ** 2 + ((y - 30 - 1.5 * z) / 12) ** 2 + ((x - 48) / 18) ** 2 < 1).astype(np.int32)
    return {"synthetic ellipsoid": one, "synthetic pair merging": two, "synthetic tilted": tilt}


def lesion_probability(image: np.ndarray, drawn: np.ndarray, checked: list[int], steps: int, norm: dict) -> np.ndarray:
    """A first lesion model trained on the drawn slices for ``steps`` steps, and its lesion
    probability on the whole stack: the model a person has when they fill between slices."""
    import torch

    from napari_unet.engine.predict import predict
    from napari_unet.networks.recipes import FROM_SCRATCH, new_model_card
    from napari_unet.training.train import TrainConfig, Trainer, TrainingItem

    torch.manual_seed(0)
    card = new_model_card(classes=2, class_names=["lesion"], normalisation=norm, depth=4, name="lesion")
    crop = max(32, min(128, *image.shape[1:]) // 16 * 16)
    config = TrainConfig(
        epochs=max(1, steps // 10), steps_per_epoch=10, crop=crop, lr=FROM_SCRATCH["lr"], patience=10_000
    )
    trainer = Trainer([TrainingItem(image, drawn, checked, "lesion", "ZYX")], card=card, config=config)
    for _ in trainer.steps():
        pass
    return predict(trainer.result().model, image, axes="ZYX")[1]


def case(name: str, truth: np.ndarray, step: int, image: np.ndarray | None = None, steps: int = 0,
         norm: dict | None = None) -> dict:  # fmt: skip
    slices = [z for z in range(len(truth)) if truth[z].any()]
    first, last = slices[0], slices[-1]
    checked = sorted({*range(first, last + 1, step), last})
    drawn = np.zeros_like(truth)
    drawn[checked] = truth[checked]
    between = [z for z in range(first, last + 1) if z not in checked]
    t = time.perf_counter()
    filled, _ = fill_between(drawn, checked)
    seconds = time.perf_counter() - t
    plain, _ = fill_between(drawn, checked, align=False)
    copied = nearest_copy(drawn, checked)
    refined = None
    if image is not None and steps and between:
        prob = lesion_probability(image, drawn, checked, steps, norm or {"kind": "percentile", "low": 1, "high": 99.8})
        refined, _ = fill_between(drawn, checked, probability=prob)
    return {
        "case": name,
        "lesion slices": len(slices),
        "drawn": len(checked),
        "filled": len(between),
        "dice interpolated": dice(filled[between] > 0, truth[between] > 0) if between else float("nan"),
        "dice plain SDT": dice(plain[between] > 0, truth[between] > 0) if between else float("nan"),
        "dice refined": dice(refined[between] > 0, truth[between] > 0) if refined is not None else float("nan"),
        "dice nearest copy": dice(copied[between] > 0, truth[between] > 0) if between else float("nan"),
        "drawn unchanged": bool(np.array_equal(filled[checked], drawn[checked])),
        "s per slice": seconds / max(1, len(between)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=None, help="pyradiomics-3.0.1/data (its lesions; lung2 is never read)"
    )
    parser.add_argument("--step", type=int, default=3, help="draw every STEP-th slice")
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS",
                        help="also refine with a first model trained on the drawn slices for STEPS steps")  # fmt: skip
    args = parser.parse_args()
    sample = Path(__file__).resolve().parents[1] / "napari_unet" / "sample_data" / "ct_lung1_labels.tif"
    lung = {"kind": "window", "preset": "lung"}
    cases = {"CT sample lesion (lung1)": ((np.asarray(read_image(sample).data) > 0).astype(np.int32),
                                          np.asarray(read_image(str(sample).replace("_labels", "")).data), lung)}  # fmt: skip
    rng = np.random.default_rng(0)
    for name, truth in ellipsoids(rng).items():  # a blurred, noisy image of each shape, for the refinement
        from scipy import ndimage as ndi

        image = ndi.gaussian_filter(truth.astype(np.float32), 1.5) + rng.normal(0, 0.25, truth.shape).astype(np.float32)
        cases[name] = (truth, image, None)
    if args.data is not None:
        for name in ("brain1", "brain2", "breast1", "lung1"):  # (lung2: reserved for independent evaluation)
            path = args.data / f"{name}_label.nrrd"
            if path.exists():
                truth = (np.asarray(read_image(path).data) > 0).astype(np.int32)
                image = np.asarray(read_image(args.data / f"{name}_image.nrrd").data)
                cases[f"pyradiomics {name}"] = (truth, image, lung if name.startswith("lung") else None)
    rows = [case(name, truth, args.step, image, args.refine, norm) for name, (truth, image, norm) in cases.items()]
    print(f"filling between every {args.step}th drawn slice, on {machine()}")
    print(table(rows))
    scored = [r for r in rows if r["filled"]]
    pooled = float(np.mean([r["dice interpolated"] for r in scored]))
    pooled_copy = float(np.mean([r["dice nearest copy"] for r in scored]))
    pooled_plain = float(np.mean([r["dice plain SDT"] for r in scored]))
    refined = [r["dice refined"] for r in scored if not np.isnan(r["dice refined"])]
    pooled_refined = float(np.mean(refined)) if refined else float("nan")
    print(
        f"mean Dice on the filled slices: interpolated {pooled:.3f}, plain signed distance {pooled_plain:.3f}, "
        f"nearest drawn slice copied {pooled_copy:.3f}"
        + (f", refined by a first model {pooled_refined:.3f} ({len(refined)} cases)" if refined else "")
    )
    emit_json({"benchmark": "interpolate", "step": args.step, "mean_dice": round(pooled, 4),
               "mean_dice_nearest_copy": round(pooled_copy, 4), "mean_dice_plain_sdt": round(pooled_plain, 4),
               "cases": len(scored), **({"mean_dice_refined": round(pooled_refined, 4)} if refined else {}),
               "drawn_unchanged": all(r["drawn unchanged"] for r in rows),
               **{r["case"].replace(" ", "_").replace("(", "").replace(")", ""): round(r["dice interpolated"], 4)
                  for r in scored}})  # fmt: skip


if __name__ == "__main__":
    main()
