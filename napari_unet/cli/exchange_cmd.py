"""``napari-unet export`` and ``napari-unet import``: models in and out as bioimage.io packages."""

from __future__ import annotations

import argparse

from napari_unet.cli._base import command


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="registered model name or model file (e.g. nuclei)")
    p.add_argument("--out", required=True, metavar="FILE.zip", help="the package to write")
    p.add_argument(
        "--image",
        default=None,
        help="an image to cut the test tensors and the cover from (default: a shipped sample that fits the model)",
    )
    p.add_argument("--author", action="append", default=None, help="an author's name (repeat for several)")
    p.add_argument("--licence", default=None, help="SPDX licence id of the weights (default: from the model card)")
    p.add_argument("--no-onnx", action="store_true", help="leave out the ONNX weights")
    p.add_argument("--no-test", action="store_true", help="skip bioimage.io's own test of the written package")


@command("export", _export_args)
def export(args: argparse.Namespace) -> int:
    """Write a model as a bioimage.io package, for Fiji (deepImageJ), ilastik, QuPath and BiaPy."""
    from napari_unet.exchange import export_package

    formats = ("pytorch_state_dict", "torchscript") + (() if args.no_onnx else ("onnx",))
    print(f"exporting {args.model} to {args.out} ...")
    result = export_package(
        args.model, args.out, image=args.image, authors=args.author, licence=args.licence,
        formats=formats, test=not args.no_test,
    )  # fmt: skip
    print(f"wrote {result.path}: weights {', '.join(result.weights)}; test tensors from {result.example}")
    for fmt, why in result.skipped.items():
        print(f"note: no {fmt} weights: {why}")
    for note in result.notes:
        print(f"note: {note}")
    if result.test:
        print(f"bioimage.io's own test of the package: {result.test}")
    return 0


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="FILE.zip|FOLDER", help="a bioimage.io model package, zipped or unpacked")
    p.add_argument("--name", default=None, help="the name to register it under (default: from the package)")
    p.add_argument(
        "--trust",
        action="store_true",
        help="run the package's TorchScript weights when it has no ONNX ones: TorchScript is a program that runs "
        "whatever its author wrote (files and network included), so only for a package whose source you trust",
    )


@command("import", _import_args)
def import_(args: argparse.Namespace) -> int:
    """Register a bioimage.io model package as a napari-unet model (for predict, count and the dock)."""
    from napari_unet.exchange import import_package
    from napari_unet.networks.model import read_card

    path = import_package(args.source, args.name, trust=args.trust)
    card = read_card(path)
    how = (
        f"runs through its {card.architecture} weights (predicts; cannot be fine-tuned)"
        if card.architecture in ("torchscript", "onnx")
        else "runs on napari-unet's own engine and can be fine-tuned"
    )
    print(f"imported {args.source} as {card.name!r} ({path}); it {how}")
    print(f"use it with: napari-unet predict IMAGES --model {card.name} --out OUT")
    return 0
