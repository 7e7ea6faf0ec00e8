"""Clinical volumes in and out (#29): how fast and how lean a scan reads as TIFF, NIfTI and a
DICOM series, whether all three give the same voxels, and what writing the results back costs.

    python benchmarks/bench_clinical_io.py [--slices 200]

The shipped CT sample (pyradiomics lung1, 12x512x512 HU) is written as a TIFF, a NIfTI
(``.nii.gz``) and a DICOM series as a scanner exports it (shuffled names, a rescale intercept);
a taller scan (``--slices``, the sample's slices repeated) is written the same way. Each is read
in a fresh process (its own peak memory) three times; the DICOM SEG and NIfTI writes are timed
on the sample's lesion mask. Prints a table and, last, one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, emit_json, machine, table

# the process's own high-water mark (VmHWM starts afresh at exec; ru_maxrss keeps the parent's on Linux)
HWM = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024"
READ = f"""
import json, sys, time
import numpy as np
from napari_unet.io import read_image
t = time.perf_counter(); image = read_image(sys.argv[1]); data = np.asarray(image.data)
seconds = time.perf_counter() - t
peak = {HWM}
np.save(sys.argv[2], data)
print(json.dumps({{"seconds": seconds, "peak_mb": peak, "shape": list(data.shape), "dtype": str(data.dtype),
                  "scale": list(image.scale)}}))
"""


def read_in_fresh_process(path: Path, out: Path, repeats: int = 3) -> dict:
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", READ, str(path), str(out)], capture_output=True, text=True,
                              cwd=ROOT, check=True)  # fmt: skip
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "seconds": best["seconds"], "median_s": float(np.median([r["seconds"] for r in runs]))}


def baseline_peak_mb() -> float:
    code = f"import napari_unet.io, numpy, tifffile, nibabel, pydicom; print({HWM})"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                                check=True).stdout)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200, help="slices of the taller scan")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from napari_unet.io import read_image, write_tiff
    from napari_unet.io.dicom_seg import write_dicom_seg
    from napari_unet.io.nifti import write_nifti
    from tests._dicom import write_series

    ct = read_image(ROOT / "napari_unet" / "sample_data" / "ct_lung1.tif")
    lesion = np.asarray(read_image(ROOT / "napari_unet" / "sample_data" / "ct_lung1_labels.tif").data) > 0
    volume = np.asarray(ct.data)
    tall = np.concatenate([volume] * -(-args.slices // len(volume)))[: args.slices]
    affine = np.diag([ct.scale[0], ct.scale[1], ct.scale[2], 1.0])
    rows, figures = [], {"benchmark": "clinical_io"}
    base = baseline_peak_mb()
    with tempfile.TemporaryDirectory(prefix="bench-clinical-") as tmp:
        work = Path(tmp)
        for label, data in (("sample", volume), ("tall", tall)):
            files = {
                "TIFF": write_tiff(work / f"{label}.tif", data, axes="ZYX", scale=ct.scale, units="mm"),
                "NIfTI": write_nifti(work / f"{label}.nii.gz", data, axes="ZYX", affine=affine),
            }
            write_series(work / f"{label}_dicom", data, spacing=ct.scale, description=label)
            files["DICOM"] = work / f"{label}_dicom"
            read = {}
            for kind, path in files.items():
                read[kind] = read_in_fresh_process(Path(path), work / f"{label}_{kind}.npy")
                same = np.array_equal(np.load(work / f"{label}_{kind}.npy"), data)
                output_mb = data.nbytes / 2**20
                rows.append({"scan": f"{label} {'x'.join(map(str, data.shape))}", "format": kind,
                             "read_s": read[kind]["seconds"], "median_s": read[kind]["median_s"],
                             "peak_mb": read[kind]["peak_mb"], "over_base_mb": read[kind]["peak_mb"] - base,
                             "voxels_mb": output_mb, "same_voxels": same, "dtype": read[kind]["dtype"]})  # fmt: skip
                figures[f"{label}_{kind.lower()}_read_s"] = round(read[kind]["seconds"], 3)
                figures[f"{label}_{kind.lower()}_same"] = bool(same)
            figures[f"{label}_dicom_over_tiff"] = round(read["DICOM"]["seconds"] / read["TIFF"]["seconds"], 2)
        series = read_image(work / "sample_dicom")
        t = time.perf_counter()
        seg = write_dicom_seg(work / "lesion_seg.dcm", lesion.astype(np.uint8), series, class_names={1: "lesion"},
                              model_name="bench")  # fmt: skip
        seg_s = time.perf_counter() - t
        t = time.perf_counter()
        write_nifti(work / "lesion_mask.nii.gz", lesion.astype(np.uint8), axes="ZYX",
                    affine=np.asarray(series.metadata["affine"]), labels=True)  # fmt: skip
        nifti_s = time.perf_counter() - t
        import highdicom as hd

        frames = hd.seg.segread(seg).NumberOfFrames
    print(f"machine: {machine()}")
    print(
        f"a fresh process importing napari_unet.io and the readers peaks at {base:.0f} MB; peak_mb is the reading "
        "process's own high-water mark (VmHWM), over_base_mb what reading added"
    )
    print(table(rows, ["scan", "format", "read_s", "median_s", "peak_mb", "over_base_mb", "voxels_mb", "dtype",
                       "same_voxels"], floatfmt="{:.2f}"))  # fmt: skip
    print(f"\nwrites of the lesion mask: DICOM SEG {seg_s:.2f} s ({frames} frames, one per slice with the lesion), "
          f"NIfTI {nifti_s:.2f} s")  # fmt: skip
    figures.update(seg_write_s=round(seg_s, 3), nifti_write_s=round(nifti_s, 3), seg_frames=int(frames),
                   tall_dicom_over_base_mb=round(rows[-1]["over_base_mb"], 1),
                   tall_voxels_mb=round(rows[-1]["voxels_mb"], 1))  # fmt: skip
    emit_json(figures)


if __name__ == "__main__":
    main()
