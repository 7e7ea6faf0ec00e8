"""Real nuclei images with hand-drawn instance masks, from the mnfinder 1.2.3 wheel (MIT).

The wheel is fetched once with ``pip download --no-deps`` into a cache folder (nothing is
installed, TensorFlow is not pulled in); images and masks are read straight from the zip.
Splits: ``training`` (30 images), ``validation`` (3) and ``test`` (16). The test split is
reserved for independent evaluation of the project: no code here trains or tunes on it,
and :func:`iter_split` refuses it unless ``allow_test=True`` is passed on purpose.

Usage::

    python scripts/mnfinder.py fetch            # download into the cache, print its path
    python scripts/mnfinder.py sample-data      # (re)write napari_unet/sample_data/
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_unet.io import decode_color_labels, write_tiff  # noqa: E402

VERSION = "1.2.3"
CACHE = Path(os.environ.get("NAPARI_UNET_CACHE", Path.home() / ".cache" / "napari-unet"))
SPLITS = ("training", "validation", "test")

#: (split, set folder, image stem) -> sample_data file stem. All from the training split.
SAMPLES = {
    ("training", "2022-05-25_RPE1", "1"): "rpe1_2022-05-25_1",
    ("training", "2022-10-14_U2OS", "5"): "u2os_2022-10-14_5",
    ("training", "2023-05-31_misc", "2"): "misc_2023-05-31_2",
}


def fetch(cache: Path = CACHE) -> Path:
    """Path of the mnfinder wheel, downloading it (66 MB, no dependencies) if needed."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob(f"mnfinder-{VERSION}-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"mnfinder=={VERSION}", "-d", str(cache)],
            check=True,
        )
        wheels = sorted(cache.glob(f"mnfinder-{VERSION}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"mnfinder {VERSION} could not be downloaded into {cache}")
    return wheels[0]


def iter_split(
    split: str, *, allow_test: bool = False, cache: Path = CACHE, micronuclei: bool = False
) -> Iterator[tuple]:
    """Yield ``(name, image, instance_labels)`` for every image of a split, in a fixed order;
    with ``micronuclei``, ``(name, image, instance_labels, micronucleus_labels)``."""
    import imageio.v3 as iio
    import tifffile

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "test" and not allow_test:
        raise ValueError("the test split is reserved for independent evaluation; pass allow_test=True only there")
    with zipfile.ZipFile(fetch(cache)) as zf:
        names = sorted(n for n in zf.namelist() if f"/{split}-data/" in n and "/images/" in n and n.endswith(".tif"))
        for name in names:
            mask_name = name.replace("/images/", "/nucleus_masks/")[: -len(".tif")] + ".png"
            image = tifffile.imread(io.BytesIO(zf.read(name)))
            labels = decode_color_labels(iio.imread(zf.read(mask_name)))
            set_name, stem = name.split("/")[-3], Path(name).stem
            if micronuclei:
                mn_name = name.replace("/images/", "/mn_masks/")[: -len(".tif")] + ".png"
                yield f"{set_name}/{stem}", image, labels, decode_color_labels(iio.imread(zf.read(mn_name)))
            else:
                yield f"{set_name}/{stem}", image, labels


def write_sample_data(out: Path = ROOT / "napari_unet" / "sample_data") -> None:
    """Write the shipped samples: image and ground-truth labels, compressed TIFF; and the
    micronuclei mnfinder annotates on them (``mn_masks``), as labels of their own."""
    wanted = {f"{s}/{i}": stem for (_, s, i), stem in SAMPLES.items()}
    for name, image, labels in iter_split("training"):
        if name in wanted:
            stem = wanted[name]
            write_tiff(out / f"{stem}.tif", image)
            write_tiff(out / f"{stem}_labels.tif", labels, labels=True)
            print(f"{stem}: {image.shape} {image.dtype}, {labels.max()} nuclei")
    write_sample_micronuclei(out)


def write_sample_micronuclei(out: Path = ROOT / "napari_unet" / "sample_data") -> None:
    """``<stem>_micronuclei.tif``: mnfinder's micronucleus masks of the shipped samples, one
    id per micronucleus (the tests check that the shipped model does not count them)."""
    import imageio.v3 as iio

    with zipfile.ZipFile(fetch()) as zf:
        for (split, set_name, stem_in), stem in SAMPLES.items():
            mask = decode_color_labels(iio.imread(zf.read(f"mnfinder/{split}-data/{set_name}/mn_masks/{stem_in}.png")))
            write_tiff(out / f"{stem}_micronuclei.tif", mask, labels=True)
            print(f"{stem}: {mask.max()} micronuclei")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "sample-data"])
    args = parser.parse_args()
    if args.command == "fetch":
        print(fetch())
    else:
        write_sample_data()


if __name__ == "__main__":
    main()
