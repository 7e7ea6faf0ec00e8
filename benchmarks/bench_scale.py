"""Scale-out: a folder on a local dask cluster vs one process, and a huge image out of core.

    python benchmarks/bench_scale.py [--files 40] [--size 16384]

1. Throughput on ``--files`` 1024x1024 images: ``napari-unet predict`` in this process vs on a
   LocalCluster of 2 single-threaded workers (processes) on 127.0.0.1.
2. Peak memory per worker while a ``--size`` square uint16 image, opened lazily from TIFF,
   is predicted into an OME-Zarr store by the out-of-core engine on that cluster.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import emit_json, machine, table


def make_files(folder: Path, n: int) -> None:
    from napari_unet._sample_data import NUCLEI_SAMPLES, sample_paths
    from napari_unet.io import read_image, write_tiff

    images = [np.asarray(read_image(sample_paths(k)[0]).data).astype(np.float32) for k in NUCLEI_SAMPLES]
    for i in range(n):
        img = images[i % len(images)]
        img = np.pad(img, ((0, max(0, 1024 - img.shape[0])), (0, max(0, 1024 - img.shape[1]))), mode="reflect")[
            :1024, :1024
        ]
        write_tiff(folder / f"img{i:03d}.tif", np.roll(img, 41 * i, axis=1).astype(np.uint16))


def make_huge(path: Path, size: int) -> None:
    import tifffile

    from napari_unet._sample_data import sample_paths
    from napari_unet.io import read_image

    base = np.asarray(read_image(sample_paths("u2os")[0]).data)
    tile = np.tile(base, (int(np.ceil(1024 / base.shape[0])), int(np.ceil(1024 / base.shape[1]))))[:1024, :1024]
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(
            np.tile(tile, (size // 1024, size // 1024)), tile=(512, 512), compression="zlib", photometric="minisblack"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--block", type=int, default=2048)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    from napari_unet.cli import main as cli
    from napari_unet.engine.scale import predict_lazy
    from napari_unet.io import read_image
    from napari_unet.io.ome_zarr import write_ome_zarr

    rows, figures = [], {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        make_files(tmp / "in", args.files)
        mpx = args.files * 1024 * 1024 / 1e6
        for label, extra in (
            ("one process (2 threads)", []),
            ("LocalCluster 2 workers x 1 thread", ["--workers", "2"]),
        ):
            out = tmp / f"out{len(extra)}"
            t = time.perf_counter()
            code = cli(["predict", str(tmp / "in"), "--out", str(out), "--device", "cpu", *extra])
            seconds = time.perf_counter() - t
            rows.append(
                {"job": f"{args.files} files 1024^2: {label}", "seconds": seconds, "Mpx/s": mpx / seconds, "exit": code}
            )
        figures["files_one_process_mpx_s"] = round(rows[0]["Mpx/s"], 3)
        figures["files_cluster_mpx_s"] = round(rows[1]["Mpx/s"], 3)

        huge = tmp / "huge.tif"
        make_huge(huge, args.size)
        img = read_image(huge, lazy=True)
        float_mib = args.size * args.size * 4 * 2 / 2**20
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit="8GiB",
        )
        client = Client(cluster)
        peaks: dict[str, float] = {}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    for addr, rss in client.run(lambda: __import__("psutil").Process().memory_info().rss).items():
                        peaks[addr] = max(peaks.get(addr, 0.0), rss / 2**20)
                except Exception:
                    pass
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t = time.perf_counter()
        probs = predict_lazy(img.data, None, block=args.block, device="cpu")
        write_ome_zarr(tmp / "huge_prob.zarr", probs, axes="CYX")
        seconds = time.perf_counter() - t
        stop.set()
        sampler.join()
        client.close()
        cluster.close()
        worst = max(peaks.values()) if peaks else float("nan")
        rows.append({"job": f"{args.size}^2 uint16 -> OME-Zarr, 2 workers, block {args.block}", "seconds": seconds,
                     "Mpx/s": args.size**2 / 1e6 / seconds, "exit": 0})  # fmt: skip
        figures.update({"huge_size": args.size, "huge_seconds": round(seconds, 1), "huge_peak_worker_mib": round(worst),
                        "huge_output_float32_mib": round(float_mib)})  # fmt: skip
    print(f"napari-unet scale-out benchmark on {machine()}")
    print(table(rows, ["job", "seconds", "Mpx/s", "exit"], floatfmt="{:.2f}"))
    print(f"peak RSS per worker while predicting the {args.size}^2 image: "
          + ", ".join(f"{v:.0f} MiB" for v in peaks.values())
          + f" (the image is {args.size**2 * 2 / 2**20:.0f} MiB as uint16, {float_mib:.0f} MiB as float32 probabilities)")  # fmt: skip
    emit_json({"benchmark": "scale", **figures})


if __name__ == "__main__":
    main()
