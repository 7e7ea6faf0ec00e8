"""bioimage.io exchange: export the shipped model (and a multi-class RGB model), check the
packages with bioimage.io's own test, compare bioimageio.core's predictions with
napari-unet's on the real samples, and time it all.

    python benchmarks/bench_exchange.py [--seconds 60]

Agreement is measured two ways: bioimageio.core's ``predict`` as a user calls it (it pads
the image by the package's halo before taking percentiles) and its pipeline without that
padding (the same pixels napari-unet normalises). Probabilities are compared away from
napari-unet's tile seams: pixels at least a halo away from every tile edge but the image's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def away_from_seams(shape: tuple[int, int], tile: int, overlap: float) -> np.ndarray:
    """Pixels that a single tile of napari-unet's grid covers (no blending of tiles there)."""
    from napari_unet.engine.tiling import Grid

    grid = Grid.for_shape(shape, tile=tile, overlap=overlap, divisor=16)
    cover = np.zeros(grid.padded, np.int32)
    for y0, x0 in grid.tiles():
        cover[y0 : y0 + grid.tile[0], x0 : x0 + grid.tile[1]] += 1
    return cover[: shape[0], : shape[1]] == 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="training budget of the multi-class RGB model")
    args = parser.parse_args()

    import torch
    from bioimageio.core import create_prediction_pipeline, load_description, predict
    from bioimageio.core.digest_spec import create_sample_for_model

    from napari_unet._sample_data import NUCLEI_SAMPLES, sample_paths
    from napari_unet.exchange import check_package, export_package, import_package
    from napari_unet.io import read_image
    from napari_unet.networks.model import load_model
    from napari_unet.objects.pipeline import Settings, segment

    torch.set_num_threads(os.cpu_count() or 1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-exchange-"))
    os.environ["NAPARI_UNET_MODELS"] = str(tmp / "models")
    rows, figures = [], {}

    t = time.perf_counter()
    result = export_package("nuclei", tmp / "nuclei.zip", test=False)
    figures["export_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    figures["bioimageio_test_nuclei"] = check_package(tmp / "nuclei.zip")
    figures["bioimageio_test_s"] = round(time.perf_counter() - t, 2)
    figures["weights"] = result.weights
    figures["package_mb"] = round((tmp / "nuclei.zip").stat().st_size / 1e6, 1)

    net = load_model("nuclei")
    descr = load_description(tmp / "nuclei.zip")
    worst_prob, worst_prob_default, dices, dices_default = 0.0, 0.0, [], []
    for key in NUCLEI_SAMPLES:
        image = np.asarray(read_image(sample_paths(key)[0]).data)
        h, w = image.shape  # the whole sample: the package's network pads to its divisor itself
        tiled = segment(net, image, settings=Settings(precision="fp32"))  # tiled, in the package's fp32
        ours = tiled.probabilities
        default = segment(net, image).probabilities  # tiled, at the precision napari-unet picks here
        x = image[None, None].astype(np.float32)
        t = time.perf_counter()
        theirs = np.asarray(predict(model=descr, inputs=x).members["output"].data)[0][:, :h, :w]
        core_s = time.perf_counter() - t
        with create_prediction_pipeline(descr) as pp:
            sample = create_sample_for_model(descr, inputs=x, sample_id=key)
            raw = pp.predict_sample_without_blocking(sample, skip_input_padding=True, skip_output_cropping=True)
        unpadded = np.asarray(raw.members["output"].data)[0][:, :h, :w]
        keep = away_from_seams(image.shape, tiled.settings.tile, tiled.settings.overlap)  # the tiling it chose
        diff = float(np.abs(unpadded - ours)[:, keep].max())
        diff_default = float(np.abs(theirs - ours)[:, keep].max())
        over = float((np.abs(unpadded - ours)[:, keep] > 1e-3).mean())
        d, d_default = dice(unpadded[0] > 0.5, ours[0] > 0.5), dice(theirs[0] > 0.5, default[0] > 0.5)
        worst_prob, worst_prob_default = max(worst_prob, diff), max(worst_prob_default, diff_default)
        dices.append(d)
        dices_default.append(d_default)
        rows.append((key, image.shape, d, diff, over, d_default, diff_default, float(keep.mean()), core_s))

    t = time.perf_counter()
    imported = load_model(import_package(tmp / "nuclei.zip"))
    figures["import_s"] = round(time.perf_counter() - t, 2)
    image = np.asarray(read_image(sample_paths("rpe1")[0]).data)
    a, b = segment(net, image), segment(imported, image)
    figures["import_max_prob_diff"] = float(np.abs(a.probabilities - b.probabilities).max())
    figures["import_labels_equal"] = bool(np.array_equal(a.labels, b.labels))

    # a multi-class RGB model, trained briefly on synthetic H&E tiles, out and back
    from napari_unet._synthetic import he_tile
    from napari_unet.networks.recipes import new_model_card
    from napari_unet.training.train import TrainConfig, Trainer, TrainingItem

    def small_and_large(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """An H&E-like tile with two classes: nuclei under 250 px (1) and larger ones (2)."""
        rgb, labels = he_tile(seed, size)
        area = np.bincount(labels.ravel())
        classes = np.where(area[labels] < 250, 1, 2).astype(np.uint8)
        classes[labels == 0] = 0
        return rgb, classes

    items = [TrainingItem(*small_and_large(seed, 256), axes="YXS") for seed in range(6)]
    card = new_model_card(classes=3, class_names=["small_nucleus", "large_nucleus"], in_channels=3,
                          normalisation={"kind": "range", "min": 0, "max": 255}, width=8, depth=4, name="he")  # fmt: skip
    trainer = Trainer(items, card=card, config=TrainConfig(max_seconds=args.seconds, epochs=200))
    for _ in trainer.steps():
        pass
    he = trainer.result().model
    t = time.perf_counter()
    export_package(he, tmp / "he.zip", test=False)
    figures["bioimageio_test_rgb_multiclass"] = check_package(tmp / "he.zip")
    figures["rgb_export_and_test_s"] = round(time.perf_counter() - t, 2)
    import subprocess

    for key, package in (("nuclei", tmp / "nuclei.zip"), ("rgb_multiclass", tmp / "he.zip")):
        cli = Path(sys.executable).with_name("bioimageio")  # bioimage.io's own command, as its users run it
        run = subprocess.run([str(cli), "test", str(package)], capture_output=True, text=True, timeout=600)
        figures[f"bioimageio_cli_test_{key}"] = "passed" if run.returncode == 0 else f"failed (exit {run.returncode})"
    back = load_model(import_package(tmp / "he.zip"))
    rgb, _ = small_and_large(99, 384)
    figures["rgb_import_max_prob_diff"] = float(
        np.abs(segment(he, rgb, axes="YXS").probabilities - segment(back, rgb, axes="YXS").probabilities).max()
    )

    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(
        f"export of the shipped model: {figures['export_s']} s, {figures['package_mb']} MB, weights {', '.join(result.weights)}"
    )
    print(
        f"bioimageio.core test_model: shipped {figures['bioimageio_test_nuclei']} ({figures['bioimageio_test_s']} s), "
        f"multi-class RGB {figures['bioimageio_test_rgb_multiclass']}; the `bioimageio test` command: shipped "
        f"{figures['bioimageio_cli_test_nuclei']}, multi-class RGB {figures['bioimageio_cli_test_rgb_multiclass']}"
    )
    print(f"multi-class RGB model (2 nucleus classes + background, synthetic H&E): trained {args.seconds:.0f} s, "
          "held-out Dice per class "
          + ", ".join(f"{c['name']} {c['dice']:.3f}" for c in he.card.metrics.get("heldout_classes", {}).values()))  # fmt: skip
    print()
    print("bioimageio.core whole image vs napari-unet tiled, foreground Dice and max |prob diff| away from seams")
    print(f"{'sample':8} {'shape':>12} {'Dice':>7} {'max diff':>9} {'>1e-3':>7} {'Dice(pad)':>10} {'diff(pad)':>10} "
          f"{'1 tile':>7} {'core s':>7}")  # fmt: skip
    for key, shape, d, diff, over, dd, diffd, kept, s in rows:
        print(f"{key:8} {shape!s:>12} {d:7.4f} {diff:9.2e} {over:7.2%} {dd:10.4f} {diffd:10.2e} {kept:7.0%} {s:7.2f}")
    print("max diff, >1e-3: over the pixels one tile covers (1 tile: their share); >1e-3: share of them off by more")
    print("Dice, max diff: core's pipeline on the very pixels (no halo padding) vs napari-unet tiled in fp32")
    print("(pad): core's predict as a user calls it (it mirrors the image out by the halo before taking percentiles)")
    print("       vs napari-unet predict as a user calls it (precision auto: bf16 on a CPU that has it)")
    print()
    print(f"import of our own package: {figures['import_s']} s, max |prob diff| {figures['import_max_prob_diff']:.1e}, "
          f"labels equal {figures['import_labels_equal']}; RGB multi-class {figures['rgb_import_max_prob_diff']:.1e}")  # fmt: skip
    figures.update(
        min_dice=round(min(dices), 5), max_prob_diff=worst_prob,
        min_dice_core_predict=round(min(dices_default), 5), max_prob_diff_core_predict=worst_prob_default,
    )  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
