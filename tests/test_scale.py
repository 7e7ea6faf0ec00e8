"""Scale-out: the out-of-core engine equals the in-memory one; folders on a local dask cluster."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from napari_unet.cli import main
from napari_unet.engine.predict import predict
from napari_unet.engine.scale import predict_lazy, predict_to_zarr, run_files
from napari_unet.io import read_image, write_tiff
from napari_unet.networks.model import ModelCard, build_model, load_model, save_model
from tests.conftest import synthetic_nuclei


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    torch.manual_seed(0)
    card = ModelCard("tiny", "unet", {"features": (4, 8, 16)}, classes=("foreground", "boundary"), tile=64)
    return save_model(build_model(card), tmp_path_factory.mktemp("models") / "tiny")


@pytest.mark.parametrize(("shape", "block"), [((2, 300, 350), 100), ((130, 97), 64), ((1, 40, 50), 512)])
def test_out_of_core_equals_in_memory(tiny_path, shape, block):
    import dask
    import dask.array as da

    image = (np.random.default_rng(1).random(shape) * 3000).astype(np.uint16)
    ref = predict(load_model(tiny_path), image, device="cpu", precision="fp32")
    lazy = predict_lazy(
        da.from_array(image, chunks=(1, 64, 64)[-image.ndim :]), str(tiny_path), block=block, precision="fp32"
    )
    if max(shape[-2:]) >= 2 * block:
        assert lazy.numblocks[-2] * lazy.numblocks[-1] > 1  # really split into blocks
    with dask.config.set(scheduler="threads"):
        out = lazy.compute()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4


def test_out_of_core_takes_a_model_object_that_is_in_no_file(tiny_path):
    """A freshly fine-tuned model lives only in memory: the lazy path takes it as it is."""
    import dask
    import dask.array as da

    model = load_model(tiny_path)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # now differs from the file
    image = (np.random.default_rng(3).random((1, 150, 170)) * 3000).astype(np.uint16)
    ref = predict(model, image, device="cpu", precision="fp32")
    with dask.config.set(scheduler="threads"):
        out = predict_lazy(da.from_array(image, chunks=(1, 64, 64)), model, block=64, precision="fp32").compute()
    assert np.abs(out - ref).max() <= 1e-4
    from_file = predict(load_model(tiny_path), image, device="cpu", precision="fp32")
    assert np.abs(from_file - ref).max() > 1e-3  # the comparison can tell the two models apart


@pytest.mark.parametrize(
    ("shape", "block", "tile", "overlap"), [((1, 101, 77), 40, 32, 0.25), ((2, 67, 130), 48, 16, 0.6)]
)
def test_both_engines_stitch_a_pointwise_predictor_exactly(shape, block, tile, overlap):
    """The in-memory and the block engine share one grid: 2 * x comes back exactly, odd shapes too."""
    from napari_unet.engine.scale import _block_predict
    from napari_unet.engine.tiling import Grid

    image = np.random.default_rng(5).random(shape).astype(np.float32)
    mem = tiled_predict_iter_result(image, tile, overlap)
    np.testing.assert_allclose(mem[0], 2 * image, rtol=1e-6, atol=1e-6)
    h, w = shape[-2:]
    grid = Grid.for_shape((h, w), tile=tile, overlap=overlap, divisor=8)
    depth = max(grid.tile)
    cy = [block] * (h // block) + ([h % block] if h % block else [])
    cx = [block] * (w // block) + ([w % block] if w % block else [])
    starts = (list(np.cumsum((0, *cy))), list(np.cumsum((0, *cx))))
    limits = np.array([[[0.0, 1.0]]] * shape[0])
    out = np.zeros((1, *shape), np.float32)
    for z in range(shape[0]):
        for i in range(len(cy)):
            for j in range(len(cx)):
                y0, x0 = max(0, starts[0][i] - depth), max(0, starts[1][j] - depth)
                y1, x1 = min(h, starts[0][i + 1] + depth), min(w, starts[1][j + 1] + depth)
                window = image[z, y0:y1, x0:x1][None, None]
                block_out = _block_predict(window, predictor=lambda x: 2 * x, grid=grid, limits=limits, starts=starts,
                                           out_channels=1, batch_size=3, depth=depth, block_id=(0, z, i, j))  # fmt: skip
                out[:, z, starts[0][i] : starts[0][i + 1], starts[1][j] : starts[1][j + 1]] = block_out[:, 0]
    np.testing.assert_allclose(out[0], 2 * image, rtol=1e-6, atol=1e-6)


def tiled_predict_iter_result(image, tile, overlap):
    from napari_unet.engine.tiling import tiled_predict_iter
    from napari_unet.jobs import run_to_end

    return run_to_end(
        tiled_predict_iter(
            image, lambda x: 2 * x, out_channels=1, axes="ZYX", tile=tile, overlap=overlap, size_divisor=8, batch_size=3
        )
    )


def test_lazy_tiff_to_zarr(tiny_path, tmp_path):
    image = (np.random.default_rng(2).random((3, 200, 260)) * 3000).astype(np.uint16)
    write_tiff(tmp_path / "big.tif", image)
    img = read_image(tmp_path / "big.tif", lazy=True)
    z = predict_to_zarr(img.data, tmp_path / "prob.zarr", str(tiny_path), block=96, precision="fp32")
    ref = predict(load_model(tiny_path), image, device="cpu", precision="fp32")
    assert np.abs(np.asarray(z) - ref).max() <= 1e-4


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(4)
    d = tmp_path / "in"
    d.mkdir()
    for i, shape in enumerate([(80, 90), (64, 64), (100, 70)]):  # mixed sizes
        img, _ = synthetic_nuclei(rng, shape, 6)
        write_tiff(d / f"img{i}.tif", img if i != 1 else img.astype(np.float32))  # and mixed dtypes
    (d / "broken.tif").write_bytes(b"II*\x00 not really")
    return d


def run_cli(*args):
    return main([str(a) for a in args])


def test_local_cluster_gives_the_same_outputs_as_one_process(folder, tmp_path, tiny_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--model", tiny_path, "--device", "cpu", "--precision", "fp32"]
    assert run_cli("predict", folder, "--out", one, *common) == 1  # broken.tif fails, the rest finish
    assert run_cli("predict", folder, "--out", two, *common, "--workers", 2) == 1
    err = capsys.readouterr().err
    assert "broken.tif" in err and "1 of 4 file(s) failed" in err
    for name in ("img0", "img1", "img2"):
        a, b = read_image(one / f"{name}_prob.tif").data, read_image(two / f"{name}_prob.tif").data
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_array_equal(
            read_image(one / f"{name}_mask.tif").data, read_image(two / f"{name}_mask.tif").data
        )


def test_count_on_a_local_cluster(folder, tmp_path, tiny_path):
    import pandas as pd

    out1, out2 = tmp_path / "c1", tmp_path / "c2"
    for f in folder.glob("broken*"):
        f.unlink()
    common = ["--model", tiny_path, "--device", "cpu", "--min-area", 0]
    assert run_cli("count", folder, "--out", out1, *common) == 0
    assert run_cli("count", folder, "--out", out2, *common, "--workers", 2) == 0
    a, b = pd.read_csv(out1 / "counts.csv"), pd.read_csv(out2 / "counts.csv")
    pd.testing.assert_frame_equal(a, b)
    assert list(a["file"]) == ["img0", "img1", "img2"]


def test_rerun_skips_finished_outputs_unless_overwrite(folder, tmp_path, tiny_path, capsys):
    out = tmp_path / "o"
    common = ["--model", tiny_path, "--device", "cpu"]
    run_cli("predict", folder / "img0.tif", "--out", out, *common)
    before = (out / "img0_prob.tif").stat().st_mtime_ns
    capsys.readouterr()
    assert run_cli("predict", folder / "img0.tif", "--out", out, *common) == 0
    assert "skipped, outputs exist" in capsys.readouterr().out
    assert (out / "img0_prob.tif").stat().st_mtime_ns == before
    assert run_cli("predict", folder / "img0.tif", "--out", out, *common, "--overwrite") == 0
    assert (out / "img0_prob.tif").stat().st_mtime_ns != before


def test_unreachable_scheduler_fails_fast(folder, tmp_path, tiny_path, capsys):
    t = time.perf_counter()
    code = run_cli(
        "predict",
        folder / "img0.tif",
        "--out",
        tmp_path / "o",
        "--model",
        tiny_path,
        "--scheduler",
        "tcp://127.0.0.1:1",
    )
    assert code == 1 and time.perf_counter() - t < 30
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:1" in capsys.readouterr().err


def test_run_files_reports_each_failure():
    def fn(path):
        if "bad" in path:
            raise ValueError(f"{path}: cannot read it")
        return [path + ".out"]

    results = run_files(fn, ["a", "bad", "c"])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].message == "bad: cannot read it"


def test_block_sizes():
    from napari_unet.engine.scale import _chunks

    assert _chunks(350, 100, 64) == (100, 100, 150)
    assert _chunks(130, 64, 64) == (64, 66)
    assert _chunks(97, 64, 64) == (97,)
    assert _chunks(300, 100, 64) == (100, 100, 100)


def die_in_victims(path, marker_dir=None):
    """A task that kills its worker process on files named 'victim*' (once when marker_dir is given)."""
    import os
    from pathlib import Path

    if "victim" in Path(path).name:
        marker = Path(marker_dir) / f"{Path(path).name}.died" if marker_dir else None
        if marker is None or not marker.exists():
            if marker is not None:
                marker.touch()
            os._exit(1)  # as a worker killed by the OOM killer or a node that goes away
    return [f"{path}.out"]


def test_a_worker_that_dies_mid_run_is_replaced_and_the_run_completes(tmp_path):
    paths = ["a.tif", "victim.tif", "c.tif", "d.tif"]
    results = run_files(die_in_victims, paths, workers=2, marker_dir=str(tmp_path))
    assert (tmp_path / "victim.tif.died").exists()  # the worker really died once
    assert [r.ok for r in results] == [True] * 4
    assert results[1].outputs == ["victim.tif.out"]


def test_a_file_that_kills_every_worker_is_reported_and_the_others_finish():
    results = run_files(die_in_victims, ["a.tif", "victim.tif", "c.tif"], workers=2)
    assert [r.ok for r in results] == [True, False, True]
    assert "failed on the cluster" in results[1].message and "KilledWorker" in results[1].message


def test_huge_inputs_become_calibrated_ome_zarr_that_count_reads(tmp_path, tiny_path, capsys):
    from ome_zarr_models import open_ome_zarr

    from napari_unet.io import read_image

    image = (np.random.default_rng(3).random((2, 150, 170)) * 3000).astype(np.uint16)
    write_tiff(tmp_path / "stack.tif", image, scale=(2.0, 0.5, 0.5), units="um")
    out = tmp_path / "out"
    # any file above 1 kB counts as "larger than memory" here
    assert run_cli("predict", tmp_path / "stack.tif", "--out", out, "--model", tiny_path, "--lazy-gb", 1e-6,
                   "--block", 96, "--precision", "fp32") == 0  # fmt: skip
    shown = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # (hidden: the run records)
    assert shown == ["stack_mask.zarr", "stack_prob.zarr"]  # no .partial left
    for name, axes in (("stack_prob.zarr", "czyx"), ("stack_mask.zarr", "zyx")):
        ms = open_ome_zarr(out / name).ome_attributes.multiscales[0]  # valid OME-NGFF, or this raises
        assert "".join(a.name for a in ms.axes) == axes
        assert ms.datasets[0].coordinateTransformations[0].scale[-3:] == [2.0, 0.5, 0.5]
        assert ms.axes[-1].unit == "micrometer"
    prob = read_image(out / "stack_prob.zarr")
    assert prob.lazy and prob.axes == "CZYX" and prob.scale == (2.0, 0.5, 0.5)
    # the same run in memory (through the same segment_iter and its tile choice)
    assert run_cli("predict", tmp_path / "stack.tif", "--out", tmp_path / "mem", "--model", tiny_path,
                   "--precision", "fp32") == 0  # fmt: skip
    ref = read_image(tmp_path / "mem" / "stack_prob.tif").data
    assert np.abs(prob.data.compute() - ref).max() <= 1e-6
    mask = np.asarray(read_image(out / "stack_mask.zarr").data)
    np.testing.assert_array_equal(mask, read_image(tmp_path / "mem" / "stack_mask.tif").data)
    # the store is an input like any file: count it
    assert run_cli("count", out / "stack_prob.zarr", "--out", tmp_path / "counts", "--model", tiny_path) == 0
    assert (tmp_path / "counts" / "stack_prob_objects.csv").exists()
    capsys.readouterr()
    assert run_cli("count", out / "stack_mask.zarr", "--out", tmp_path / "counts") == 0
    assert "counting it as mask (its name ends in _mask" in capsys.readouterr().out


def test_an_interrupted_zarr_write_leaves_the_old_result_and_no_finished_looking_store(tmp_path):
    import dask.array as da

    from napari_unet.io.ome_zarr import read_ome_zarr, write_ome_zarr

    path = write_ome_zarr(tmp_path / "r.zarr", np.ones((64, 64), np.float32), axes="YX")

    def fail(block):
        raise OSError("No space left on device")

    broken = da.zeros((64, 64), np.float32, chunks=32).map_blocks(fail, dtype=np.float32)
    with pytest.raises(OSError, match="No space left"):
        write_ome_zarr(path, broken, axes="YX")
    assert read_ome_zarr(path).data.compute().min() == 1  # the old result, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr"]  # no half-written store beside it


def test_zarr_bad_inputs(tmp_path):
    import zarr

    from napari_unet.io import ImageReadError, read_image
    from napari_unet.io.ome_zarr import write_ome_zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w").create_array("0", shape=(4, 4), dtype="u1")
    with pytest.raises(ImageReadError, match="without OME-Zarr 'multiscales' metadata"):
        read_image(tmp_path / "plain.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ImageReadError, match=r"empty\.zarr: not a zarr store"):
        read_image(tmp_path / "empty.zarr")
    with pytest.raises(ValueError, match="must be in the order TCZYX"):
        write_ome_zarr(tmp_path / "x.zarr", np.zeros((2, 4, 4)), axes="ZCY")
