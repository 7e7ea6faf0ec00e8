"""A DICOM series in the dock (#29): opened with napari-unet's reader into a real viewer, its lesion
drawn, counted, and the labels saved back as NIfTI on the scan's affine and as a DICOM SEG on the
series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_unet._widgets.count_widget import CountWidget
from napari_unet.io import read_image
from tests._dicom import write_series
from tests._qt.conftest import wait_for

CT = Path(__file__).parents[2] / "napari_unet" / "sample_data" / "ct_lung1.tif"


def test_a_dicom_series_opens_counts_and_saves_back_in_the_clinics_formats(
    make_napari_viewer, registry, tmp_path, qtbot, errors
):
    nib = pytest.importorskip("nibabel")
    hd = pytest.importorskip("highdicom")
    ct = read_image(CT)
    volume = ct.data[3:9, 300:428, 150:278]
    write_series(tmp_path / "export", volume, spacing=ct.scale, description="CHEST")
    viewer = make_napari_viewer()
    [image] = viewer.open(str(tmp_path / "export"), plugin="napari-unet")
    assert image.name == "3_CHEST" and list(image.contrast_limits) == [-160.0, 240.0]
    np.testing.assert_allclose(image.scale, ct.scale, rtol=1e-6)
    truth = read_image(CT.with_name("ct_lung1_labels.tif")).data[3:9, 300:428, 150:278]
    drawn = viewer.add_labels((truth > 0).astype(np.int32), name="lesion", scale=image.scale, units=image.units)
    widget = CountWidget(viewer)
    widget.labels_layer.value = drawn
    widget.image.value = image
    widget.min_area.value = 0
    widget.run()
    wait_for(qtbot, widget)
    assert len(widget.result[1]) >= 1 and not errors
    nifti = widget.save_labels(tmp_path / "lesion.nii.gz")
    saved = nib.load(str(nifti))
    np.testing.assert_allclose(saved.affine, np.asarray(image.metadata["affine"])[:, [2, 1, 0, 3]])
    np.testing.assert_array_equal(np.asanyarray(saved.dataobj).transpose(2, 1, 0) > 0, truth > 0)
    seg = hd.seg.segread(widget.save_labels(tmp_path / "lesion.dcm"))
    series = read_image(str(tmp_path / "export"))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.metadata["dicom"]["series_uid"]
    assert seg.NumberOfFrames == int((truth > 0).any(axis=(1, 2)).sum())
    # an image that is not DICOM cannot get a SEG: said once, nothing written
    viewer.layers.remove(image)
    widget.image.value = viewer.add_image(volume, name="plain")
    assert widget.save_labels(tmp_path / "plain.dcm") is None and not (tmp_path / "plain.dcm").exists()
    assert any("a DICOM SEG needs an image read from a DICOM series" in str(e) for e in errors)
