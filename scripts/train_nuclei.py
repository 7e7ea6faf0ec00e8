"""Train the shipped nuclei model on mnfinder's training split; choose on its validation split.

    python scripts/train_nuclei.py [--minutes 25] [--device auto] [--instance boundary|distance]
                                   [--thresholds FG,SEED,AREA[,SHARE]]

The test split is never read. Writes napari_unet/models/nuclei.{safetensors,json}.
Thresholds (foreground, boundary or seed, minimum area) are chosen on the validation split
after training, unless ``--thresholds`` gives those the grouped cross-validation chose
(scripts/cv_nuclei.py); the micronucleus threshold and area are chosen on the validation split.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from cv_nuclei import choose_micronuclei, instance_card, micronuclei_card  # noqa: E402
from mnfinder import VERSION, iter_split  # noqa: E402

from napari_unet.networks.model import ModelCard, save_model  # noqa: E402
from napari_unet.objects.metrics import match_objects, pixel_scores  # noqa: E402
from napari_unet.objects.pipeline import Settings, objects, segment  # noqa: E402
from napari_unet.objects.settings import seed_setting  # noqa: E402
from napari_unet.training.train import TrainConfig, Trainer, TrainingItem  # noqa: E402

AUGMENTATION = [
    "horizontal/vertical flips",
    "90-degree rotations",
    "rotation +-15 deg, zoom 0.8-1.25, shear +-0.1",
    "elastic deformation (smooth random field)",
    "intensity scale 0.7-1.3 and offset +-0.15",
    "gamma 0.67-1.5",
    "Gaussian blur sigma 0-1.5",
    "Gaussian noise up to 0.08",
]


def choose_thresholds(model, val, fixed: tuple[float, ...] | None = None) -> tuple[float, float, float, float, dict]:
    """Grid-search the foreground and boundary (or seed) thresholds and the minimum object
    area for pooled object F1@0.5 on the validation images; with ``fixed`` (FG, SEED, AREA
    and optionally the smallest share of the median object kept), only score those."""
    rel = float(fixed[3]) if fixed and len(fixed) > 3 else 0.0
    fixed = tuple(fixed[:3]) if fixed else None
    probs = [segment(model, img, device="cpu", precision="fp32", objects=False).probabilities for _, img, _ in val]
    seed = seed_setting(model.card)
    best = (-1.0, 0.5, 0.5, 10.0)
    grid = [fixed] if fixed else [(t, b, a) for t in (0.3, 0.4, 0.5, 0.6) for b in (0.3, 0.4, 0.5, 0.6)
                                  for a in (10.0, 15.0, 20.0, 25.0, 30.0)]  # fmt: skip
    for thr, bthr, min_area in grid:
        tp = fp = fn = 0
        for prob, (_, _, truth) in zip(probs, val):
            settings = Settings.for_model(model.card, threshold=thr, min_area=min_area, min_relative_area=rel,
                                          **{seed: bthr})  # fmt: skip
            pred = objects(prob, model.card, settings)
            m = match_objects(pred, truth)
            tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        f1 = 2 * tp / max(1, 2 * tp + fp + fn)
        if f1 > best[0] + 1e-9:
            best = (f1, thr, bthr, min_area)
    f1, thr, bthr, min_area = best
    per_image = []
    dice = []
    for prob, (name, _, truth) in zip(probs, val):
        settings = Settings.for_model(model.card, threshold=thr, min_area=min_area, min_relative_area=rel,
                                      **{seed: bthr})  # fmt: skip
        pred = objects(prob, model.card, settings)
        m = match_objects(pred, truth)
        d = pixel_scores(prob[0] > thr, truth > 0)["dice"]
        dice.append(d)
        per_image.append(
            {
                "image": name,
                "f1_50": round(m["f1"], 4),
                "dice": round(d, 4),
                "n_pred": m["n_pred"],
                "n_true": m["n_true"],
            }
        )
    errors = [abs(p["n_pred"] - p["n_true"]) / p["n_true"] for p in per_image]
    scores = {
        "val_f1_50": round(f1, 4),
        "val_dice": round(float(np.mean(dice)), 4),
        "val_median_count_error": round(float(np.median(errors)), 4),
    }
    return thr, bthr, min_area, rel, {**scores, "per_image": per_image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=25)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default=str(ROOT / "napari_unet" / "models" / "nuclei"))
    parser.add_argument("--micronuclei", action=argparse.BooleanOptionalAction, default=True,
                        help="micronuclei as a third output, from mnfinder's mn_masks (default: yes)")  # fmt: skip
    parser.add_argument("--instance", choices=("boundary", "distance"), default="boundary",
                        help="the output that parts touching nuclei (see scripts/cv_nuclei.py)")  # fmt: skip
    parser.add_argument("--thresholds", default=None,
                        help="FG,SEED,AREA[,SHARE] chosen by cross-validation, instead of choosing on the validation "
                        "split (SHARE: the smallest share of the median object kept)")  # fmt: skip
    args = parser.parse_args()
    fixed = tuple(float(v) for v in args.thresholds.split(",")) if args.thresholds else None

    train = [TrainingItem(img, lab, name=name, micronuclei=mn)
             for name, img, lab, mn in iter_split("training", micronuclei=True)]  # fmt: skip
    val_mn = list(iter_split("validation", micronuclei=True))
    val_raw = [(name, img, lab) for name, img, lab, _ in val_mn]
    val = [TrainingItem(img, lab, name=name, micronuclei=mn) for name, img, lab, mn in val_mn]
    if not args.micronuclei:
        for item in (*train, *val):
            item.micronuclei = None
    print(f"training images {len(train)}, validation images {len(val)}", flush=True)

    card = ModelCard(
        name="nuclei",
        architecture="unet",
        arch_args={"features": [16, 32, 64, 128, 256], "upsample": "transpose"},
        in_channels=1,
        classes=("foreground", "boundary"),
        activation="sigmoid",
        outputs={
            "foreground": "probability that a pixel belongs to a nucleus",
            "boundary": "probability that a pixel lies on the inner edge of a nucleus; "
            "foreground minus boundary gives one seed per nucleus for the watershed",
        },
        normalisation={"kind": "percentile", "low": 1.0, "high": 99.8},
        tile=256,
        overlap=0.25,
        description=f"Fluorescence nuclei (DAPI/H2B), 2D, foreground + {args.instance} for splitting touching nuclei"
        + (", and micronuclei counted per nucleus." if args.micronuclei else "."),
        licence="weights: BSD-3-Clause (napari-unet); training data: mnfinder 1.2.3, MIT",
    )
    card = micronuclei_card(card) if args.micronuclei else card
    card = instance_card(card, args.instance)
    config = TrainConfig(
        epochs=args.epochs, steps_per_epoch=50, max_seconds=args.minutes * 60, batch_size=8, crop=256,
        lr=2e-3, warmup_steps=50, patience=12, device=args.device, seed=0,
    )  # fmt: skip
    trainer = Trainer(train, card=card, config=config, val_items=val, name="nuclei")
    ckpt = Path(args.out).with_suffix(".best.safetensors")

    def on_best(state, record):
        from safetensors.torch import save_file

        save_file(state, str(ckpt))

    trainer.on_best = on_best
    t0 = time.time()
    gen = trainer.steps()
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if event.info.get("kind") == "epoch":
            i = event.info
            print(f"epoch {i['epoch']:3d} step {i['step']:5d} loss {i['loss']:.4f} val Dice {i['val_dice']:.4f} "
                  f"F1 {i['val_f1']:.4f} best {i['best_epoch']} [{time.time() - t0:.0f} s]", flush=True)  # fmt: skip
    model = result.model
    thr, bthr, min_area, rel, scores = choose_thresholds(model, val_raw, fixed)
    seed = seed_setting(result.card)
    postprocess = {seed: bthr, "min_area": min_area} | ({"min_relative_area": rel} if rel else {})
    if args.micronuclei:  # chosen on the validation split too, with the nuclei thresholds just chosen
        probs = [
            segment(model, img, device="cpu", precision="fp32", objects=False).probabilities for _, img, _ in val_raw
        ]
        at = Settings.for_model(result.card, threshold=thr, min_area=min_area, min_relative_area=rel, **{seed: bthr})
        nuclei = [objects(p, result.card, at) for p in probs]
        mn_thr, mn_area, mn_scores = choose_micronuclei(probs, nuclei, [mn for *_, mn in val_mn], result.card)
        postprocess |= {"micronucleus_threshold": mn_thr, "micronucleus_min_area": mn_area}
        scores |= {k: round(v, 4) for k, v in mn_scores.items()}
    card = result.card.replace(
        threshold=thr,
        postprocess=postprocess,
        training={
            **result.card.training,
            "data": f"mnfinder {VERSION} (MIT), nucleus_masks{' and mn_masks' if args.micronuclei else ''}, "
            f"training split: {len(train)} images",
            "validation": f"mnfinder {VERSION} validation split: {len(val)} images (epochs and thresholds chosen on it)",
            "test_split": "never read (reserved for independent evaluation)",
            "augmentation": AUGMENTATION,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "images": [i["name"] for i in result.card.training["images"]],
        },
        metrics={"validation_" + k.removeprefix("val_"): v for k, v in scores.items() if k != "per_image"}
        | {
            "validation_per_image": scores["per_image"],
            "thresholds_chosen_on": "grouped cross-validation (scripts/cv_nuclei.py); the micronucleus threshold and "
            "area on the validation split"
            if fixed
            else "validation split",
        },
    )
    model.card = card
    path = save_model(model, args.out, card)
    ckpt.unlink(missing_ok=True)
    print(
        json.dumps(
            {
                "model": str(path),
                "threshold": thr,
                **postprocess,
                **{k: v for k, v in scores.items() if k != "per_image"},
                "seconds": round(time.time() - t0),
            }
        )
    )


if __name__ == "__main__":
    main()
