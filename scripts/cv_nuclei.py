"""Grouped cross-validation of the nuclei recipe on mnfinder's training + validation images:
leave one acquisition (date and cell line) out at a time, train on the others, predict the
one left out. The test split is never read.

    python scripts/cv_nuclei.py [--minutes-per-fold 6] [--augment medium|microscopy] [--work DIR]
                                [--micronuclei] [--instance boundary|distance] [--folds K,...]

Each fold's out-of-fold probabilities are saved in the work folder as it finishes, so a
stopped run resumes where it was (run the same command again). At the end the thresholds
are chosen on the pooled out-of-fold predictions, and the figures are printed for the
shipped thresholds and for the chosen ones: pooled object F1@0.5 and @0.75, pixel Dice, and
the median count error per image, each image predicted by a model that never saw its
acquisition. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from mnfinder import VERSION, iter_split  # noqa: E402

from napari_unet.networks.model import load_model, save_model  # noqa: E402
from napari_unet.objects.metrics import match_objects, pixel_scores  # noqa: E402
from napari_unet.objects.pipeline import Settings, objects, segment  # noqa: E402
from napari_unet.objects.settings import seed_setting  # noqa: E402
from napari_unet.training.data import grouped_folds  # noqa: E402
from napari_unet.training.train import TrainConfig, Trainer, TrainingItem  # noqa: E402

THRESHOLDS = (0.4, 0.5, 0.6)
BOUNDARY_THRESHOLDS = (0.3, 0.4, 0.5)
SEED_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
MIN_AREAS = (15.0, 25.0)
RELATIVE_AREAS = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35)  # share of the image's median object (0: off)

DISTANCE_OUTPUT = {
    "distance": "each nucleus's distance to its own edge over its largest (1 at its centre, 0 at its edge); "
    "the pixels above the seed threshold seed one nucleus each, and a watershed down it parts touching nuclei"
}


def instance_card(card, kind: str):
    """The card with ``kind`` (``boundary`` or ``distance``) as the output that parts touching
    nuclei."""
    if kind == "boundary" or "distance" in card.classes:
        return card
    classes = tuple("distance" if c == "boundary" else c for c in card.classes)
    outputs = {k: v for k, v in card.outputs.items() if k != "boundary"} | DISTANCE_OUTPUT
    post = {k: v for k, v in card.postprocess.items() if k != "boundary_threshold"} | {"seed_threshold": 0.5}
    return card.replace(classes=classes, outputs=outputs, postprocess=post)


def scores(
    probs: list[np.ndarray], truths: list[np.ndarray], card, thr: float, bthr: float, min_area: float, rel: float = 0.0
) -> dict:
    """Pooled object F1 at IoU 0.5 and 0.75, mean pixel Dice, median count error; ``bthr`` is
    the boundary or the seed threshold, as the card's outputs ask; ``rel`` the smallest
    object kept, as a share of the image's median one."""
    tp = fp = fn = tp75 = fp75 = fn75 = 0
    dice, errors, per_image_f1 = [], [], []
    settings = Settings.for_model(card, threshold=thr, min_area=min_area, min_relative_area=rel,
                                  **{seed_setting(card): bthr})  # fmt: skip
    for prob, truth in zip(probs, truths):
        pred = objects(prob, card, settings)
        m, m75 = match_objects(pred, truth), match_objects(pred, truth, threshold=0.75)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        tp75, fp75, fn75 = tp75 + m75["tp"], fp75 + m75["fp"], fn75 + m75["fn"]
        per_image_f1.append(m["f1"])
        dice.append(pixel_scores(prob[0] > thr, truth > 0)["dice"])
        errors.append(abs(m["n_pred"] - m["n_true"]) / max(1, m["n_true"]))
    return {
        "f1_50": 2 * tp / max(1, 2 * tp + fp + fn),
        "f1_75": 2 * tp75 / max(1, 2 * tp75 + fp75 + fn75),
        "f1_50_mean_per_image": float(np.mean(per_image_f1)),
        "dice": float(np.mean(dice)),
        "median_count_error": float(np.median(errors)),
    }


