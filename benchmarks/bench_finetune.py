"""Fine-tuning benefit: a quarter of corrected labels, a minute of CPU, the rest of the image.

    python benchmarks/bench_finetune.py [--seconds 60] [--shift zoom2]

A validation image of mnfinder (never the test split) is moved out of the shipped model's
comfort zone by a domain shift the training augmentation did not cover (default: nuclei
2x larger, as with another objective, plus uneven illumination and camera noise). Ground
truth on the top-left quarter plays the user's correction; the model is fine-tuned on it
for ``--seconds`` and scored (object F1@0.5, Dice) on the other three quarters before and
after, and at every checkpoint, to find the time to the first improved one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import emit_json, machine, table
from mnfinder import iter_split

from napari_unet.networks.model import build_model, load_model
from napari_unet.objects.metrics import match_objects, pixel_scores
from napari_unet.objects.pipeline import segment
from napari_unet.training.train import TrainConfig, Trainer, TrainingItem


def shifted(
    image: np.ndarray, labels: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage as ndi

    img = image.astype(np.float32)
    if kind.startswith("zoom"):
        f = float(kind[4:] or 2)
        img = ndi.zoom(img, f, order=1)
        labels = ndi.zoom(labels, f, order=0)
    h, w = img.shape
    yy, xx = np.mgrid[:h, :w]
    lo, hi = np.percentile(img, (1, 99.8))
    img = (img - lo) / (hi - lo)
    img = img * (0.35 + 0.65 * xx / w) + 0.6 * (1 - yy / h) ** 2  # uneven illumination, bright corner
    img = rng.poisson(np.clip(img, 0, None) * 30) / 30 + rng.normal(0, 0.08, img.shape)
    return (np.clip(img, 0, None) * 3000).astype(np.uint16), labels.astype(np.int32)


def scores(model: torch.nn.Module, image: np.ndarray, truth: np.ndarray, region: np.ndarray) -> dict:
    result = segment(model, image, device="cpu", precision="fp32")
    pred = result.labels
    m = match_objects(np.where(region, pred, 0), np.where(region, truth, 0))
    return {
        "f1": m["f1"],
        "dice": pixel_scores(result.mask[region] > 0, truth[region] > 0)["dice"],
        "n_pred": m["n_pred"],
        "n_true": m["n_true"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--shift", default="zoom2")
    parser.add_argument("--image", default="2022-10-14_U2OS/1")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    name, image, labels = next(v for v in iter_split("validation") if v[0] == args.image)
    image, labels = shifted(image, labels, args.shift, rng)
    h, w = labels.shape
    annotated = np.zeros(labels.shape, bool)
    annotated[: h // 2, : w // 2] = True
    evaluate = ~annotated

    base = load_model("nuclei")
    before = scores(base, image, labels, evaluate)
    cfg = TrainConfig(epochs=10_000, steps_per_epoch=10, max_seconds=args.seconds, batch_size=4, crop=192, lr=args.lr,
                      warmup_steps=5, patience=10_000, seed=0)  # fmt: skip
    trainer = Trainer([TrainingItem(image, labels, annotated, name)], base=base, config=cfg, name="bench-finetuned")
    checkpoints: list[tuple[float, dict]] = []
    t0 = time.perf_counter()
    trainer.on_best = lambda state, rec: checkpoints.append(
        (time.perf_counter() - t0, {k: v.clone() for k, v in state.items()})
    )
    gen = trainer.steps()
    steps = 0
    while True:
        try:
            ev = next(gen)
            steps = ev.done
        except StopIteration as stop:
            result = stop.value
            break
    train_seconds = result.history[-1]["elapsed"] if result.history else 0.0
    after = scores(result.model, image, labels, evaluate)
    rows = [
        {
            "model": "shipped (before)",
            "seconds": 0.0,
            "F1@0.5": before["f1"],
            "Dice": before["dice"],
            "n_pred": before["n_pred"],
            "n_true": before["n_true"],
        }
    ]
    first_improved = None
    for t, state in checkpoints:
        net = build_model(base.card)
        net.load_state_dict(state)
        s = scores(net, image, labels, evaluate)
        rows.append(
            {
                "model": "checkpoint",
                "seconds": t,
                "F1@0.5": s["f1"],
                "Dice": s["dice"],
                "n_pred": s["n_pred"],
                "n_true": s["n_true"],
            }
        )
        if first_improved is None and s["f1"] >= before["f1"] + 0.10:
            first_improved = t
    rows.append(
        {
            "model": "fine-tuned (kept)",
            "seconds": train_seconds,
            "F1@0.5": after["f1"],
            "Dice": after["dice"],
            "n_pred": after["n_pred"],
            "n_true": after["n_true"],
        }
    )
    print(f"napari-unet fine-tuning benchmark on {machine()}")
    print(
        f"image {name} with domain shift '{args.shift}' ({h}x{w}); annotated: top-left quarter; scored on the other three"
    )
    print(f"training: {steps} steps in {train_seconds:.1f} s = {steps / max(train_seconds, 1e-9):.2f} steps/s "
          f"(batch {cfg.batch_size} of {cfg.crop}^2, {trainer.precision}, {trainer.device}); quality gate: {result.verdict()}")  # fmt: skip
    print(table(rows, ["model", "seconds", "F1@0.5", "Dice", "n_pred", "n_true"]))
    print(
        f"time to the first checkpoint with F1 +0.10 on the unannotated quarters: {first_improved if first_improved is None else f'{first_improved:.1f} s'}"
    )
    emit_json({"benchmark": "finetune", "shift": args.shift, "f1_before": round(before["f1"], 4), "f1_after": round(after["f1"], 4),
               "f1_gain": round(after["f1"] - before["f1"], 4), "dice_before": round(before["dice"], 4), "dice_after": round(after["dice"], 4),
               "train_seconds": round(train_seconds, 1), "steps_per_s": round(steps / max(train_seconds, 1e-9), 3),
               "first_improved_s": None if first_improved is None else round(first_improved, 1), "device": str(trainer.device)})  # fmt: skip


if __name__ == "__main__":
    main()
