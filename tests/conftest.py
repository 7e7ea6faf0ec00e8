from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet._sample_data import sample_paths


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def stack_path(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A 5-slice ImageJ stack with 0.5 um pixels and a 2 um Z step."""
    path = tmp_path / "stack.tif"
    data = rng.integers(0, 4000, (5, 40, 50), dtype=np.uint16)
    tifffile.imwrite(
        path, data, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"}
    )
    return path


@pytest.fixture
def bad_files(tmp_path: Path, stack_path: Path) -> dict[str, Path]:
    """The corpus of files a user may hand us that are not usable images, by name."""
    files: dict[str, Path] = {}
    files["not_tiff"] = tmp_path / "notes.tif"
    files["not_tiff"].write_text("this is a lab notebook, not an image\n" * 20)
    files["empty"] = tmp_path / "empty.tif"
    files["empty"].write_bytes(b"")
    compressed = tmp_path / "compressed.tif"
    tifffile.imwrite(
        compressed,
        np.random.default_rng(1).integers(0, 60000, (4, 64, 64), dtype=np.uint16),
        compression="zlib",
        photometric="minisblack",
    )
    raw = compressed.read_bytes()
    files["truncated"] = tmp_path / "truncated.tif"
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    files["ragged"] = tmp_path / "ragged.tif"
    tifffile.imwrite(files["ragged"], np.zeros((8, 8), np.uint8))
    tifffile.imwrite(files["ragged"], np.zeros((9, 7), np.uint8), append=True)
    files["complex"] = tmp_path / "complex.tif"
    tifffile.imwrite(files["complex"], np.zeros((8, 8), np.complex64))
    files["bool"] = tmp_path / "bool.tif"
    tifffile.imwrite(files["bool"], np.zeros((8, 8), bool))
    files["missing"] = tmp_path / "missing.tif"
    files["directory"] = tmp_path / "folder.tif"
    files["directory"].mkdir()
    files["bad_png"] = tmp_path / "broken.png"
    files["bad_png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    return files


#: The words each bad file's message must contain, so a user knows what is wrong.
BAD_FILE_MESSAGES = {
    "not_tiff": "not a valid TIFF",
    "empty": "empty (0 bytes)",
    "truncated": "truncated or corrupt",
    "ragged": "differ in shape",
    "complex": "complex64 is not supported",
    "bool": "bool is not supported",
    "missing": "no such file",
    "directory": "is a folder",
    "bad_png": "not a readable PNG",
}


@pytest.fixture
def unreadable(tmp_path: Path, stack_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file without read permission. Root reads everything, so there we make access() say no."""
    path = tmp_path / "locked.tif"
    path.write_bytes(stack_path.read_bytes())
    path.chmod(0)
    if os.geteuid() == 0:
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode, **kw: False if Path(p) == path else real_access(p, mode, **kw)
        )
    yield path
    path.chmod(0o644)


@pytest.fixture
def sample_image_path() -> Path:
    return sample_paths("misc")[0]


def synthetic_nuclei(rng: np.random.Generator, shape=(96, 96), n=12, radius=(5, 9)):
    """Blurred bright discs on a noisy background, some touching; exact instance labels."""
    from scipy import ndimage as ndi

    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    k = 0
    for _ in range(n * 4):
        if k == n:
            break
        r = rng.uniform(*radius)
        cy, cx = rng.uniform(r, shape[0] - r), rng.uniform(r, shape[1] - r)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        if (labels[disc] > 0).mean() > 0.1:
            continue
        k += 1
        labels[disc & (labels == 0)] = k
    image = ndi.gaussian_filter((labels > 0).astype(np.float32) * 800, 1.0) + 100
    image = image + rng.normal(0, 25, shape)
    return image.astype(np.uint16), labels


def bright_region_model(name: str = "regions"):
    """A two-class region model whose weights are set by hand, not trained: a pixel is
    ``lesion`` where the scaled image is above 0.5 (one path of single taps through the
    U-Net, the rest zero), so its regions are known in advance."""
    import torch

    from napari_unet.networks.model import ModelCard, build_model

    card = ModelCard(name, classes=("background", "lesion"), activation="softmax", arch_args={"features": [4, 8]},
                     tile=64)  # fmt: skip
    net = build_model(card)
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1.0)
        net.down[0][0].weight[0, 0, 1, 1] = 1.0
        net.down[0][3].weight[0, 0, 1, 1] = 1.0
        skip = net.dec[0][0].weight.shape[1] // 2  # the decoder's input: [upsampled, skip]
        net.dec[0][0].weight[0, skip, 1, 1] = 1.0
        net.dec[0][3].weight[0, 0, 1, 1] = 1.0
        net.head.weight[1, 0, 0, 0] = 20.0
        net.head.bias[1] = -10.0
    return net.eval(), card


@pytest.fixture
def nuclei(rng):
    return synthetic_nuclei(rng)


_FIGURES: list[str] = []


@pytest.fixture
def report():
    """Figures a test measured (never asserted): printed at the end of the run."""
    return _FIGURES.append


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Keep the fault handler on through the interpreter's exit (pytest turns its own off at
    this point), so that a crash after the last test names the code it happened in."""
    import faulthandler
    import gc
    import sys

    gc.collect()
    faulthandler.enable(file=sys.__stderr__, all_threads=True)


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("napari-unet figures measured by the tests (reported, not asserted)")
        for line in _FIGURES:
            terminalreporter.write_line(line)


def traced_peak(call):
    """``(call(), the peak of Python's allocations while it ran, in bytes)``."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
