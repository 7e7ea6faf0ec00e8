"""``napari-unet train``: fine-tune on checked labels or train from scratch."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.cli._base import _drive, _positive_int, command, error, slice_numbers
from napari_unet.engine.planes import CT_WINDOWS
from napari_unet.networks.architectures import ARCHITECTURES
from napari_unet.networks.recipes import FROM_SCRATCH, training_crop
from napari_unet.training.losses import LOSSES


class _Given(argparse.Action):
    """Stores the value and notes that it was given (a default and an explicit equal value differ)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"class names are separated by commas, with none empty: got {text!r}")
    return names


def _channels(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"channels are indices separated by commas, e.g. 0,2; got {text!r}") from None
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"channels must be distinct indices >= 0, got {text!r}")
    return values


def _weights(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"class weights are numbers separated by commas, got {text!r}") from None


NORMALIZE_HELP = (
    "how images are scaled: percentile[:LOW:HIGH] (per image, default 1:99.8), zscore (per image), dataset (mean/std "
    f"of the training images, stored in the card), range:MIN:MAX (fixed, clipped), window:PRESET ({', '.join(CT_WINDOWS)}) "
    "or window:LEVEL:WIDTH for CT in HU. Default: the base model's; for a new model, a lung window for int16 CT-like "
    "images, else percentile"
)


def parse_normalize(text: str) -> dict:
    """``--normalize`` text -> a card's normalisation dict (checked)."""
    from napari_unet.engine.planes import check_normalisation

    kind, *values = text.strip().lower().split(":")
    try:
        numbers = [float(v) for v in values] if kind != "window" or len(values) != 1 else []
        if kind == "percentile":
            norm = {"kind": kind, **({"low": numbers[0], "high": numbers[1]} if numbers else {})}
        elif kind in ("zscore", "dataset", "none") and not values:
            norm = {"kind": kind}
        elif kind == "range" and len(numbers) == 2:
            norm = {"kind": "range", "min": numbers[0], "max": numbers[1], "clip": True}
        elif kind == "window" and len(values) == 1:
            norm = {"kind": "window", "preset": values[0]}
        elif kind == "window" and len(numbers) == 2:
            norm = {"kind": "window", "level": numbers[0], "width": numbers[1]}
        else:
            raise ValueError(f"cannot read --normalize {text!r}")
        return check_normalisation(norm)
    except (ValueError, IndexError) as exc:
        raise argparse.ArgumentTypeError(f"{exc}. {NORMALIZE_HELP}") from None


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", nargs="+", required=True, help="training images")
    p.add_argument("--labels", nargs="+", required=True,
                   help="their label images, in the same order: object ids, or class ids for --classes N >= 2")  # fmt: skip
    p.add_argument("--annotated", nargs="+", default=None,
                   help="per image: a mask TIFF of the checked region, or checked slices like 0,3,7 (default: all)")  # fmt: skip
    base = p.add_mutually_exclusive_group()
    base.add_argument("--base", default=None, help="model to fine-tune (default: the shipped nuclei model)")
    base.add_argument("--scratch", action="store_true", help="start from random weights (a new model)")
    new = p.add_argument_group("a new model (--scratch)")
    new.add_argument("--classes", type=int, default=1,
                     help="1 = objects to count (foreground + boundary); N >= 2 = N classes including background, "
                          "a class id per pixel")  # fmt: skip
    new.add_argument("--class-names", type=_names, default=None,
                     help="names of the classes after background, e.g. left_lung,right_lung (default: class_1, ...)")  # fmt: skip
    new.add_argument("--arch", choices=ARCHITECTURES, default="unet", help="network architecture")
    new.add_argument("--width", type=int, default=16, help="features of the first level (doubling at each level)")
    new.add_argument("--depth", type=int, default=5, help="levels of the U-Net (poolings + 1)")
    new.add_argument("--normalize", type=parse_normalize, default=None, help=NORMALIZE_HELP)
    new.add_argument("--channels", type=_channels, default=None,
                     help="channels of a multi-channel image to use, e.g. 0,2 (default: all; RGB(A): R, G, B)")  # fmt: skip
    new.add_argument("--input-size", type=int, default=None,
                     help="whole-image mode: resize every image to NxN for the network (and the prediction back), "
                          "as chest X-ray models do; N a multiple of the network's factor (16 by default)")  # fmt: skip
    new.add_argument("--context", type=int, default=0,
                     help="2.5D: also feed this many neighbouring slices on each side of a stack's slice as channels "
                          "(a lesion is a blob through the slices, a vessel a tube)")  # fmt: skip
    new.add_argument("--no-flips", action="store_true",
                     help="left and right matter (lungs, heart): no mirror flips or turns; kept in the card")  # fmt: skip
    opts = p.add_argument_group("training")
    opts.add_argument("--loss", choices=LOSSES, default="dice_ce", help="loss function")
    opts.add_argument("--class-weights", type=_weights, default=None,
                      help="weight of each output class in the cross-entropy/focal term, e.g. 1,5 (default: equal)")  # fmt: skip
    opts.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3; 3e-3 for --scratch)")
    opts.add_argument("--batch", type=_positive_int, default=4, help="crops per step")
    opts.add_argument("--crop", type=_positive_int, default=None,
                      help="crop side in pixels (default 192; the whole image with --input-size)")  # fmt: skip
    opts.add_argument("--augment", choices=("none", "light", "medium", "heavy"), default="medium",
                      help="augmentation strength")  # fmt: skip
    p.add_argument("--out", required=True, help="name of the new model (saved to the user model folder) or a path")
    p.add_argument("--overwrite", action="store_true", help="replace a model of yours that has the --out name")
    p.add_argument("--epochs", type=_positive_int, default=20, action=_Given,
                   help="passes over the checked data, at most; when only a time budget is given, as many as fit in it")  # fmt: skip
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="time budget in seconds (default: none; the epochs bound the run)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="random seed (crops, augmentation, initial weights)")


