"""How much memory predicting one large plane takes, by image size: does anything grow with
the image beyond its own output?

    python benchmarks/bench_memory.py [--sizes 2048 4096 8192] [--no-mallopt]

Each size runs in a fresh process: the shipped nuclei model is loaded, a size^2 image is cut
from the sample images, and ``segment(..., objects=False)`` predicts it as a user's call
would (tile chosen per image, default precision, CPU). The process's growth in resident
memory at its peak (``VmHWM`` minus ``VmRSS`` before the call) is split into the float32
output every output channel needs and the rest: the tiles' working memory, the first call's
one-time costs (kernels, thread pools, lazily imported modules) and what the allocator keeps.
If the engine held a plane-sized temporary, the rest would grow with the image; if not, it
is flat and the ratio of peak growth to output falls as images grow. Memory only: the
figures do not depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import emit_json, machine, table


def child(size: int) -> None:
    from bench_predict import real_stack

    import napari_unet

    def status(key: str) -> float:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) / 1024 for line in fh if line.startswith(key))

    model = napari_unet.load_model("nuclei")
    image = real_stack(1, size)[0]
    base = status("VmRSS")
    result = napari_unet.segment(model, image, device="cpu", objects=False)
    peak = status("VmHWM") - base
    output = result.probabilities.nbytes / 2**20
    settings = result.settings
    print(json.dumps({"size": size, "tile": settings.tile, "batch": settings.batch, "precision": settings.precision,
                      "peak_growth_mib": peak, "output_mib": output}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--no-mallopt", action="store_true", help="leave glibc's allocator as it is")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    env = dict(os.environ)
    if args.no_mallopt:
        env["NAPARI_UNET_NO_MALLOPT"] = "1"
    rows = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(size)], capture_output=True, text=True,
                             env=env, check=True)  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({
            "image": f"{size}^2", "tile": f"{r['tile']} x{r['batch']} {r['precision']}",
            "output MiB": r["output_mib"], "peak growth MiB": r["peak_growth_mib"],
            "rest MiB": r["peak_growth_mib"] - r["output_mib"],
            "growth / output": r["peak_growth_mib"] / r["output_mib"],
        })  # fmt: skip
    print(f"machine: {machine()}")
    print(f"allocator: {'glibc as it is' if args.no_mallopt else 'tuned by napari-unet (mallopt)'}")
    print(table(rows, floatfmt="{:.1f}"))
    rest = [r["rest MiB"] for r in rows]
    print(f"the rest ranges {min(rest):.0f}-{max(rest):.0f} MiB over a {rows[-1]['output MiB'] / rows[0]['output MiB']:.0f}x "
          "range of output: nothing plane-sized besides the output")  # fmt: skip
    figures = {"benchmark": "memory", "mallopt": not args.no_mallopt}
    for r, size in zip(rows, args.sizes):
        figures[f"peak_over_output_{size}"] = round(r["growth / output"], 2)
        figures[f"rest_mib_{size}"] = round(r["rest MiB"])
    emit_json(figures)


if __name__ == "__main__":
    main()
