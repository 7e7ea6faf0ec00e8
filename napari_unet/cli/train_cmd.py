"""``napari-unet train``: fine-tune on checked labels or train from scratch."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.cli._base import _drive, command, error


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", nargs="+", required=True, help="training images")
    p.add_argument("--labels", nargs="+", required=True, help="their label images, in the same order")
    p.add_argument("--annotated", nargs="+", default=None,
                   help="per image: a mask TIFF of the checked region, or checked slices like 0,3,7 (default: all)")  # fmt: skip
    base = p.add_mutually_exclusive_group()
    base.add_argument("--base", default=None, help="model to fine-tune (default: the shipped nuclei model)")
    base.add_argument("--scratch", action="store_true", help="start from random weights")
    p.add_argument(
        "--classes",
        type=int,
        default=1,
        help="with --scratch: 1 = foreground (+boundary), N>1 = N classes incl. background",
    )
    p.add_argument("--out", required=True, help="name of the new model (saved to the user model folder) or a path")
    p.add_argument("--epochs", type=int, default=20, help="passes over the checked data (at most)")
    p.add_argument("--max-seconds", type=float, default=None, help="time budget in seconds")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="random seed (crops, augmentation, initial weights)")


@command("train", _train_args)
def train_cmd(args: argparse.Namespace) -> int:
    """Fine-tune a model on corrected labels (or train one from scratch) and register it."""

    from napari_unet.io import read_image
    from napari_unet.model import ModelCard, load_model, save_model, user_model_dir
    from napari_unet.train import TrainConfig, Trainer, TrainingItem

    if len(args.images) != len(args.labels):
        raise ValueError(
            f"got {len(args.images)} images but {len(args.labels)} label files; give one label file per image"
        )
    if args.annotated and len(args.annotated) != len(args.images):
        raise ValueError("give one --annotated entry per image (a mask file or slice list like 0,3)")
    items = []
    for k, (ip, lp) in enumerate(zip(args.images, args.labels)):
        img, lab = read_image(ip), read_image(lp)
        region = None
        if args.annotated:
            spec = args.annotated[k]
            if all(c.isdigit() or c == "," for c in spec):
                region = [int(v) for v in spec.split(",") if v]
            else:
                region = np.asarray(read_image(spec).data) > 0
        items.append(TrainingItem(img.data, np.asarray(lab.data).astype(np.int32), region, img.name, img.axes))
    base, card = None, None
    if args.scratch:
        if args.classes > 1:
            card = ModelCard(
                "scratch",
                classes=("background", *[f"class {i}" for i in range(1, args.classes)]),
                activation="softmax",
                arch_args={"features": [16, 32, 64, 128, 256]},
            )
        else:
            card = ModelCard(
                "scratch", classes=("foreground", "boundary"), arch_args={"features": [16, 32, 64, 128, 256]}
            )
    else:
        base = load_model(args.base)
    name = Path(args.out).name
    config = TrainConfig(epochs=args.epochs, max_seconds=args.max_seconds, device=args.device, seed=args.seed)
    trainer = Trainer(items, base=base, card=card, config=config, name=name)

    def show(e: Any) -> dict:
        i = e.info
        return {"loss": f"{i.get('loss', 0):.3f}", **({"val_dice": f"{i['val_dice']:.3f}"} if "val_dice" in i else {})}

    dest = Path(args.out) if (os.sep in args.out or args.out.endswith(".safetensors")) else user_model_dir() / name
    try:
        result = _drive(trainer.steps(), "train", show)
    except KeyboardInterrupt:  # Ctrl-C: keep what the run has learnt so far, as the dock's Stop does
        if not trainer.has_checkpoint:
            error("interrupted before the first validated epoch; there is no checkpoint to keep")
            return 130
        result = trainer.interrupted()
        path = save_model(result.model, dest, result.card)
        print(result.verdict())
        error(f"interrupted: the best checkpoint (epoch {result.best_epoch}) was saved to {path}")
        return 130
    path = save_model(result.model, dest, result.card)
    print(result.verdict())
    print(f"saved {path}")
    return 0
