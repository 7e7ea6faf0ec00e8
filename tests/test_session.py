from __future__ import annotations

import numpy as np
import pytest

from napari_unet.work.session import Session


@pytest.fixture
def session(tmp_path):
    return Session.for_image(None, name="cells", shape=(4, 16, 16), root=tmp_path)


def test_round_trip_with_checked_slices_and_region(session):
    labels = np.zeros((4, 16, 16), np.uint16)
    labels[2, 3:6, 3:6] = 4
    region = np.zeros((4, 16, 16), bool)
    region[0, :8] = True
    session.save(labels, checked=[2, 0], region=region)
    back, checked, reg = session.load()
    np.testing.assert_array_equal(back, labels)
    assert back.dtype == np.uint16 and checked == [0, 2]
    np.testing.assert_array_equal(reg, region)


def test_only_dirty_slices_are_rewritten(session):
    labels = np.zeros((4, 16, 16), np.int32)
    session.save(labels)

    def files():  # slice -> (file name, time written)
        return {p.name[:12]: (p.name, p.stat().st_mtime_ns) for p in session.folder.glob("labels_*.npy")}

    stamps = files()
    labels[3, 0, 0] = 5
    labels[1, 0, 0] = 6  # changed but not reported dirty: not written
    session.save(labels, dirty={3})
    after = files()
    assert after["labels_00003"] != stamps["labels_00003"]  # a new file of the new generation
    assert after["labels_00000"] == stamps["labels_00000"]  # the same file, untouched
    back, _, _ = session.load()
    assert back[3, 0, 0] == 5 and back[1, 0, 0] == 0


def test_a_crash_while_saving_keeps_the_previous_save(session, monkeypatch):
    labels = np.ones((4, 16, 16), np.int32)
    session.save(labels, checked=[1])
    import napari_unet.work.session as mod

    def broken(path, array):
        with open(path, "wb") as fh:
            fh.write(b"\x93NUMPY half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mod, "_save_npy", broken)
    with pytest.raises(OSError, match="No space left"):
        session.save(labels * 2, checked=[1, 2])
    back, checked, _ = session.load()
    assert (back == 1).all() and checked == [1]
    assert not list(session.folder.glob("*.part"))


def test_shape_mismatch_is_refused(session, tmp_path):
    session.save(np.zeros((4, 16, 16), np.int32))
    other = Session(session.folder, (4, 16, 17))
    with pytest.raises(ValueError, match="for shape"):
        other.load()
    with pytest.raises(ValueError, match="this session is for"):
        session.save(np.zeros((2, 16, 16), np.int32))


def test_session_beside_the_image_file(tmp_path):
    image = tmp_path / "cells.ome.tif"
    image.write_bytes(b"x")
    s = Session.for_image(image, shape=(8, 8))
    assert s.folder == tmp_path / "cells.napari-unet"
    assert Session.for_image(None, name="a", shape=(8, 8), root=tmp_path).load() is None


def test_labels_in_a_zarr_store_are_not_copied(session, tmp_path):
    """A lazily opened stack's labels live in a zarr store that painting writes through;
    saving records the store instead of copying every slice (gigabytes, on the GUI thread)."""
    from napari_unet.io.ome_zarr import open_ome_zarr_array

    labels = open_ome_zarr_array(tmp_path / "labels.zarr", (4, 16, 16), np.int32, axes="ZYX")
    labels[2, 3:6, 3:6] = 7  # a brush stroke
    session.save(labels, checked=[2])
    assert not list(session.folder.glob("labels_*.npy"))
    assert session.state()["labels_zarr"]["store"] == str(tmp_path / "labels.zarr")
    back, checked, _ = session.load()
    assert not isinstance(back, np.ndarray) and checked == [2]
    assert int(back[2].max()) == 7 and int(np.asarray(back).sum()) == 7 * 9

    import shutil

    shutil.rmtree(tmp_path / "labels.zarr")  # the store moved or deleted: said, not a traceback
    with pytest.raises(ValueError, match=r"cannot be opened.*moved or deleted"):
        session.load()
