"""Faults found under bad input, full disks and kills (issue: nothing lost, nothing silent).

Where a real fault cannot be made in a test, it is imitated and the test says how: a full
disk is a monkeypatched write that stops halfway and raises ENOSPC; a kill between two
writes is a monkeypatched state write that raises.
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.io import ImageReadError, read_image, write_tiff
from napari_unet.work.session import Session
from tests.conftest import synthetic_nuclei

# ------------------------------------------------------------------ autosave sessions


def test_images_whose_names_differ_after_the_first_dot_get_their_own_sessions(tmp_path):
    a = Session.for_image(tmp_path / "cells.day1.tif", shape=(8, 8))
    b = Session.for_image(tmp_path / "cells.day2.tif", shape=(8, 8))
    assert a.folder != b.folder and a.folder.name == "cells.day1.napari-unet"
    a.save(np.ones((8, 8), np.int32), checked=[0])
    assert b.load() is None  # B does not restore A's slices
    b.save(np.full((8, 8), 2, np.int32))
    assert (a.load()[0] == 1).all()  # and a save of B does not wipe A's


def test_a_kill_after_the_slices_before_the_state_leaves_the_previous_save_whole(tmp_path, monkeypatch):
    """Imitated kill: the new slices are written, then the state write raises."""
    import napari_unet.work.session as mod

    session = Session(tmp_path / "s", (3, 8, 8))
    labels = np.zeros((3, 8, 8), np.int32)
    labels[1] = 1
    session.save(labels, checked=[1])
    real = mod._atomic_write

    def killed(path, write):
        if path.name == "state.json":
            raise OSError(errno.EIO, "killed")
        real(path, write)

    monkeypatch.setattr(mod, "_atomic_write", killed)
    labels[2] = 2
    with pytest.raises(OSError):
        session.save(labels, checked=[1, 2], dirty={2})
    monkeypatch.undo()
    back, checked, _ = session.load()
    assert checked == [1] and (back[2] == 0).all() and (back[1] == 1).all()  # one save, not two mixed
    session.save(back, checked=checked, dirty={1})
    # generation 2 again (the half-made one never had a state); its stray slice 2 is gone
    names = sorted(p.name for p in session.folder.glob("labels_*.npy"))
    assert names == ["labels_00000.g1.npy", "labels_00001.g2.npy", "labels_00002.g1.npy"]
    assert (session.load()[0][2] == 0).all()


def test_temporary_files_a_kill_left_are_removed_by_the_next_save(tmp_path):
    session = Session(tmp_path / "s", (8, 8))
    session.save(np.zeros((8, 8), np.int32))
    (session.folder / ".labels_00000.g9.npy.abc.part").write_bytes(b"half")
    session.save(np.ones((8, 8), np.int32))
    assert not list(session.folder.glob("*.part")) and (session.load()[0] == 1).all()


def test_a_corrupt_state_is_reported_not_raised_at_opening(tmp_path):
    session = Session(tmp_path / "s", (8, 8))
    session.save(np.zeros((8, 8), np.int32))
    session.state_path.write_text("{ not json")
    assert "cannot be read" in session.state()["error"]
    with pytest.raises(ValueError, match=r"the saved state cannot be read.*Move the folder"):
        session.load()


def test_a_session_saved_before_generations_still_loads_and_keeps_its_slices(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    for z in range(3):
        np.save(folder / f"labels_{z:05d}.npy", np.full((8, 8), z + 1, np.int32))
    (folder / "state.json").write_text(json.dumps({"shape": [3, 8, 8], "dtype": "int32", "checked": [2]}))
    session = Session(folder, (3, 8, 8))
    labels, checked, _ = session.load()
    assert checked == [2] and [int(p[0, 0]) for p in labels] == [1, 2, 3]
    labels[0] = 9
    session.save(labels, checked=[0, 2], dirty={0})  # slices 1 and 2 are not rewritten...
    again, checked, _ = session.load()
    assert [int(p[0, 0]) for p in again] == [9, 2, 3] and checked == [0, 2]  # ...and are kept


# ------------------------------------------------------------------ count outputs


@pytest.fixture
def nuclei_file(tmp_path):
    rng = np.random.default_rng(3)
    _, lab = synthetic_nuclei(rng, (96, 96), 8)
    folder = tmp_path / "in"
    folder.mkdir()
    write_tiff(folder / "cells.tif", (lab > 0).astype(np.uint8))  # a mask: counted without a model
    write_tiff(folder / "cells_labels.tif", lab, labels=True)  # ground truth beside it
    return folder / "cells.tif"


def test_count_on_a_full_disk_keeps_whole_files_and_the_next_run_redoes_it(nuclei_file, tmp_path, monkeypatch, capsys):
    """Imitated full disk: to_csv writes half of the objects table, then raises ENOSPC."""
    import pandas as pd

    out = tmp_path / "out"
    assert main(["count", str(nuclei_file), "--out", str(out)]) == 0
    objects = out / "cells_objects.csv"
    whole = objects.read_text()
    real = pd.DataFrame.to_csv

    def full_disk(self, path, *args, **kwargs):
        if "objects" in os.path.basename(str(path)) or ".cells_objects" in str(path):
            with open(path, "w") as fh:
                fh.write(real(self, None, *args, **kwargs)[:40])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    assert main(["count", str(nuclei_file), "--out", str(out), "--overwrite", "--min-area", "30"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert objects.read_text() == whole  # the old table, whole, not cut mid-row
    monkeypatch.undo()
    assert main(["count", str(nuclei_file), "--out", str(out), "--min-area", "30"]) == 0
    printed = capsys.readouterr().out
    assert "skipped" not in printed and "objects ->" in printed  # not taken for finished


def test_count_with_other_options_into_the_same_folder_redoes_every_file(nuclei_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["count", str(nuclei_file), "--out", str(out)]) == 0
    assert main(["count", str(nuclei_file), "--out", str(out)]) == 0
    assert "skipped, outputs exist" in capsys.readouterr().out  # same options: whole and skipped
    assert main(["count", str(nuclei_file), "--out", str(out), "--min-area", "200"]) == 0
    assert "skipped" not in capsys.readouterr().out
    record = json.loads((out / ".cells.count.json").read_text())
    assert record["options"]["min_area"] == 200.0


def test_a_second_run_into_a_folder_in_use_is_refused(nuclei_file, tmp_path, capsys):
    from napari_unet.cli._base import folder_lock

    out = tmp_path / "out"
    out.mkdir()
    with folder_lock(out):
        assert main(["count", str(nuclei_file), "--out", str(out)]) == 1
    assert "another napari-unet run is writing into this folder" in capsys.readouterr().err
    assert not (out / "cells_labels.tif").exists()


def test_count_replaces_a_planted_symlink_instead_of_writing_through_it(nuclei_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("do not overwrite")
    (out / "counts.csv").symlink_to(target)
    (out / "cells_objects.csv").symlink_to(target)
    assert main(["count", str(nuclei_file), "--out", str(out)]) == 0
    assert target.read_text() == "do not overwrite"
    assert not (out / "counts.csv").is_symlink() and "count" in (out / "counts.csv").read_text()


def test_a_folder_is_counted_without_its_ground_truth_labels(nuclei_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["count", str(nuclei_file.parent), "--out", str(out)]) == 0
    assert not list(out.glob("*_labels_labels.tif"))
    counts = (out / "counts.csv").read_text().splitlines()
    assert len(counts) == 2 and counts[1].startswith("cells,0,")  # slice 0 for a 2D image, as objects.csv


def test_objects_csv_says_the_bounding_box_is_in_pixels(nuclei_file, tmp_path):
    import pandas as pd

    out = tmp_path / "out"
    write_tiff(tmp_path / "scaled.tif", np.asarray(read_image(nuclei_file).data), scale=(0.5, 0.5), units="um")
    assert main(["count", str(tmp_path / "scaled.tif"), "--out", str(out)]) == 0
    table = pd.read_csv(out / "scaled_objects.csv")
    assert (table["unit"] == "um").all() and "bbox_min_row_px" in table and "bbox_min_row" not in table
    assert table["bbox_max_row_px"].max() <= 96  # pixel indices, not micrometres


@pytest.mark.parametrize("make", ["empty_folder", "folder_named_tif", "only_labels"])
def test_a_folder_with_no_images_is_an_error(tmp_path, capsys, make):
    folder = tmp_path / ("x.tif" if make == "folder_named_tif" else "in")
    folder.mkdir()
    if make == "only_labels":
        write_tiff(folder / "a_labels.tif", np.ones((8, 8), np.int32), labels=True)
    assert main(["count", str(folder), "--out", str(tmp_path / "out")]) == 1
    assert "no images found in" in capsys.readouterr().err


def test_count_of_a_constant_image_says_there_is_nothing_to_count(tmp_path, capsys):
    write_tiff(tmp_path / "flat.tif", np.full((40, 40), 3, np.uint16))
    assert main(["count", str(tmp_path / "flat.tif"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert ("constant" in err or "every pixel is" in err) and "nothing to" in err


def test_evaluate_with_a_missing_folder_names_it(tmp_path, capsys):
    (tmp_path / "truth").mkdir()
    assert main(["evaluate", "--pred", str(tmp_path / "nope"), "--truth", str(tmp_path / "truth")]) == 1
    assert "no such folder (given as --pred)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "option", "default"),
    [("predict", "--precision", "auto"), ("count", "--input-kind", "auto"), ("train", "--epochs", "20"),
     ("train", "--device", "auto"), ("train", "--seed", "0")],
)  # fmt: skip
def test_every_option_shows_its_help_and_default(capsys, command, option, default):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:") :]  # not the usage line
    entry = text[text.index(option + " ") :][:400]
    entry = entry[: entry.index(" --", 3)] if " --" in entry[3:] else entry
    assert len(entry.split()) > 3, f"{command} {option} has no help: {entry!r}"
    assert f"(default: {default})" in entry


@pytest.mark.parametrize("command", ["predict", "count", "train", "evaluate", "export", "import", "info"])
def test_no_option_says_its_default_twice(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:") :]
    for entry in text.split(" --")[1:]:
        assert entry.count("default") <= 1, f"{command} --{entry[:300]}"
        assert "(default: None)" not in entry, f"{command} --{entry[:300]}"


# ------------------------------------------------------------------ one bad file among good ones


def write_bomb(path, side=20480):
    """A zlib-compressed tiled TIFF declaring side^2 uint32 pixels (1.7 GB) in about 2 MB."""
    tile = np.zeros((512, 512), np.uint32)
    n = (side // 512) ** 2
    tifffile.imwrite(path, (tile for _ in range(n)), shape=(side, side), dtype=np.uint32, tile=(512, 512),
                     compression="zlib")  # fmt: skip


def test_a_decompression_bomb_among_good_files_is_refused_and_the_good_ones_finish(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_bomb(folder / "bomb.tif")
    assert (folder / "bomb.tif").stat().st_size < 5e6
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_tiff(folder / f"{name}.tif", (synthetic_nuclei(rng, (64, 64), 4)[1] > 0).astype(np.uint8))
    out = tmp_path / "out"
    assert main(["count", str(folder), "--out", str(out), "--input-kind", "mask"]) == 1
    err = capsys.readouterr().err
    assert "bomb.tif: declares" in err and "a real image does not reach" in err
    assert "1 of 3 file(s) failed" in err
    assert (out / "a_labels.tif").exists() and (out / "b_labels.tif").exists()


def test_a_large_compressed_file_is_read_lazily_by_the_size_it_declares(tmp_path, monkeypatch):
    write_bomb(tmp_path / "big.tif", side=2048)
    monkeypatch.setenv("NAPARI_UNET_ALLOW_HUGE", "1")
    img = read_image(tmp_path / "big.tif", lazy_threshold=1_000_000)  # 16 MB declared, ~20 kB on disk
    assert img.lazy


def test_running_out_of_memory_on_one_file_lets_the_others_finish(tmp_path):
    from napari_unet.engine.scale import run_files

    def work(path):
        if path.endswith("huge"):
            raise MemoryError
        if path.endswith("oom"):
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return [path + ".out"]

    results = run_files(work, ["a", "huge", "oom", "b"])
    assert [r.ok for r in results] == [True, False, False, True]
    assert all("ran out of memory" in r.message and "\n" not in r.message for r in results[1:3])


# ------------------------------------------------------------------ files that must not be followed


def ome_with_companion(path, filename):
    tifffile.imwrite(path, np.zeros((2, 16, 16), np.uint8), ome=True, metadata={"axes": "ZYX"})
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    first = xml.index("<TiffData")
    close = xml.index("/>", first)
    xml = xml[:close] + f'><UUID FileName="{filename}">urn:uuid:1234</UUID></TiffData>' + xml[close + 2 :]
    tifffile.tiffcomment(path, xml.encode())


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("missing.ome.tif", "needs its companion file missing.ome.tif, which is missing"),
        ("../other.ome.tif", "points at pixel data outside its folder"),
        ("/etc/passwd", "points at pixel data outside its folder"),
        ("pipe.ome.tif", "is not a regular file"),
    ],
)
def test_ome_companion_files_are_read_only_from_the_same_folder(tmp_path, filename, message):
    if filename == "pipe.ome.tif":
        os.mkfifo(tmp_path / filename)
    (tmp_path.parent / "other.ome.tif").write_bytes(b"")
    ome_with_companion(tmp_path / "multi.ome.tif", filename)
    with pytest.raises(ImageReadError, match=message):
        read_image(tmp_path / "multi.ome.tif")


def test_a_pipe_given_as_an_image_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "pipe.tif")
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image(tmp_path / "pipe.tif")


def test_an_error_never_echoes_the_contents_of_the_file(tmp_path, capsys):
    secret = tmp_path / "passwd.tif"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n" * 4)
    assert main(["info", str(secret)]) == 1
    err = capsys.readouterr().err
    assert "b'root" not in err and "root:" not in err and "not a valid TIFF" in err  # it printed header=b'root'


def test_compressed_tiffs_as_fiji_and_scanners_write_them_are_read(tmp_path):
    data = (np.random.default_rng(0).random((3, 32, 40)) * 4000).astype(np.uint16)
    for compression in ("lzw", "zstd", "jpeg2000"):
        path = tmp_path / f"{compression}.tif"
        tifffile.imwrite(path, data, compression=compression, photometric="minisblack")
        back = np.asarray(read_image(path).data)
        if compression == "jpeg2000":
            assert back.shape == data.shape
        else:
            np.testing.assert_array_equal(back, data)


# ------------------------------------------------------------------ model cards


@pytest.fixture
def tiny_file(tmp_path):
    import torch

    from napari_unet.networks.model import ModelCard, build_model, save_model

    torch.manual_seed(0)
    card = ModelCard("tiny", "unet", {"features": (4, 8, 16)}, classes=("foreground", "boundary"), tile=64)
    return save_model(build_model(card), tmp_path / "tiny")


def test_a_card_for_a_huge_network_is_refused_before_it_is_built(tiny_file):
    from napari_unet.networks.model import ModelLoadError, load_model

    card = json.loads(tiny_file.with_suffix(".json").read_text())
    card["arch_args"] = {"features": [4096, 8192, 16384, 32768, 65536]}  # ~40 GB of float32 weights
    tiny_file.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="the weights do not fit the unet its card describes"):
        load_model(tiny_file)


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ([1, 2, 3], "a JSON object with the model's settings, not a list"),
        ({"name": "tiny", "tile": -5}, "tile must be a whole number"),
    ],
)
def test_a_bad_card_blames_the_card(tiny_file, card, message):
    from napari_unet.networks.model import ModelLoadError, load_model

    tiny_file.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=message):
        load_model(tiny_file)


def test_an_rgb_array_given_to_the_grayscale_model_says_rgb(tiny_file):
    import napari_unet

    model = napari_unet.load_model(tiny_file)
    with pytest.raises(ValueError, match=r"takes 1 input channel.*the image has RGB"):
        napari_unet.segment(model, np.zeros((256, 256, 3), np.uint8) + np.arange(3, dtype=np.uint8), device="cpu")


def test_the_unknown_model_message_lists_names_only(monkeypatch, tmp_path, tiny_file, capsys):
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(tiny_file.parent))
    assert main(["predict", "x.tif", "--out", str(tmp_path / "o"), "--model", "nope"]) == 1
    err = capsys.readouterr().err
    assert "known models: nuclei, tiny" in err and str(tmp_path) not in err


# ------------------------------------------------------------------ training


def test_ctrl_c_during_cli_training_keeps_the_best_checkpoint(tmp_path, tiny_file, monkeypatch, capsys):
    """Imitated Ctrl-C: KeyboardInterrupt raised after the first validated epoch."""
    from napari_unet.training.train import Trainer

    rng = np.random.default_rng(1)
    img, lab = synthetic_nuclei(rng, (96, 96), 8)
    write_tiff(tmp_path / "img.tif", np.stack([img, img]))
    write_tiff(tmp_path / "lab.tif", np.stack([lab, lab]), labels=True)
    real = Trainer.steps

    def interrupted(self):
        for event in real(self):
            yield event
            if event.info.get("kind") == "epoch":
                raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "steps", interrupted)
    dest = tmp_path / "models" / "kept.safetensors"
    argv = ["train", "--images", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"), "--base",
            str(tiny_file), "--out", str(dest), "--epochs", "5", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted: the best checkpoint (epoch 0) was saved to" in err and dest.exists()