def cv_images() -> tuple[list[tuple[str, np.ndarray, np.ndarray]], list[str], list[tuple[list[int], list[int]]]]:
    """mnfinder's training + validation images as ``(split/acquisition/image, image, labels)``,
    the acquisition of each, and the grouped folds (one acquisition left out each). The
    test split is never read."""
    data = [(f"{split}/{n}", img, lab) for split in ("training", "validation") for n, img, lab in iter_split(split)]
    names = [n for n, _, _ in data]  # split/acquisition/image: mnfinder has a U2OS "1" in both splits
    assert len(set(names)) == len(names), "two images share a name: their predictions would overwrite each other"
    groups = [n.split("/")[1] for n in names]
    return data, groups, grouped_folds(groups)


def cv_micronuclei(names: list[str]) -> list[np.ndarray]:
    """mnfinder's micronucleus labels (``mn_masks``) of the images :func:`cv_images` lists,
    in its order."""
    found = {
        f"{split}/{n}": mn
        for split in ("training", "validation")
        for n, _, _, mn in iter_split(split, micronuclei=True)
    }
    return [found[n] for n in names]


MICRONUCLEI_OUTPUT = {
    "micronuclei": "probability that a pixel belongs to a micronucleus (a small body of DNA outside the nucleus); "
    "they are neither nuclei nor background, and are counted per nucleus"
}


MN_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MN_MIN_AREAS = (2.0, 4.0, 6.0, 8.0)


def micronuclei_scores(probs, nuclei, truths, card, thr: float, min_area: float) -> dict:
    """Micronuclei found by the ``micronuclei`` output outside the predicted ``nuclei``
    against mnfinder's: pooled object F1 at IoU 0.5 and 0.3 (a micronucleus is a few to 200
    pixels, where one pixel of outline moves the IoU a lot), and the median count error."""
    from napari_unet.objects.micronuclei import micronuclei_labels

    tp = fp = fn = tp3 = fp3 = fn3 = 0
    errors = []
    for prob, nu, truth in zip(probs, nuclei, truths):
        pred = micronuclei_labels(prob, card, nu, threshold=thr, min_area=min_area)
        m, m3 = match_objects(pred, truth), match_objects(pred, truth, threshold=0.3)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        tp3, fp3, fn3 = tp3 + m3["tp"], fp3 + m3["fp"], fn3 + m3["fn"]
        errors.append(abs(m["n_pred"] - m["n_true"]) / max(1, m["n_true"]))
    return {
        "mn_f1_50": 2 * tp / max(1, 2 * tp + fp + fn),
        "mn_f1_30": 2 * tp3 / max(1, 2 * tp3 + fp3 + fn3),
        "mn_median_count_error": float(np.median(errors)),
    }


def choose_micronuclei(probs, nuclei, truths, card) -> tuple[float, float, dict]:
    """The micronucleus threshold and minimum area with the best pooled F1 at IoU 0.3."""
    from napari_unet.objects.micronuclei import micronuclei_labels

    def f1_30(thr: float, area: float) -> float:
        tp = fp = fn = 0
        for prob, nu, truth in zip(probs, nuclei, truths):
            m = match_objects(micronuclei_labels(prob, card, nu, threshold=thr, min_area=area), truth, threshold=0.3)
            tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        return 2 * tp / max(1, 2 * tp + fp + fn)

    best = max(((t, a) for t in MN_THRESHOLDS for a in MN_MIN_AREAS), key=lambda ta: f1_30(*ta))
    return best[0], best[1], micronuclei_scores(probs, nuclei, truths, card, *best)


def micronuclei_card(card):
    """The nuclei card with micronuclei as a third output (as it is if it has one)."""
    if "micronuclei" in card.classes:
        return card
    return card.replace(classes=(*card.classes, "micronuclei"), outputs={**card.outputs, **MICRONUCLEI_OUTPUT})