def _by_time(gen: Any, seconds: float) -> Any:
    """A run bounded by time shows its progress in seconds of its budget, not in steps."""
    from napari_unet.jobs import Progress, relay

    def in_seconds(event: Any) -> Any:
        elapsed = int(float(event.info.get("elapsed", 0.0)))
        return Progress(min(elapsed, int(seconds)), int(seconds), event.info)

    return relay(gen, in_seconds)


def guess_normalisation(image: Any) -> dict:
    """A new model's scaling when none is asked for: a lung CT window for signed 16-bit
    images whose values look like Hounsfield units (air near -1000), else percentiles."""
    from napari_unet.engine.planes import in_hounsfield_units

    if not image.rgb and image.channel_axis is None and in_hounsfield_units(image.data):
        return {"kind": "window", "preset": "lung"}
    return {"kind": "percentile", "low": 1.0, "high": 99.8}


def new_card(args: argparse.Namespace, first: Any) -> Any:
    """The card of a model trained from scratch, from the command line and the first image."""
    from napari_unet.networks.recipes import new_model_card

    channels = (
        len(args.channels)
        if args.channels
        else (3 if first.rgb else (first.shape[first.channel_axis] if first.channel_axis is not None else 1))
    )
    return new_model_card(
        classes=args.classes, class_names=args.class_names, in_channels=channels, channels=args.channels,
        normalisation=args.normalize or guess_normalisation(first), architecture=args.arch, width=args.width,
        depth=args.depth, input_size=args.input_size, context=args.context, flips=not args.no_flips, name="scratch",
    )  # fmt: skip


