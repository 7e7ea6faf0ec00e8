"""``count --seed-threshold`` / ``--boundary-threshold``: how readily touching objects are
parted, from the command line, on a probability map whose seeds are known in advance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_unet.cli import main
from napari_unet.io import write_tiff


def two_touching_nuclei(size: int = 64, radius: float = 10.0) -> np.ndarray:
    """The shipped model's outputs (foreground, distance, micronuclei) for two discs 16 px
    apart: each disc's distance to its edge over its radius, 1 at its centre; 0.2 where they meet."""
    yy, xx = np.mgrid[:size, :size]
    dist = np.zeros((size, size), np.float32)
    for cx in (24, 40):
        d = np.hypot(yy - 32, xx - cx)
        dist = np.maximum(dist, np.clip((radius - d) / radius, 0, 1))
    fg = (dist > 0).astype(np.float32)
    return np.stack([fg, dist, np.zeros_like(fg)])


def _count(tmp_path, *options: str) -> tuple[int, pd.DataFrame | None]:
    prob = tmp_path / "pair_prob.tif"
    write_tiff(prob, two_touching_nuclei(), axes="CYX")
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    code = main(["count", str(prob), "--out", str(out), "--input-kind", "probability", *options])
    tables = list(out.glob("*_objects.csv"))
    return code, pd.read_csv(tables[0]) if tables else None


@pytest.mark.parametrize(("threshold", "objects"), [("0.1", 1), ("0.5", 2), ("0.8", 2), ("0.95", 1)])
def test_the_seed_threshold_parts_touching_nuclei_where_the_distance_dips_below_it(tmp_path, threshold, objects):
    # where the discs meet the distance is 0.2: seeds above 0.1 join there, above 0.5 they do not;
    # above 0.95 each seed is a speck under 4 px, dropped, and the pair is one seedless component
    code, table = _count(tmp_path, "--seed-threshold", threshold)
    assert code == 0
    assert len(table) == objects
    assert table["area"].sum() == pytest.approx((two_touching_nuclei()[0] > 0).sum())  # the same pixels, parted


def test_without_it_the_models_own_seed_threshold_is_used(tmp_path):
    code, table = _count(tmp_path)
    assert code == 0 and len(table) == 2  # the shipped card's 0.5


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--seed-threshold", "1.5"), "seed_threshold must be between 0 and 1"),
        (("--seed-threshold", "0"), "seed_threshold must be between 0 and 1"),
        (("--seed-threshold", "nan"), "finite"),
        (("--boundary-threshold", "0.3"), "has the outputs foreground, distance, micronuclei; give --seed-threshold"),
    ],
)
def test_a_bad_or_misplaced_seed_setting_is_one_line_without_a_traceback(tmp_path, capsys, options, words):
    code, table = _count(tmp_path, *options)
    err = capsys.readouterr().err
    assert code != 0 and table is None
    assert words in err and "Traceback" not in err


def test_a_mask_is_parted_by_its_shape_and_says_the_seed_setting_does_not_apply(tmp_path, capsys):
    write_tiff(tmp_path / "pair_mask.tif", (two_touching_nuclei()[0] > 0).astype(np.uint8))
    out = tmp_path / "o"
    assert main(["count", str(tmp_path / "pair_mask.tif"), "--out", str(out), "--seed-threshold", "0.7"]) == 0
    err = capsys.readouterr().err
    assert "--seed-threshold sets the seeds in a model's output; this mask is parted by its shape" in err
    assert len(pd.read_csv(next(out.glob("*_objects.csv")))) == 2
