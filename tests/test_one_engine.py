"""One resolution point and one engine (#27): a run is resolved once, and the out-of-core
path goes through the same segment as the in-memory one, so both give the same objects."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile

import napari_unet
from napari_unet.engine.run import resolve_run
from tests.conftest import bright_region_model


@pytest.fixture(scope="module")
def nuclei_model():
    return napari_unet.load_model()


@pytest.fixture(scope="module")
def rpe1():
    from napari_unet._sample_data import sample_paths

    return tifffile.imread(sample_paths("rpe1")[0])[:400, :520]


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the tile chosen per image (one block here)
        {"tile": 128, "block": 200},  # tiles split across blocks, the blocks' margins read
        {"tile": 96, "block": 160, "threshold": 0.7, "min_area": 60, "seed_threshold": 0.6, "precision": "fp32"},
    ],
)
def test_out_of_core_objects_equal_the_in_memory_ones(nuclei_model, rpe1, overrides):
    options = {"device": "cpu", **overrides}
    block = options.pop("block", None)
    memory = napari_unet.segment(nuclei_model, rpe1, **options)
    blocks = napari_unet.segment(nuclei_model, da.from_array(rpe1, chunks=(100, 100)), out_of_core=True, block=block,
                                 **options)  # fmt: skip
    assert memory.settings == blocks.settings  # resolved the same way
    assert memory.labels.max() > 20
    np.testing.assert_array_equal(blocks.labels, memory.labels)
    np.testing.assert_allclose(blocks.probabilities, memory.probabilities, atol=1e-6, rtol=0)


@pytest.mark.parametrize("overrides", [{}, {"tile": 64, "block": 64, "min_area": 30}])
def test_a_region_models_class_map_is_cleaned_the_same_out_of_core(overrides):
    net, _ = bright_region_model()
    rng = np.random.default_rng(4)
    image = (rng.random((2, 150, 170)) * 100).astype(np.float32)
    image[:, 30:80, 40:110] += 400  # a region
    image[:, 120:123, 10:13] += 400  # a speck under min_area: cleaned away in both
    options = {"device": "cpu", **overrides}
    block = options.pop("block", None)
    memory = napari_unet.segment(net, image, **options)
    blocks = napari_unet.segment(net, image, out_of_core=True, block=block, **options)
    assert memory.kind == "semantic" and memory.labels[:, 30:80, 40:110].all()
    assert not memory.labels[:, 120:123, 10:13].any()
    np.testing.assert_array_equal(blocks.labels, memory.labels)


def test_out_of_core_refuses_what_it_cannot_do_in_one_sentence(nuclei_model):
    movie_of_stacks = np.ones((2, 3, 64, 64), np.uint16)
    with pytest.raises(ValueError, match="grayscale YX, ZYX or TYX images, got axes 'TZYX'") as err:
        napari_unet.segment(nuclei_model, movie_of_stacks, out_of_core=True, device="cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="block must be a positive"):
        napari_unet.segment(nuclei_model, np.ones((64, 64)), out_of_core=True, block=0, device="cpu")


def test_the_run_is_resolved_once_and_the_engine_keeps_no_defaults(nuclei_model, rpe1):
    run = resolve_run(nuclei_model, rpe1, device="cpu", precision="fp32")
    s = run.settings
    assert (s.device, s.precision, run.engine, run.axes) == ("cpu", "fp32", "tiles", "YX")
    assert s.tile is not None and s.overlap is not None and s.batch is not None
    assert resolve_run(nuclei_model, rpe1, device="cpu", out_of_core=True).engine == "blocks"
    # what segment used is what resolve_run decided
    assert napari_unet.segment(nuclei_model, rpe1, device="cpu", precision="fp32", objects=False).settings == s


def test_one_cli_count_resolves_the_device_and_precision_once(tmp_path, monkeypatch, rpe1):
    """The count command picked the device twice (three times with --device) and the precision twice."""
    from napari_unet.cli import main
    from napari_unet.engine import inference

    calls = {"pick_device": 0, "resolve_precision": 0}
    for name in calls:
        real = getattr(inference, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(inference, name, counted)
    tifffile.imwrite(tmp_path / "cells.tif", rpe1)
    assert main(["count", str(tmp_path / "cells.tif"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "cells_objects.csv").exists()
    assert calls == {"pick_device": 1, "resolve_precision": 1}
    # a device named on the command line is checked before any file is read, and resolved once
    calls.update(pick_device=0, resolve_precision=0)
    assert main(["count", str(tmp_path / "cells.tif"), "--out", str(tmp_path / "cpu"), "--device", "cpu"]) == 0
    assert calls == {"pick_device": 1, "resolve_precision": 1}