@command("train", _train_args)
def train_cmd(args: argparse.Namespace) -> int:
    """Fine-tune a model on corrected labels (or train one from scratch) and register it."""

    from napari_unet.networks.model import reserved_name, user_model_dir

    if len(args.images) != len(args.labels):
        raise ValueError(
            f"got {len(args.images)} images but {len(args.labels)} label files; give one label file per image"
        )
    if args.annotated and len(args.annotated) != len(args.images):
        raise ValueError("give one --annotated entry per image (a mask file or slice list like 0,3)")
    if not args.scratch:
        for option in ("class_names", "normalize", "channels", "input_size", "context"):
            if getattr(args, option) not in (None, 0):
                raise ValueError(
                    f"--{option.replace('_', '-')} describes a new model; a fine-tune keeps its base model's. "
                    "Add --scratch to train a new model"
                )
        if args.classes != 1 or args.no_flips or args.arch != "unet":
            raise ValueError("--classes, --arch and --no-flips describe a new model; add --scratch to train one")
    name = Path(args.out).name
    dest = Path(args.out) if (os.sep in args.out or args.out.endswith(".safetensors")) else user_model_dir() / name
    with reserved_name(dest, overwrite=args.overwrite):  # the name is checked before any training
        return _train(args, dest)


def _train(args: argparse.Namespace, dest: Path) -> int:
    from napari_unet.io import read_image
    from napari_unet.networks.model import load_model, save_model
    from napari_unet.training.train import TrainConfig, Trainer, TrainingItem

    items, notes = [], set()
    for k, (ip, lp) in enumerate(zip(args.images, args.labels)):
        img, lab = read_image(ip), read_image(lp)
        if img.metadata.get("note"):
            notes.add(img.metadata["note"])
        labels = np.asarray(lab.data)
        if labels.ndim == 3 and lab.rgb:
            raise ValueError(f"{lp}: the labels are a colour picture; give them as integer ids (0 = background)")
        spatial = tuple(n for n, a in zip(img.data.shape, img.axes) if a not in "CS")  # (S: RGB samples)
        if labels.shape != spatial:  # before anything about their values: a wrong pair is the likelier mistake
            raise ValueError(
                f"{lp} is {'x'.join(map(str, labels.shape))} but {ip} is {'x'.join(map(str, spatial))} "
                f"({''.join(a for a in img.axes if a not in 'CS')}); give the labels drawn on this image"
            )
        if labels.dtype.kind not in "biu":
            raise ValueError(f"{lp}: labels must be integers (0 = background), got {labels.dtype}")
        region = None
        if args.annotated:
            spec = args.annotated[k]
            if all(c.isdigit() or c in ",- " for c in spec):
                region = slice_numbers(spec)
            else:
                region = np.asarray(read_image(spec).data) > 0
        items.append(TrainingItem(img.data, labels.astype(np.int32), region, img.name, img.axes))
    for note in sorted(notes):
        print(note)
    base, card = None, None
    if args.scratch:
        card = new_card(args, read_image(args.images[0]))
        if card.activation == "softmax":
            top = max(int(it.labels.max()) for it in items)
            if top >= card.out_channels:
                raise ValueError(
                    f"the labels hold class {top} but --classes {args.classes} allows 0..{args.classes - 1}; give "
                    f"--classes {top + 1} (with a name per class), or fix the labels"
                )
    else:
        base = load_model(args.base)
    name = dest.name
    epochs = args.epochs if getattr(args, "epochs_given", False) or not args.max_seconds else 100_000
    crop = args.crop or training_crop(card)
    if args.class_weights is not None:
        n_out = (card or base.card).out_channels
        if len(args.class_weights) != n_out:
            raise ValueError(
                f"--class-weights gives {len(args.class_weights)} weight(s); the model has {n_out} outputs"
            )
    recipe = dict(FROM_SCRATCH) if args.scratch else {}  # (a fine-tune: TrainConfig's own defaults)
    if args.lr:
        recipe["lr"] = args.lr
    config = TrainConfig(
        epochs=epochs, max_seconds=args.max_seconds, device=args.device, seed=args.seed, batch_size=args.batch,
        crop=crop, loss=args.loss, augment=args.augment, class_weights=args.class_weights, **recipe,
    )  # fmt: skip
    trainer = Trainer(items, base=base, card=card, config=config, name=name)

    def show(e: Any) -> dict:
        i = e.info
        return {"loss": f"{i.get('loss', 0):.3f}", **({"val_dice": f"{i['val_dice']:.3f}"} if "val_dice" in i else {})}

    try:
        steps = trainer.steps() if not args.max_seconds else _by_time(trainer.steps(), args.max_seconds)
        result = _drive(steps, "train", show)
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