def write_card(result: dict, adopt: bool = False) -> None:
    """Record the grouped cross-validation figures in the shipped model's card (the JSON
    beside the weights wins over the card in their header). With ``adopt``, the thresholds
    the cross-validation chose become the card's, and its validation figures are measured
    again at them."""
    from napari_unet.networks.model import SHIPPED_DIR

    path = SHIPPED_DIR / "nuclei.json"
    data = json.loads(path.read_text())
    if adopt:
        thr, bthr, area, rel = result["cv_thresholds"]
        data["threshold"] = thr
        model = load_model("nuclei")
        data["postprocess"] |= {seed_setting(model.card): bthr, "min_area": area, "min_relative_area": rel}
        result["shipped_thresholds"] = result["at_cv_thresholds"]
        val = list(iter_split("validation"))
        probs = [segment(model, img, precision="fp32", objects=False).probabilities for _, img, _ in val]
        at_val = scores(probs, [lab for *_, lab in val], model.card, thr, bthr, area, rel)
        data["metrics"] |= {
            "validation_f1_50": round(at_val["f1_50"], 4),
            "validation_dice": round(at_val["dice"], 4),
            "validation_median_count_error": round(at_val["median_count_error"], 4),
            "thresholds_chosen_on": "grouped cross-validation (scripts/cv_nuclei.py); the micronucleus threshold "
            "and area on the validation split",
        }
        data["metrics"].pop("validation_per_image", None)  # (they were at the thresholds chosen on validation)
    at = result["shipped_thresholds"]
    budget = f"{result['minutes_per_fold']:g} min"
    if result.get("epochs_cap", 60) < 60:
        budget = f"{50 * result['epochs_cap']} steps (at most {budget})"
    data["metrics"]["cross_validation"] = {
        "how": f"grouped by acquisition, {result['folds']} folds (one left out each), models trained "
        f"{budget} with this recipe (the shipped one 25 min), at the shipped thresholds; "
        "mnfinder training + validation splits (scripts/cv_nuclei.py)",
        **{k: round(v, 4) for k, v in at.items()},
        "thresholds_chosen_by_cv": result["cv_thresholds"],
        "f1_50_at_cv_thresholds": round(result["at_cv_thresholds"]["f1_50"], 4),
    }
    if result.get("micronuclei"):
        mn = result["micronuclei"]
        data["metrics"]["cross_validation"]["micronuclei"] = {
            "at_0.5_4px": {k: round(v, 4) for k, v in mn["default_0.5_4"].items()},
            "thresholds_chosen_by_cv": mn["chosen"],
            "at_cv_thresholds": {k: round(v, 4) for k, v in mn["at_chosen"].items()},
        }
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote the figures into {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes-per-fold", type=float, default=6.0)
    parser.add_argument("--augment", default="medium", help="the recipe's augmentation (medium: the shipped model's)")
    parser.add_argument("--work", default=None, help="where folds are kept (default: a cache folder per recipe)")
    parser.add_argument("--write-card", action="store_true", help="record the figures in the shipped model's card")
    parser.add_argument("--adopt-thresholds", action="store_true",
                        help="with --write-card: the thresholds chosen here become the shipped card's")  # fmt: skip
    parser.add_argument("--micronuclei", action="store_true",
                        help="train micronuclei as a third output (mnfinder's mn_masks); folds kept apart")  # fmt: skip
    parser.add_argument("--instance", choices=("boundary", "distance"), default="boundary",
                        help="the output that parts touching nuclei: the inner edge (the shipped model's) or the "
                        "distance to the edge")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=60,
                        help="cap on epochs of 50 steps per fold (10: 500 steps, what the 6-min folds of the recipe "
                        "ran, 504-544, whatever else the machine does)")  # fmt: skip
    parser.add_argument("--folds", default=None,
                        help="only these folds, e.g. 5 or 3,5 (numbered as printed): each acquisition left out in "
                        "turn with this budget, e.g. the shipped model's 25 min; the figures are over their "
                        "held-out images only")  # fmt: skip
    args = parser.parse_args()
    cache = Path.home() / ".cache" / "napari-unet"
    work = (
        Path(args.work)
        if args.work
        else cache
        / (
            "cv-nuclei"
            + ("" if args.augment == "medium" else f"-{args.augment}")
            + ("-mn" if args.micronuclei else "")
            + ("-dist" if args.instance == "distance" else "")
        )
    )
    work.mkdir(parents=True, exist_ok=True)

    data, groups, folds = cv_images()
    names = [n for n, _, _ in data]
    if args.folds is not None:
        try:
            chosen = sorted({int(k) for k in args.folds.split(",")})
        except ValueError:
            parser.error(f"--folds takes fold numbers like 3,5, got {args.folds!r}")
        if not chosen or not all(0 <= k < len(folds) for k in chosen):
            parser.error(f"--folds: there are {len(folds)} folds, numbered 0 to {len(folds) - 1}; got {args.folds!r}")
        if args.write_card:
            parser.error("--write-card records the figures of every fold; leave out --folds")
    else:
        chosen = list(range(len(folds)))
    micronuclei = cv_micronuclei(names) if args.micronuclei else [None] * len(data)
    shipped = load_model("nuclei").card
    recipe = instance_card(micronuclei_card(shipped) if args.micronuclei else shipped, args.instance)
    if args.write_card and recipe.classes != shipped.classes:
        parser.error(f"the shipped model's outputs are {', '.join(shipped.classes)}, this recipe's "
                     f"{', '.join(recipe.classes)}: ship a model of this recipe (train_nuclei.py) before writing "
                     "these figures into its card")  # fmt: skip
    print(f"{len(data)} images in {len(folds)} acquisition groups; {args.minutes_per_fold} min per fold; "
          f"augmentation {args.augment}; folds kept in {work}", flush=True)  # fmt: skip

    t0 = time.time()
    for k, (train_idx, test_idx) in enumerate(folds):
        if k not in chosen:
            continue
        done = work / f"fold{k}.npz"
        group = groups[test_idx[0]]
        if done.exists():
            print(f"fold {k} ({group}): done before, kept", flush=True)
            continue
        saved = work / f"fold{k}.safetensors"
        if not saved.is_file():  # (a fold whose model is kept but not its predictions is predicted again)
            items = [TrainingItem(data[i][1], data[i][2], name=names[i], micronuclei=micronuclei[i]) for i in train_idx]
            card = recipe.replace(name=f"cv-fold{k}", metrics={}, training={}, parent=None)
            config = TrainConfig(
                epochs=args.epochs, steps_per_epoch=50, max_seconds=args.minutes_per_fold * 60, batch_size=8, crop=256,
                lr=2e-3, warmup_steps=50, patience=12, device="cpu", seed=k, augment=args.augment,
            )  # fmt: skip
            trainer = Trainer(items, card=card, config=config, name=f"cv-fold{k}")  # epochs chosen on its own groups
            for _ in trainer.steps():
                pass
            trained = trainer.result().model
            save_model(trained, saved, trained.card)  # for later looks (test-time augmentation...)
        model = load_model(str(saved))  # the held-out group is predicted by the very file kept
        probs = {names[i]: segment(model, data[i][1], precision="fp32", objects=False).probabilities for i in test_idx}
        np.savez_compressed(done, **{n.replace("/", "__"): p for n, p in probs.items()})
        print(f"fold {k} ({group}, {len(test_idx)} images held out): trained on {len(train_idx)} "
              f"[{time.time() - t0:.0f} s]", flush=True)  # fmt: skip

    probs, truths, held_names = [], [], []
    for k, (_, test_idx) in enumerate(folds):
        if k not in chosen:
            continue
        saved = np.load(work / f"fold{k}.npz")
        for i in test_idx:
            probs.append(saved[names[i].replace("/", "__")])
            truths.append(data[i][2])
            held_names.append(names[i])
    seed_name = seed_setting(recipe)
    post = recipe.postprocess
    shipped_t = (recipe.threshold, post[seed_name], post["min_area"], post.get("min_relative_area", 0.0))
    at_shipped = scores(probs, truths, recipe, *shipped_t)
    seeds = SEED_THRESHOLDS if seed_name == "seed_threshold" else BOUNDARY_THRESHOLDS
    # two stages (the full grid would take an hour): the thresholds without the relative filter,
    # then the relative filter on top of them
    first = max(
        ((thr, bthr, area, 0.0) for thr in THRESHOLDS for bthr in seeds for area in MIN_AREAS),
        key=lambda t: scores(probs, truths, recipe, *t)["f1_50"],
    )
    by_rel = {rel: scores(probs, truths, recipe, *first[:3], rel) for rel in RELATIVE_AREAS}
    for rel, s in by_rel.items():
        print(f"  relative area {rel:<5} F1@0.5 {s['f1_50']:.4f}  count err {s['median_count_error']:.1%}", flush=True)
    best = (*first[:3], max(RELATIVE_AREAS, key=lambda r: by_rel[r]["f1_50"]))
    at_best = by_rel[best[3]]
    mn_result = None
    if args.micronuclei:
        card = recipe
        settings = Settings.for_model(card)
        nuclei = [objects(p, card, settings) for p in probs]
        mn_truths = [micronuclei[names.index(n)] for n in held_names]
        at_default = micronuclei_scores(probs, nuclei, mn_truths, card, 0.5, 4.0)
        thr, area, at_chosen = choose_micronuclei(probs, nuclei, mn_truths, card)
        at_card_mn = (float(post.get("micronucleus_threshold", 0.5)), float(post.get("micronucleus_min_area", 4.0)))
        mn_result = {"default_0.5_4": at_default, "chosen": [thr, area], "at_chosen": at_chosen,
                     "card": list(at_card_mn), "at_card": micronuclei_scores(probs, nuclei, mn_truths, card, *at_card_mn)}  # fmt: skip
    print()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; mnfinder {VERSION}")
    print(f"grouped cross-validation, {len(chosen)} of {len(folds)} folds (one acquisition left out each), "
          f"{len(probs)} images: {', '.join(groups[folds[k][1][0]] for k in chosen)}")  # fmt: skip
    print(f"thresholds: foreground / {seed_name.replace('_', ' ')} / min area / min share of the median object")
    print(f"{'thresholds':32} {'F1@0.5':>7} {'F1@0.75':>8} {'F1/img':>7} {'Dice':>6} {'count err':>10}")
    for label, s in ((f"shipped {'/'.join(f'{v:g}' for v in shipped_t)}", at_shipped),
                     (f"chosen by CV {'/'.join(f'{v:g}' for v in best)}", at_best)):  # fmt: skip
        print(f"{label:32} {s['f1_50']:7.3f} {s['f1_75']:8.3f} {s['f1_50_mean_per_image']:7.3f} {s['dice']:6.3f} "
              f"{s['median_count_error']:10.1%}")  # fmt: skip
    if mn_result is not None:
        for label, m in (("micronuclei at 0.5/4", mn_result["default_0.5_4"]),
                         (f"micronuclei card {at_card_mn[0]:g}/{at_card_mn[1]:g}", mn_result["at_card"]),
                         (f"micronuclei chosen {mn_result['chosen'][0]}/{mn_result['chosen'][1]}", mn_result["at_chosen"])):  # fmt: skip
            print(f"{label:32} F1@0.5 {m['mn_f1_50']:.3f}  F1@0.3 {m['mn_f1_30']:.3f}  "
                  f"count err {m['mn_median_count_error']:.1%}")  # fmt: skip
    result = {"folds": len(folds), "folds_run": chosen, "minutes_per_fold": args.minutes_per_fold, "augment": args.augment,
              "instance": args.instance, "micronuclei": mn_result, "epochs_cap": args.epochs,
              "shipped_thresholds": at_shipped, "cv_thresholds": list(best), "at_cv_thresholds": at_best}  # fmt: skip
    if args.write_card:
        write_card(result, adopt=args.adopt_thresholds)
    print(json.dumps({"folds": len(folds), "folds_run": chosen, "minutes_per_fold": args.minutes_per_fold, "augment": args.augment,
                      "instance": args.instance, "micronuclei": mn_result, "epochs_cap": args.epochs,
                      "shipped_thresholds": at_shipped,
                      "cv_thresholds": list(best), "at_cv_thresholds": at_best}))  # fmt: skip


if __name__ == "__main__":
    main()
