"""NIfTI and DICOM in and out (issue #29): the CT sample as TIFF, NIfTI and a DICOM series gives the
same voxels, spacing and predictions; results go back as NIfTI with the input's affine and as a
DICOM SEG on the source slices; every refusal says its sentence; no patient tag leaks.

Real data: the shipped CT sample (pyradiomics lung1), series built from it with pydicom
(``tests/_dicom.py``), and the test files that ship in the pydicom and nibabel wheels.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_unet.io import ImageReadError, read_image
from napari_unet.io.formats import FORMATS, format_for, manifest_patterns
from tests._dicom import PATIENT, write_series

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DICOMDIR_TESTS = PYDICOM_FILES / "dicomdirtests"
NIBABEL_FILES = Path(nib.__file__).parent / "tests" / "data"
CT = Path(__file__).parents[1] / "napari_unet" / "sample_data" / "ct_lung1.tif"


@pytest.fixture(scope="module")
def ct():
    return read_image(CT)


@pytest.fixture(scope="module")
def ct_crop(ct):
    """Five slices of the sample around its lesion, 96 x 96: small enough to predict in a test."""
    return ct.data[3:8, 180:276, 170:266].copy()


@pytest.fixture
def ct_series(tmp_path: Path, ct) -> Path:
    folder = tmp_path / "dicom"
    write_series(folder, ct.data, spacing=ct.scale)
    return folder


def _nifti_of(path: Path, data: np.ndarray, spacing, origin=(0.0, 0.0, 0.0)) -> Path:
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])  # (i, j, k) = (x, y, z)
    affine[:3, 3] = origin
    nib.save(nib.Nifti1Image(data.transpose(2, 1, 0), affine), str(path))
    return path


# --------------------------------------------------------------------------- the reader table


def test_napari_manifest_lists_exactly_the_reader_tables_patterns():
    import yaml

    manifest = yaml.safe_load((Path(__file__).parents[1] / "napari_unet" / "napari.yaml").read_text())
    (reader,) = manifest["contributions"]["readers"]
    assert reader["filename_patterns"] == manifest_patterns()
    assert reader["accepts_directories"] is True
    assert {f.name for f in FORMATS} >= {"TIFF", "NRRD", "NIfTI", "DICOM", "OME-Zarr"}


def test_a_format_is_known_by_its_ending_or_its_first_bytes(tmp_path: Path, ct_series: Path):
    assert format_for("a.nii.gz").name == "NIfTI" and format_for("a.NII").name == "NIfTI"
    assert format_for(next(ct_series.iterdir())).name == "DICOM"  # no ending: the DICM marker says it
    assert format_for(ct_series).name == "DICOM"  # a folder of DICOM files
    renamed = tmp_path / "scan_without_ending"
    shutil.copy(CT, renamed)
    assert format_for(renamed).name == "TIFF" and read_image(renamed).shape == (12, 512, 512)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ImageReadError, match=r"not a kind of image napari-unet reads; it reads TIFF.*NIfTI.*DICOM"):
        read_image(tmp_path / "notes.txt")


# --------------------------------------------------------------------------- NIfTI


def test_nifti_of_the_ct_sample_gives_the_tiffs_voxels_spacing_and_affine(tmp_path: Path, ct):
    path = _nifti_of(tmp_path / "lung1.nii.gz", ct.data, ct.scale, origin=(-150.0, -140.0, -60.0))
    img = read_image(path)
    assert img.axes == "ZYX" and img.data.dtype == np.int16
    np.testing.assert_array_equal(img.data, ct.data)
    np.testing.assert_allclose(img.scale, ct.scale)
    assert img.units == ("millimeter",) * 3 and img.name == "lung1"
    affine = np.asarray(img.metadata["affine"])  # (z, y, x) index -> RAS mm
    np.testing.assert_allclose(affine @ [2, 3, 4, 1], [-150 + 4 * ct.scale[2], -140 + 3 * ct.scale[1], -60 + 10, 1])


@pytest.mark.parametrize(
    ("name", "axes", "shape"),
    [("anatomical.nii", "ZYX", (25, 41, 33)), ("standard.nii.gz", "ZYX", (7, 5, 4)),
     ("example4d.nii.gz", "TZYX", (2, 24, 96, 128)), ("example_nifti2.nii.gz", "TZYX", (2, 12, 20, 32))],
)  # fmt: skip
def test_nibabels_own_test_files_read(name, axes, shape):
    img = read_image(NIBABEL_FILES / name)
    assert (img.axes, img.shape) == (axes, shape)
    assert img.data.dtype.isnative  # anatomical.nii is big-endian on disk
    raw = np.asanyarray(nib.load(str(NIBABEL_FILES / name)).dataobj)
    np.testing.assert_array_equal(img.data, raw.T if raw.ndim == 3 else raw.transpose(3, 2, 1, 0))


def test_damaged_and_unsupported_nifti_are_refused_in_one_sentence(tmp_path: Path):
    good = _nifti_of(tmp_path / "x.nii", np.zeros((3, 4, 5), np.int16), (1, 1, 1))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="not a readable NIfTI image"):
        read_image(cut)
    cifti = NIBABEL_FILES / "row_major.dconn.nii"
    with pytest.raises(ImageReadError, match="NIfTI"):
        read_image(cifti)


def test_nifti_written_back_keeps_the_affine_and_the_labels(tmp_path: Path):
    from napari_unet.io.nifti import write_nifti

    affine = np.array([[0, 0, -0.8, 90], [0, 0.8, 0, -126], [2.5, 0, 0, -72], [0, 0, 0, 1.0]])  # (z, y, x)
    labels = np.zeros((4, 6, 5), np.int64)
    labels[1:3, 2:4, 1:3] = 2
    path = write_nifti(tmp_path / "m.nii.gz", labels, axes="ZYX", affine=affine, labels=True)
    back = nib.load(str(path))
    np.testing.assert_allclose(back.affine, affine[:, [2, 1, 0, 3]])
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(back.dataobj).transpose(2, 1, 0), labels)
    probs = np.random.default_rng(0).random((2, 4, 6, 5)).astype(np.float32)
    again = read_image(write_nifti(tmp_path / "p.nii.gz", probs, axes="CZYX", affine=affine))
    assert again.axes == "CZYX"
    np.testing.assert_array_equal(again.data, probs)
    with pytest.raises(ValueError, match=r"ends in \.nii or \.nii\.gz"):
        write_nifti(tmp_path / "m.tif", labels, axes="ZYX", affine=affine)


# --------------------------------------------------------------------------- DICOM series


def test_a_dicom_series_of_the_ct_sample_gives_the_tiffs_voxels_whatever_the_file_names(tmp_path: Path, ct):
    folder = tmp_path / "export"
    files = write_series(folder, ct.data, spacing=ct.scale, intercept=-1024, shuffle_seed=3)
    assert [f.name for f in files] != sorted(f.name for f in files)  # names do not follow the slices
    img = read_image(folder)
    assert img.axes == "ZYX" and img.data.dtype == np.int16  # HU through the rescale intercept, exact
    np.testing.assert_array_equal(img.data, ct.data)
    np.testing.assert_allclose(img.scale, ct.scale, rtol=1e-6)  # Z from the positions, not SliceThickness (10)
    assert img.units == ("millimeter",) * 3
    assert img.metadata["window"] == (40.0, 400.0)
    assert img.name == "3_CHEST_5mm"  # from the series, never the patient
    assert img.metadata["dicom"]["files"] == [str(f) for f in files]


def test_slices_are_ordered_along_the_normal_not_by_instance_number(tmp_path: Path, ct):
    # a sagittal series: the normal is -x, so the slice with the largest x comes first
    volume = ct.data[:6, :64, :64]
    write_series(tmp_path / "sag", volume, spacing=(3.0, 0.7, 0.7), orientation=(0, 1, 0, 0, 0, -1), shuffle_seed=9)
    img = read_image(tmp_path / "sag")
    np.testing.assert_array_equal(img.data, volume)
    assert img.scale[0] == pytest.approx(3.0)


def test_real_ct_series_from_pydicom_reads_in_position_order():
    img = read_image(DICOMDIR_TESTS / "98892001" / "CT5N")
    assert img.shape == (5, 16, 16) and img.data.dtype == np.int16
    assert img.scale == pytest.approx((2.5, 0.488281, 0.488281))
    z = [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in img.metadata["dicom"]["files"]]
    assert z == sorted(z)  # the file names (2062, 2392, ...) run head to feet


def test_a_folder_of_several_series_is_one_input_each_and_info_lists_them(tmp_path: Path, ct, capsys):
    from napari_unet.cli import main
    from napari_unet.cli._base import _inputs

    folder = tmp_path / "study"
    write_series(folder, ct.data[:4, :64, :64], spacing=ct.scale, description="CHEST", number=2)
    write_series(folder / "sub", ct.data[4:9, :64, :64], spacing=ct.scale, description="CHEST bone", number=5)
    inputs = _inputs([str(folder)])
    assert [Path(p).name for p in inputs] == ["study#2_CHEST", "study#5_CHEST_bone"]
    with pytest.raises(ImageReadError, match=r"holds 2 series; name one: .*study#2_CHEST, .*study#5_CHEST_bone"):
        read_image(folder)
    np.testing.assert_array_equal(read_image(inputs[1]).data, ct.data[4:9, :64, :64])
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "study#2_CHEST: image ZYX (4, 64, 64) int16" in out and "CT series 5 'CHEST bone', 5 slice(s)" in out
    assert "window 40/400" in out


def test_pydicoms_three_series_folder_lists_each_and_refuses_the_mixed_orientations():
    from napari_unet.io.dicom import find_series

    scan = find_series(DICOMDIR_TESTS / "98892003" / "MR2")
    assert len(scan.series) == 3
    pilots = [s for s in scan.series if "PILOT" in s.label]
    assert len(pilots) == 2
    for s in pilots:  # each holds a transverse, a sagittal and a coronal slice
        with pytest.raises(ImageReadError, match="its 3 slices lie in 3 orientations"):
            read_image(s.named_in(DICOMDIR_TESTS / "98892003" / "MR2"))
    with pytest.raises(ImageReadError, match="its 7 slices lie in 7 orientations"):
        read_image(DICOMDIR_TESTS / "98892003" / "MR700")


def test_missing_slices_are_refused_with_the_gap():
    with pytest.raises(ImageReadError, match=r"slices are missing: 202.5 mm between .* the others are 1.25 mm apart"):
        read_image(DICOMDIR_TESTS / "77654033" / "CT2")


def test_uneven_spacing_is_read_with_a_warning_that_gives_the_range(tmp_path: Path, ct):
    write_series(tmp_path / "s", ct.data[:5, :32, :32], spacing=(5.0, 0.5, 0.5), positions=[0, 5, 10, 16, 21])
    img = read_image(tmp_path / "s")
    assert "slice spacing varies from 5 to 6 mm; it is read with the median 5 mm" in img.metadata["note"]
    np.testing.assert_array_equal(img.data, ct.data[:5, :32, :32])


def test_gantry_tilt_is_warned_about(tmp_path: Path, ct):
    files = write_series(tmp_path / "tilt", ct.data[:4, :32, :32], spacing=(5.0, 0.5, 0.5))
    for k, f in enumerate(sorted(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))):
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], float(ds.ImagePositionPatient[1]) + k * 1.5,
                                   ds.ImagePositionPatient[2]]  # fmt: skip
        ds.save_as(f)
    img = read_image(tmp_path / "tilt")
    assert "gantry tilt of 16.7 degrees" in img.metadata["note"]


def test_slices_of_several_sizes_or_at_one_position_are_refused(tmp_path: Path, ct):
    write_series(tmp_path / "sizes", ct.data[:3, :32, :32], spacing=(5, 1, 1), shapes=[(32, 32), (32, 32), (16, 32)])
    with pytest.raises(ImageReadError, match=r"its slices have 2 sizes \(16x32 and 32x32\)"):
        read_image(tmp_path / "sizes")
    write_series(tmp_path / "same", ct.data[:3, :32, :32], spacing=(5, 1, 1), positions=[0, 0, 5])
    with pytest.raises(ImageReadError, match=r"lie at the same position .*export each of them as its own series"):
        read_image(tmp_path / "same")


def test_non_image_objects_and_other_files_in_a_folder_are_left_out_with_a_note(tmp_path: Path, ct):
    folder = tmp_path / "mixed"
    write_series(folder, ct.data[:3, :32, :32], spacing=(5, 1, 1))
    shutil.copy(PYDICOM_FILES / "liver_1frame.dcm", folder / "seg.dcm")
    shutil.copy(PYDICOM_FILES / "reportsi.dcm", folder / "report.dcm")
    (folder / "README.txt").write_text("exported by a PACS")
    img = read_image(folder)
    np.testing.assert_array_equal(img.data, ct.data[:3, :32, :32])
    assert "1 file(s) that are not DICOM were left out" in img.metadata["note"]
    assert "2 non-image DICOM object(s) (SEG, SR) were left out" in img.metadata["note"]


@pytest.mark.parametrize(
    ("name", "match"),
    [("liver_1frame.dcm", "a DICOM Segmentation Storage object, not an image to segment"),
     ("rtstruct.dcm", "a DICOM RT Structure Set Storage object, not an image to segment"),
     ("reportsi.dcm", "a DICOM Basic Text SR Storage object"),
     ("README.txt", "not a kind of image napari-unet reads")],
)  # fmt: skip
def test_non_image_dicom_and_files_that_are_not_dicom_are_refused(name, match):
    with pytest.raises(ImageReadError, match=match):
        read_image(PYDICOM_FILES / name)


def test_a_dcm_file_that_is_not_dicom_is_refused(tmp_path: Path):
    fake = tmp_path / "scan.dcm"
    fake.write_bytes(b"\0" * 300)
    with pytest.raises(ImageReadError, match="not a DICOM file, or one too damaged to read"):
        read_image(fake)


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_compressed_transfer_syntaxes_decode_to_the_uncompressed_pixels(name):
    np.testing.assert_array_equal(
        read_image(PYDICOM_FILES / name).data, read_image(PYDICOM_FILES / "MR_small.dcm").data
    )


def test_pixels_that_no_decoder_reads_get_one_sentence(tmp_path: Path):
    broken = PYDICOM_FILES / "JPEG-lossy.dcm"  # 12-bit JPEG with a misplaced marker: every decoder fails
    with pytest.raises(ImageReadError, match=r"JPEG Extended .* pixels could not be decoded; the file may be damaged"):
        read_image(broken)


def test_an_enhanced_multiframe_ct_reads_like_its_classic_series(tmp_path: Path, ct):
    hd = pytest.importorskip("highdicom")
    volume = ct.data[:4, :48, :48]
    files = write_series(tmp_path / "classic", volume, spacing=ct.scale)
    legacy = hd.legacy.LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(f) for f in files], series_instance_uid=hd.UID(), series_number=7, sop_instance_uid=hd.UID(),
        instance_number=1,
    )  # fmt: skip
    legacy.save_as(tmp_path / "enhanced.dcm")
    img = read_image(tmp_path / "enhanced.dcm")
    np.testing.assert_array_equal(img.data, volume)
    np.testing.assert_allclose(img.scale, ct.scale, rtol=1e-6)


# --------------------------------------------------------------------------- results back


def _predict(path: Path, out: Path) -> int:
    from napari_unet.cli import main

    return main(["predict", str(path), "--out", str(out)])


def test_tiff_nifti_and_dicom_of_one_scan_give_the_same_prediction(tmp_path: Path, ct, ct_crop):
    from napari_unet.io import write_tiff

    (tmp_path / "in").mkdir()
    tiff = write_tiff(tmp_path / "in" / "crop.tif", ct_crop, axes="ZYX", scale=ct.scale, units="mm")
    nifti = _nifti_of(tmp_path / "in" / "crop.nii.gz", ct_crop, ct.scale, origin=(-40.0, 20.0, -55.0))
    write_series(tmp_path / "dcm", ct_crop, spacing=ct.scale, description="crop")
    for source in (tiff, nifti, tmp_path / "dcm"):
        assert _predict(source, tmp_path / "out") == 0
    out = tmp_path / "out"
    tif_mask = read_image(out / "crop_mask.tif").data
    assert tif_mask.any()
    nii_mask = nib.load(str(out / "crop_mask.nii.gz"))
    np.testing.assert_allclose(nii_mask.affine, nib.load(str(nifti)).affine)  # the input's affine
    np.testing.assert_array_equal(np.asanyarray(nii_mask.dataobj).transpose(2, 1, 0), tif_mask)
    dcm_mask = read_image(out / "3_crop_mask.nii.gz")
    np.testing.assert_array_equal(dcm_mask.data, tif_mask)
    np.testing.assert_array_equal(read_image(out / "3_crop_prob.nii.gz").data, read_image(out / "crop_prob.tif").data)
    assert (out / "3_crop_seg.dcm").exists()


def test_the_dicom_seg_references_the_series_and_sits_on_its_slices(tmp_path: Path, ct):
    hd = pytest.importorskip("highdicom")
    from napari_unet.io.dicom_seg import write_dicom_seg

    files = write_series(tmp_path / "dcm", ct.data, spacing=ct.scale)
    img = read_image(tmp_path / "dcm")
    mask = np.zeros(img.shape, np.uint8)
    mask[5:8, 200:260, 210:270] = 1
    mask[6, 10:20, 10:20] = 2
    path = write_dicom_seg(tmp_path / "seg.dcm", mask, img, class_names={1: "lesion", 2: "vessel"}, model_name="m")
    seg = hd.seg.segread(path)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == img.metadata["dicom"]["series_uid"]
    assert seg.FrameOfReferenceUID == pydicom.dcmread(files[0]).FrameOfReferenceUID
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["lesion", "vessel"]
    source_z = {
        float(pydicom.dcmread(f).ImagePositionPatient[2]): z for z, f in enumerate(img.metadata["dicom"]["files"])
    }
    pixels = seg.pixel_array
    seen = set()
    for k, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        z = source_z[float(frame.PlanePositionSequence[0].ImagePositionPatient[2])]
        number = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        np.testing.assert_array_equal(pixels[k], mask[z] == number)
        seen.add((z, number))
    assert seen == {(5, 1), (6, 1), (7, 1), (6, 2)}
    empty = write_dicom_seg(tmp_path / "none.dcm", np.zeros_like(mask), img, class_names={1: "x"}, model_name="m")
    assert empty is None and not (tmp_path / "none.dcm").exists()


def test_count_of_a_nifti_writes_labels_with_its_affine(tmp_path: Path, ct, ct_crop):
    from napari_unet.cli import main

    nifti = _nifti_of(tmp_path / "crop.nii.gz", ct_crop, ct.scale, origin=(5.0, 6.0, 7.0))
    assert main(["count", str(nifti), "--out", str(tmp_path / "c")]) == 0
    labels = nib.load(str(tmp_path / "c" / "crop_labels.nii.gz"))
    np.testing.assert_allclose(labels.affine, nib.load(str(nifti)).affine)
    counts = (tmp_path / "c" / "crop_counts.csv").read_text()
    assert ",mm" in counts  # areas in the scan's unit


def test_no_patient_tag_reaches_any_output(tmp_path: Path, ct_crop, ct):
    """Names, IDs and birth dates stay in the DICOM files (and the SEG, which DICOM files with the study)."""
    from napari_unet.cli._base import _inputs

    write_series(tmp_path / "Patient folder", ct_crop, spacing=ct.scale, description="crop")
    env_code = (
        "import sys; from napari_unet.cli import main; "
        f"sys.exit(max(main(['info', {str(tmp_path / 'Patient folder')!r}]), "
        f"main(['predict', {str(tmp_path / 'Patient folder')!r}, '--out', {str(tmp_path / 'p')!r}]), "
        f"main(['count', {str(tmp_path / 'Patient folder')!r}, '--out', {str(tmp_path / 'c')!r}])))"
    )
    run = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    printed = run.stdout + run.stderr
    outputs = [p for p in tmp_path.glob("[pc]/**/*") if p.is_file() and not p.name.endswith("_seg.dcm")]
    assert len(outputs) >= 7 and any(p.name.endswith(".nii.gz") for p in outputs)
    for value in PATIENT.values():
        for text in (value, value.replace("^", " "), value.split("^")[0]):
            assert text not in printed
            for p in outputs:
                blob = p.read_bytes()
                raw = gzip.decompress(blob) if p.name.endswith(".gz") else blob
                assert text.encode() not in raw, f"{text} in {p.name}"
    [series] = _inputs([str(tmp_path / "Patient folder")])
    img = read_image(series)
    assert not any(v in repr(img.metadata) for v in PATIENT.values())
    seg = pydicom.dcmread(tmp_path / "p" / "3_crop_seg.dcm")
    assert str(seg.PatientID) == PATIENT["PatientID"]  # the SEG is filed with its study, as DICOM requires


# --------------------------------------------------------------------------- napari's reader and writer


def test_napari_opens_a_dicom_folder_as_one_layer_per_series_in_its_window(tmp_path: Path, ct):
    from napari_unet._reader import napari_get_reader

    folder = tmp_path / "study"
    write_series(folder, ct.data[:3, :32, :32], spacing=ct.scale, description="A", number=1)
    write_series(folder, ct.data[3:6, :32, :32], spacing=ct.scale, description="B", number=2)
    reader = napari_get_reader(str(folder))
    assert reader is not None
    layers = reader(str(folder))
    assert [kw["name"] for _, kw, _ in layers] == ["1_A", "2_B"]
    data, kwargs, kind = layers[1]
    assert kind == "image" and kwargs["contrast_limits"] == [-160.0, 240.0]  # window 40 / 400
    np.testing.assert_allclose(kwargs["scale"], ct.scale, rtol=1e-6)
    np.testing.assert_array_equal(data, ct.data[3:6, :32, :32])
    assert "affine" in kwargs["metadata"]
    assert napari_get_reader(str(tmp_path / "nothing_here")) is None


def test_napari_writer_saves_labels_as_nifti_on_the_scans_affine(tmp_path: Path, ct, ct_crop):
    from napari_unet._reader import napari_get_reader
    from napari_unet._writer import write_labels

    nifti = _nifti_of(tmp_path / "scan.nii.gz", ct_crop, ct.scale, origin=(1.0, 2.0, 3.0))
    [(_, kwargs, _)] = napari_get_reader(str(nifti))(str(nifti))
    labels = (ct_crop > -300).astype(np.uint8)
    [written] = write_labels(
        str(tmp_path / "drawn.nii.gz"), labels, {"scale": kwargs["scale"], "metadata": kwargs["metadata"]}
    )
    back = nib.load(written)
    np.testing.assert_allclose(back.affine, nib.load(str(nifti)).affine)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj).transpose(2, 1, 0), labels)


def test_stored_values_take_the_smallest_type_that_holds_them_exactly(tmp_path: Path):
    """int16 for Hounsfield units (the CT tests above), uint16 for unsigned values above 32767
    (an MR), float32 once a slope makes fractions; filled slice by slice, the same values."""
    import pydicom

    volume = np.linspace(0, 40000, 3 * 16 * 16).reshape(3, 16, 16).round()
    write_series(tmp_path / "mr", volume, spacing=(2.0, 0.5, 0.5), intercept=0.0)
    image = read_image(tmp_path / "mr")
    assert image.data.dtype == np.uint16
    np.testing.assert_array_equal(image.data, volume)
    for file in (tmp_path / "mr").iterdir():  # a slope of 0.5: fractions
        ds = pydicom.dcmread(file)
        ds.RescaleSlope = "0.5"
        ds.save_as(file)
    image = read_image(tmp_path / "mr")
    assert image.data.dtype == np.float32
    np.testing.assert_allclose(image.data, volume * 0.5)
