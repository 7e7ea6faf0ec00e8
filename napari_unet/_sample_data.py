"""npe2 sample data: real nuclei images from mnfinder's training split with hand-drawn
masks, and a lung CT stack (Hounsfield units) with its lesion mask from pyradiomics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAMPLE_DIR = Path(__file__).parent / "sample_data"

#: key -> (file stem, description) of each shipped sample.
SAMPLES = {
    "rpe1": ("rpe1_2022-05-25_1", "RPE1 nuclei (H2B), 768x869 uint16"),
    "u2os": ("u2os_2022-10-14_5", "U2OS nuclei (DAPI), 768x869 uint16"),
    "misc": ("misc_2023-05-31_2", "Mixed nuclei, 512x512 uint8"),
    "ct": ("ct_lung1", "Lung CT, 12x512x512 int16 HU, lesion on slices 5-7"),
}

#: the fluorescence nuclei samples (what the shipped nuclei model was made for)
NUCLEI_SAMPLES = ("rpe1", "u2os", "misc")

#: contrast limits that show a sample as a reader expects (a CT in the lung window)
CONTRAST = {"ct": (-1350.0, 150.0)}


def sample_paths(key: str) -> tuple[Path, Path]:
    """Image and ground-truth label paths of a shipped sample."""
    if key not in SAMPLES:
        raise ValueError(f"unknown sample {key!r}; choose one of {', '.join(SAMPLES)}")
    stem = SAMPLES[key][0]
    return SAMPLE_DIR / f"{stem}.tif", SAMPLE_DIR / f"{stem}_labels.tif"


def load_sample(key: str) -> list[tuple[Any, dict, str]]:
    """Layer data for a sample: the image and its hand-drawn instance labels."""
    from napari_unet.io import read_image

    image_path, labels_path = sample_paths(key)
    image, labels = read_image(image_path), read_image(labels_path)
    shown = {"contrast_limits": CONTRAST[key]} if key in CONTRAST else {}
    return [
        (image.data, {"name": image.name, "scale": image.scale, **shown}, "image"),
        (labels.data, {"name": f"{image.name} ground truth", "scale": labels.scale, "opacity": 0.5}, "labels"),
    ]


def rpe1() -> list[tuple[Any, dict, str]]:
    return load_sample("rpe1")


def u2os() -> list[tuple[Any, dict, str]]:
    return load_sample("u2os")


def misc() -> list[tuple[Any, dict, str]]:
    return load_sample("misc")


def ct() -> list[tuple[Any, dict, str]]:
    return load_sample("ct")
