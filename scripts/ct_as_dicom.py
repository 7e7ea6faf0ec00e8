"""Write the shipped CT sample (pyradiomics lung1, 12 slices in HU) as a DICOM series and as NIfTI,
to try the clinical readers and writers on: ``python scripts/ct_as_dicom.py demo``.

The series is what a scanner export holds (CT Image Storage, stored values with a rescale
intercept of -1024, positions and orientation, a soft-tissue window, file names that do not
follow the slices); its patient tags hold a made-up name. Built with pydicom by the same
writer the tests use (``tests/_dicom.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np

    from napari_unet.io import read_image
    from napari_unet.io.nifti import write_nifti
    from tests._dicom import write_series

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write dicom/ and ct_lung1.nii.gz into")
    args = parser.parse_args()
    out = Path(args.out)
    ct = read_image(ROOT / "napari_unet" / "sample_data" / "ct_lung1.tif")
    files = write_series(out / "dicom", ct.data, spacing=ct.scale, description="CHEST lung1")
    affine = np.diag([ct.scale[0], ct.scale[1], ct.scale[2], 1.0])
    affine[:3, 3] = (-60.0, -140.0, -150.0)
    write_nifti(out / "ct_lung1.nii.gz", ct.data, axes="ZYX", affine=affine)
    print(f"{out / 'dicom'}: {len(files)} DICOM files; {out / 'ct_lung1.nii.gz'}")


if __name__ == "__main__":
    main()
