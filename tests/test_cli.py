from __future__ import annotations

import subprocess
import sys
import time

import pytest

from napari_unet.cli import main
from tests.conftest import BAD_FILE_MESSAGES


def test_info_describes_a_stack(stack_path, capsys):
    assert main(["info", str(stack_path)]) == 0
    out = capsys.readouterr().out
    assert "ZYX (5, 40, 50) uint16" in out and "Z=2 micrometer" in out


@pytest.mark.parametrize("name", sorted(BAD_FILE_MESSAGES))
def test_info_bad_file_is_one_error_line(bad_files, name, capsys):
    assert main(["info", str(bad_files[name])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-unet: error: ")
    assert str(bad_files[name]) in err[0] and BAD_FILE_MESSAGES[name] in err[0]


def test_info_good_and_bad_files_together(bad_files, stack_path, capsys):
    assert main(["info", str(stack_path), str(bad_files["empty"])]) == 1
    captured = capsys.readouterr()
    assert "stack.tif" in captured.out and "empty.tif" in captured.err


def test_console_script_runs_without_traceback(bad_files):
    result = subprocess.run(
        [sys.executable, "-m", "napari_unet.cli", "info", str(bad_files["truncated"])],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "truncated or corrupt" in result.stderr


def test_importing_the_package_stays_light():
    code = (
        "import sys, napari_unet, napari_unet.io, napari_unet.cli, napari_unet.exchange, napari_unet.networks.model, "
        "napari_unet._reader, napari_unet._writer, napari_unet.io.formats, napari_unet.io.dicom, napari_unet.io.nifti; "
        "print(sorted(m for m in ('torch', 'napari', 'qtpy', 'dask', 'monai', 'bioimageio', 'onnx', 'onnxruntime', "
        "'pydicom', 'nibabel', 'highdicom') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_core_never_loads_the_gui():
    """Every module outside _widgets (CLI included) imports, and the core runs, without napari/Qt."""
    code = """
import importlib, pkgutil, sys, tempfile, numpy as np
import napari_unet
names = [m.name for m in pkgutil.walk_packages(napari_unet.__path__, "napari_unet.") if "_widgets" not in m.name and not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
from napari_unet.objects.count import contours, measure
from napari_unet.objects.instances import split_mask
from napari_unet.io.ome_zarr import write_ome_zarr
labels = split_mask(np.pad(np.ones((20, 30), bool), 5))
measure(labels), contours(labels)
write_ome_zarr(tempfile.mkdtemp() + "/x.zarr", labels, axes="YX")
print(len(names), sorted(m for m in ("napari", "qtpy", "magicgui", "PyQt6", "vispy") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(
        maxsplit=1
    )
    assert int(out[0]) > 20 and out[1].strip() == "[]"


# --------------------------------------------------------------------------- predict, count, evaluate, train

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from napari_unet.io import read_image, write_tiff  # noqa: E402
from tests.conftest import synthetic_nuclei  # noqa: E402


@pytest.fixture
def tiny_model_file(tmp_path):
    import torch

    from napari_unet.networks.model import ModelCard, build_model, save_model

    torch.manual_seed(0)
    card = ModelCard("tiny", "unet", {"features": (4, 8, 16)}, classes=("foreground", "boundary"), tile=64)
    return save_model(build_model(card), tmp_path / "models" / "tiny")


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(2):
        img, lab = synthetic_nuclei(rng, (80, 90), 8)
        write_tiff(folder / f"cells{i}.tif", img, scale=(0.5, 0.5), units="um")
        write_tiff(tmp_path / f"cells{i}_labels.tif", lab, labels=True)
    return folder


def test_predict_writes_prob_and_mask_with_pixel_size(image_dir, tmp_path, tiny_model_file, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(image_dir),
                "--out",
                str(out),
                "--model",
                str(tiny_model_file),
                "--device",
                "cpu",
                "--tile",
                "64",
            ]
        )
        == 0
    )
    prob, mask = read_image(out / "cells0_prob.tif"), read_image(out / "cells0_mask.tif")
    assert prob.axes == "CYX" and prob.shape == (2, 80, 90) and prob.data.dtype == np.float32
    assert mask.is_labels and mask.shape == (80, 90) and mask.scale == (0.5, 0.5)


def test_predict_with_test_time_augmentation(image_dir, tmp_path, tiny_model_file):
    plain, tta = tmp_path / "plain", tmp_path / "tta"
    common = [str(image_dir), "--model", str(tiny_model_file), "--device", "cpu", "--precision", "fp32"]
    assert main(["predict", *common, "--out", str(plain)]) == 0
    assert main(["predict", *common, "--out", str(tta), "--tta"]) == 0
    a, b = (read_image(folder / "cells0_prob.tif").data for folder in (plain, tta))
    assert a.shape == b.shape == (2, 80, 90) and np.abs(a - b).max() > 1e-4  # the 8 views changed it


def test_predict_bad_inputs(tmp_path, bad_files, tiny_model_file, capsys):
    assert (
        main(["predict", str(bad_files["empty"]), "--out", str(tmp_path / "o"), "--model", str(tiny_model_file)]) == 1
    )
    assert "empty (0 bytes)" in capsys.readouterr().err
    assert main(["predict", str(bad_files["empty"]), "--out", str(tmp_path / "o"), "--model", "no_such_model"]) == 1
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
    rgb = tmp_path / "rgb.png"
    import imageio.v3 as iio

    iio.imwrite(rgb, np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    assert (
        main(["predict", str(rgb), "--out", str(tmp_path / "o"), "--model", str(tiny_model_file), "--device", "cpu"])
        == 1
    )
    assert "convert the image to grayscale" in capsys.readouterr().err
    if not __import__("torch").cuda.is_available():
        assert (
            main(
                ["predict", str(rgb), "--out", str(tmp_path / "o"), "--model", str(tiny_model_file), "--device", "cuda"]
            )
            == 1
        )
        assert "no CUDA GPU is available" in capsys.readouterr().err


def test_count_a_mask_and_labels(tmp_path, capsys):
    mask = np.zeros((40, 60), np.uint8)
    yy, xx = np.mgrid[:40, :60]
    mask[((yy - 20) ** 2 + (xx - 18) ** 2 <= 100) | ((yy - 20) ** 2 + (xx - 37) ** 2 <= 100)] = 255
    write_tiff(tmp_path / "two_mask.tif", mask, scale=(0.25, 0.25), units="um")
    out = tmp_path / "counted"
    assert main(["count", str(tmp_path / "two_mask.tif"), "--out", str(out)]) == 0
    assert "as mask" in capsys.readouterr().out
    objects = pd.read_csv(out / "two_mask_objects.csv")
    assert len(objects) == 2 and objects["unit"][0] == "um"
    assert objects["area"].sum() == pytest.approx((mask > 0).sum() * 0.0625)
    counts = pd.read_csv(out / "counts.csv")
    assert counts["count"].tolist() == [2]
    assert read_image(out / "two_mask_labels.tif").data.max() == 2


def test_count_an_image_predicts_first(image_dir, tmp_path, tiny_model_file, capsys):
    out = tmp_path / "c"
    code = main(
        [
            "count",
            str(image_dir / "cells0.tif"),
            "--out",
            str(out),
            "--model",
            str(tiny_model_file),
            "--device",
            "cpu",
            "--min-area",
            "0",
        ]
    )
    assert code == 0 and "as image" in capsys.readouterr().out
    assert (out / "cells0_objects.csv").exists() and (out / "counts.csv").exists()
    assert list(pd.read_csv(out / "cells0_objects.csv").columns)[:3] == ["file", "id", "slice"]


def test_count_with_the_shipped_model_counts_micronuclei_per_nucleus(tmp_path, capsys):
    """The README's command: each nucleus gets its micronuclei, each image their total
    (those near no nucleus included), and the run's counts.csv keeps the column."""
    from napari_unet._sample_data import sample_paths

    image = sample_paths("u2os")[0]
    out = tmp_path / "c"
    assert main(["count", str(image), "--out", str(out), "--device", "cpu"]) == 0
    objects = pd.read_csv(out / f"{image.stem}_objects.csv")
    per_image = pd.read_csv(out / f"{image.stem}_counts.csv")
    run = pd.read_csv(out / "counts.csv")
    assert list(objects.columns)[-2:] == ["micronuclei", "unit"]
    total = int(per_image["micronuclei"].iloc[0])
    assert 40 <= total <= 140  # mnfinder drew 83 on this image
    assert 0.7 * total <= objects["micronuclei"].sum() <= total
    assert int(run["micronuclei"].iloc[0]) == total and int(run["count"].iloc[0]) == len(objects)


def test_count_bad_area_range(tmp_path, capsys):
    write_tiff(tmp_path / "m_mask.tif", np.ones((10, 10), np.uint8))
    assert (
        main(
            ["count", str(tmp_path / "m_mask.tif"), "--out", str(tmp_path / "o"), "--min-area", "50", "--max-area", "5"]
        )
        == 1
    )
    assert "larger than max_area" in capsys.readouterr().err


def test_evaluate_matches_files_by_stem(tmp_path, capsys):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir(), pred.mkdir()
    lab = np.zeros((20, 20), np.uint8)
    lab[2:8, 2:8], lab[10:16, 10:16] = 1, 2
    write_tiff(truth / "a.tif", lab, labels=True)
    write_tiff(pred / "a_labels.tif", np.where(lab == 2, 0, lab), labels=True)
    write_tiff(pred / "orphan_labels.tif", lab, labels=True)
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth)]) == 1  # the orphan has no truth
    captured = capsys.readouterr()
    assert "orphan" in captured.err and "no ground truth" in captured.err
    assert "0.667" in captured.out  # F1 of 1 found out of 2


def test_train_from_the_cli(image_dir, tmp_path, tiny_model_file, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(tmp_path / "registry"))
    images = [str(image_dir / "cells0.tif"), str(image_dir / "cells1.tif")]
    labels = [str(tmp_path / "cells0_labels.tif"), str(tmp_path / "cells1_labels.tif")]
    code = main(["train", "--images", *images, "--labels", *labels, "--base", str(tiny_model_file), "--out", "my-model",
                 "--epochs", "1", "--device", "cpu"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "held-out" in out and (tmp_path / "registry" / "my-model.safetensors").exists()
    from napari_unet.networks.model import load_model

    assert load_model("my-model").card.parent == "tiny"
    assert main(["train", "--images", images[0], "--labels", *labels, "--out", "x"]) == 1
    assert "one label file per image" in capsys.readouterr().err


def test_the_progress_bar_starts_at_the_first_step_so_its_rate_is_real(capsys):
    """tqdm's first tick used to divide by almost no time ("524288.00step/s")."""
    import re

    from napari_unet.cli._base import _drive
    from napari_unet.jobs import Progress

    def steps():
        for k in range(1, 4):  # the first step is done at once, the next ones take 50 ms each
            yield Progress(k, 3, {})
            time.sleep(0.05)
        return "done"

    assert _drive(steps(), "work") == "done"
    rates = [float(r) for r in re.findall(r"([\d.]+)step/s", capsys.readouterr().err)]
    assert all(r < 1000 for r in rates), rates  # steps of 50 ms: about 20 per second, never thousands
