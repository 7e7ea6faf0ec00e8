"""Real DICOM series built with pydicom from the shipped CT sample, for the reader's tests.

The files are CT Image Storage objects as a scanner writes them (stored values with a rescale
intercept, positions and orientation, pixel spacing, a window), so that the reader is tested
on what a PACS export holds; their names are shuffled, since the order must come from the
positions. The patient tags hold values that a test greps every output for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PATIENT = {"PatientName": "Secretname^Jane", "PatientID": "PID-4471-SECRET", "PatientBirthDate": "19420317"}


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float] = (-150.0, -140.0, -60.0),
    intercept: float = -1024.0,
    description: str = "CHEST 5mm",
    number: int = 3,
    positions: list[float] | None = None,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    shuffle_seed: int | None = 0,
    study_uid: str | None = None,
    frame_uid: str | None = None,
    shapes: list[tuple[int, int]] | None = None,
) -> list[Path]:
    """Write ``volume`` (Z, Y, X, in HU) as one CT series into ``folder``; returns the files in slice order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), frame_uid or generate_uid()
    n = volume.shape[0]
    zs = positions if positions is not None else [origin[2] + k * spacing[0] for k in range(n)]
    rng = np.random.default_rng(shuffle_seed)
    names = [
        f"IM{number:02d}{int(v):05d}" for v in (rng.permutation(n) * 7 + 11 if shuffle_seed is not None else range(n))
    ]
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    files = []
    for k in range(n):
        ds = Dataset()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        for key, value in PATIENT.items():
            setattr(ds, key, value)
        ds.PatientSex = "F"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20250101", "120000", "1", "ACC1"
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "CT", number, description
        ds.InstanceNumber = n - k  # scanners often count from the head: never the order
        ds.Manufacturer = "pydicom test"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        plane = volume[k]
        if shapes is not None:
            plane = np.zeros(shapes[k], volume.dtype)
        position = origin[0] * np.array([1.0, 0, 0]) + origin[1] * np.array([0, 1.0, 0]) + zs[k] * normal
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        ds.PixelSpacing = [format(spacing[1], ".10g"), format(spacing[2], ".10g")]
        ds.SliceThickness = f"{spacing[0] * 2:g}"  # deliberately not the step: spacing comes from the positions
        ds.SliceLocation = f"{zs[k]:.4f}"
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{intercept:g}", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.KVP = "120"
        stored = np.round(plane.astype(np.float64) - intercept)
        ds.PixelData = np.clip(stored, 0, 65535).astype("<u2").tobytes()
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files
