"""Prediction speed and memory: napari-unet's engine against MONAI's sliding_window_inference.

    python benchmarks/bench_predict.py [--slices 20] [--big 4096] [--memory-slices 200]

Same network (the shipped nuclei U-Net), same normalised input, same tile (256), overlap
(0.25), Gaussian blending (sigma 0.125 of the tile), 4 tiles per batch, sigmoid before
blending in both. MONAI runs the plain network (fp32, NCHW, eager), as its users would,
first with glibc's allocator untouched and then, after the allocator setting our engine
uses is applied explicitly, with the very same allocator as ours (the honest ratio: the
``*_speedup_vs_tuned_monai`` figures); for reference also given our prepared network
(BatchNorm folded, channels_last). Our engine runs in fp32, bf16 and the default
precision at the card's tile, and as ``segment`` runs it for a user (the tile chosen per
image within a memory budget, the overlap from the model's receptive field) at the
default precision and in fp32: the ``*_default_*`` and ``*_fp32_speedup_vs_tuned_monai``
figures; ``*_card_tile_*`` are the card's tile. Prints throughput, ratios from this one run, output differences, mask Dice vs
fp32 on real images, achieved GFLOP/s (with the tiles' true overlap factor) against a
measured conv peak, a fresh process's first vs second call on the big image and how much
it grew (at the card's tile and as ``segment`` chooses it), and the RAM needed to predict a 200-slice lazily opened stack into an on-disk
zarr output versus 20 slices.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit_json, machine, table

from napari_unet.engine.planes import normalise_plane
from napari_unet.engine.predict import predict
from napari_unet.io import read_image
from napari_unet.networks.model import load_model
from napari_unet.objects.metrics import pixel_scores
from napari_unet.objects.pipeline import segment


class PeakRSS:
    """Sample this process's resident memory every 20 ms; ``peak`` in MiB above the start."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> float:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def __enter__(self) -> PeakRSS:
        self.base = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss() - self.base)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss() - self.base)


def conv_flops_per_pixel(model: torch.nn.Module) -> float:
    """Multiply-adds x 2 of every conv per input pixel, counted with forward hooks."""
    total = [0.0]

    def hook(mod: torch.nn.Module, inp: tuple, out: torch.Tensor) -> None:
        k = mod.weight.shape[2] * mod.weight.shape[3]
        if isinstance(mod, torch.nn.ConvTranspose2d):
            macs = inp[0].numel() * mod.out_channels * k
        else:
            macs = out.numel() * mod.in_channels // mod.groups * k
        total[0] += 2 * macs

    hooks = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    with torch.enable_grad():  # the module path: without autograd the decoder calls its first convs as functions
        model(torch.zeros(1, 1, 256, 256))
    for h in hooks:
        h.remove()
    return total[0] / (256 * 256)


def conv_peak_gflops(dtype: torch.dtype | None) -> float:
    """A 64->64 3x3 conv, channels_last, batch 4 of 256^2: this CPU's practical conv peak."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.randn(4, 64, 256, 256).contiguous(memory_format=torch.channels_last)
    flops = 2 * 4 * 64 * 64 * 9 * 256 * 256
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        conv(x)
        t = time.perf_counter()
        for _ in range(5):
            conv(x)
        return flops * 5 / (time.perf_counter() - t) / 1e9


def monai_predict(model: torch.nn.Module, stack: np.ndarray, card, channels_last: bool = False) -> np.ndarray:
    from monai.inferers import sliding_window_inference

    out = np.empty((card.out_channels, *stack.shape), np.float32)
    planes = stack.reshape(-1, *stack.shape[-2:])
    flat = out.reshape(card.out_channels, -1, *stack.shape[-2:])
    with torch.inference_mode():
        for z, plane in enumerate(planes):
            x = torch.from_numpy(normalise_plane(plane[None].astype(np.float32), card.normalisation))[None]
            if channels_last:  # (for a network prepared as ours is)
                x = x.contiguous(memory_format=torch.channels_last)
            y = sliding_window_inference(
                x, roi_size=(card.tile, card.tile), sw_batch_size=4, predictor=lambda t: torch.sigmoid(model(t)),
                overlap=card.overlap, mode="gaussian", sigma_scale=0.125, padding_mode="reflect",
            )  # fmt: skip
            flat[:, z] = y[0].numpy()
    return out


def real_stack(n: int, size: int) -> np.ndarray:
    """n slices of size x size cut (with reflection) from the shipped sample images."""
    from napari_unet._sample_data import NUCLEI_SAMPLES, sample_paths

    images = [np.asarray(read_image(sample_paths(k)[0]).data).astype(np.float32) for k in NUCLEI_SAMPLES]
    out = np.empty((n, size, size), np.float32)
    for z in range(n):
        img = images[z % len(images)]
        img = (img - img.min()) / max(1.0, float(img.max() - img.min())) * 4000
        tiled = np.pad(img, ((0, max(0, size - img.shape[0])), (0, max(0, size - img.shape[1]))), mode="reflect")
        out[z] = np.roll(tiled[:size, :size], shift=(z * 37, z * 53), axis=(0, 1))
    return out.astype(np.uint16)


def timed(fn, *args, **kwargs):
    with PeakRSS() as mem:
        t = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - t
    return result, seconds, mem.peak


def memory_run(n_slices: int, folder: Path) -> tuple[float, float]:
    """In a fresh process: predict an n-slice 1024^2 uint16 TIFF opened lazily into an
    on-disk zarr array; returns (seconds, peak RSS of that process in MiB)."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(n_slices), str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return figures["seconds"], figures["peak_mib"]


def memory_child(n_slices: int, folder: Path) -> None:
    import json

    import zarr

    model = load_model("nuclei")

    path = folder / f"stack{n_slices}.tif"
    rng = np.random.default_rng(0)
    base = real_stack(4, 1024)
    import tifffile

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for z in range(n_slices):
            tif.write(
                (base[z % 4] + rng.integers(0, 50, (1024, 1024))).astype(np.uint16),
                photometric="minisblack",
                contiguous=True,
            )
    img = read_image(path, lazy=True)
    out = zarr.open_array(
        str(folder / f"prob{n_slices}.zarr"),
        mode="w",
        shape=(model.card.out_channels, n_slices, 1024, 1024),
        chunks=(1, 1, 1024, 1024),
        dtype="f4",
    )
    t = time.perf_counter()
    predict(model, img.data, axes=img.axes, device="cpu", precision="bf16", out=out)
    seconds = time.perf_counter() - t
    with open("/proc/self/status") as fh:
        peak = next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM"))
    print(json.dumps({"seconds": seconds, "peak_mib": peak}))


def overlap_factor(shape: tuple[int, int], card) -> float:
    """Pixels the card's tiles compute over the pixels of the image (the overlap waste)."""
    return overlap_factor_for(shape, card.tile, card.overlap)


def overlap_factor_for(shape: tuple[int, int], tile: int, overlap: float) -> float:
    from napari_unet.engine.tiling import Grid

    grid = Grid.for_shape(shape, tile=tile, overlap=overlap, divisor=16)
    return grid.computed_pixels / float(np.prod(shape))


def first_call_child(size: int, how: str) -> None:
    """In a fresh process: the first and the second prediction of a size^2 image at the
    default precision, and how much the process grew while making them. ``how``: ``card``
    (``predict`` at the card's 256 tile: the engine's own temporaries) or ``default``
    (``segment`` as a user calls it: the tile chosen, the network's larger batch included)."""
    import json

    import napari_unet

    model = napari_unet.load_model("nuclei")
    image = real_stack(1, size)[0]
    if how == "default":

        def run_once():
            return napari_unet.segment(model, image, device="cpu", objects=False).probabilities
    else:

        def run_once():
            return napari_unet.predict(model, image, device="cpu")

    def rss() -> float:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS"))

    base = rss()
    t = time.perf_counter()
    out = run_once()
    first = time.perf_counter() - t
    with open("/proc/self/status") as fh:
        peak = next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM"))
    del out
    t = time.perf_counter()
    run_once()
    second = time.perf_counter() - t
    output_mib = model.card.out_channels * size * size * 4 / 2**20  # the float32 probabilities, every output
    print(json.dumps({"first_s": first, "second_s": second, "peak_growth_mib": peak - base, "output_mib": output_mib}))


def first_call_run(size: int, how: str) -> dict:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, __file__, "--first-call-child", str(size), how], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def sample_seams(model) -> list[dict]:
    """The shipped samples' foreground as ``segment`` tiles them by default, against the
    card's 256 tiles (the masks before the tile was chosen per image) and against the hand
    annotation, at the default precision."""
    from napari_unet._sample_data import NUCLEI_SAMPLES, sample_paths

    rows = []
    for key in NUCLEI_SAMPLES:
        image_path, truth_path = sample_paths(key)
        image = np.asarray(read_image(image_path).data)
        truth = np.asarray(read_image(truth_path).data) > 0
        chosen = segment(model, image, device="cpu", objects=False)
        card_tile = predict(model, image, device="cpu")
        fg, fg256 = chosen.probabilities[0] > model.card.threshold, card_tile[0] > model.card.threshold
        rows.append({"sample": key, "shape": "x".join(map(str, image.shape)), "tile chosen": chosen.settings.tile,
                     "overlap px": round(chosen.settings.tile * chosen.settings.overlap),
                     "Dice vs card's 256 tiles": pixel_scores(fg, fg256)["dice"],
                     "Dice vs truth (chosen)": pixel_scores(fg, truth)["dice"],
                     "Dice vs truth (256 tiles)": pixel_scores(fg256, truth)["dice"]})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--big", type=int, default=4096)
    parser.add_argument("--memory-slices", type=int, default=200)
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=True, help="also time fp32 + torch.compile"
    )
    parser.add_argument("--memory-child", nargs=2, metavar=("SLICES", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--first-call-child", nargs=2, metavar=("SIZE", "HOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(int(args.memory_child[0]), Path(args.memory_child[1]))
        return
    if args.first_call_child:
        first_call_child(int(args.first_call_child[0]), args.first_call_child[1])
        return
    # first, in fresh processes, while this one is still small
    first_calls = {how: first_call_run(args.big, how) for how in ("card", "default")}
    torch.manual_seed(0)
    model = load_model("nuclei")
    card = model.card

    rows, figures = [], {}
    inputs = {
        f"stack {args.slices}x1024^2": real_stack(args.slices, 1024),
        f"image {args.big}^2": real_stack(1, args.big)[0],
    }
    flops_px = conv_flops_per_pixel(model)
    one = real_stack(1, 1024)
    # MONAI first, in this process's default state (glibc's allocator untouched), as its users run it
    monai_predict(model, one[:1, :256, :256], card)  # import MONAI and warm it
    monai_default = {name: timed(monai_predict, model, data, card) for name, data in inputs.items()}
    # from here on, glibc keeps freed memory (what our engine sets once per process): set here,
    # explicitly, so that MONAI's second run and ours run with the very same allocator
    from napari_unet.engine.inference import pick_device, prepare_model, resolve_precision
    from napari_unet.engine.process import tune_cpu_allocator

    tuned = tune_cpu_allocator()
    default_precision = resolve_precision("auto", pick_device("cpu"))
    prepared = prepare_model(model, pick_device("cpu"), "fp32")
    # cold: the first call of our engine pays for preparing the network
    _, cold, _ = timed(predict, model, one, device="cpu", precision="fp32")
    _, cold_bf16, _ = timed(predict, model, one, device="cpu", precision="bf16")
    for name, data in inputs.items():
        mpx = data.size / 1e6
        waste = overlap_factor(data.shape[-2:], card)  # computed pixels / image pixels
        computed = flops_px * mpx * 1e6 * waste
        ref, t_monai, m_monai = monai_default[name]
        _, t_monai_tuned, _ = timed(monai_predict, model, data, card)
        rows.append({"input": name, "engine": f"MONAI fp32, same allocator as ours ({'tuned' if tuned else 'untuned'})", "Mpx/s": mpx / t_monai_tuned,
                     "x MONAI": t_monai / t_monai_tuned, "GFLOP/s": computed / t_monai_tuned / 1e9, "max |diff| vs MONAI": 0.0, "mask Dice vs fp32": 1.0,
                     "peak MiB": float("nan"), "seconds": t_monai_tuned})  # fmt: skip
        prep_out, t_monai_prepared, _ = timed(monai_predict, prepared, data, card, channels_last=True)
        rows.append({"input": name, "engine": "MONAI fp32 given our prepared network (reference)", "Mpx/s": mpx / t_monai_prepared,
                     "x MONAI": t_monai / t_monai_prepared, "GFLOP/s": computed / t_monai_prepared / 1e9,
                     "max |diff| vs MONAI": float(np.abs(prep_out - ref).max()), "mask Dice vs fp32": 1.0, "peak MiB": float("nan"),
                     "seconds": t_monai_prepared})  # fmt: skip
        ours, t_fp32, m_fp32 = timed(predict, model, data, device="cpu", precision="fp32")
        half, t_bf16, m_bf16 = timed(predict, model, data, device="cpu", precision="bf16")
        default, t_default, _ = timed(predict, model, data, device="cpu")  # precision auto, the card's tile
        seg, t_segment, _ = timed(segment, model, data, device="cpu", objects=False)  # what a user gets
        seg32, t_segment32, _ = timed(segment, model, data, device="cpu", objects=False, precision="fp32")
        for result, t, label in ((seg32, t_segment32, "fp32"), (seg, t_segment, f"default ({default_precision})")):
            chosen = result.settings
            rows.append({"input": name, "engine": f"napari-unet segment() {label}, tile {chosen.tile} chosen",
                         "Mpx/s": mpx / t, "x MONAI": t_monai / t,
                         "GFLOP/s": flops_px * mpx * 1e6 * overlap_factor_for(data.shape[-2:], chosen.tile, chosen.overlap) / t / 1e9,
                         "max |diff| vs MONAI": float(np.abs(result.probabilities - ref).max()),
                         "mask Dice vs fp32": pixel_scores(result.probabilities[0] > card.threshold, ours[0] > card.threshold)["dice"],
                         "peak MiB": float("nan"), "seconds": t})  # fmt: skip
        rows.append({"input": name, "engine": f"napari-unet default (auto = {default_precision} here)", "Mpx/s": mpx / t_default,
                     "x MONAI": t_monai / t_default, "GFLOP/s": computed / t_default / 1e9, "max |diff| vs MONAI": float(np.abs(default - ref).max()),
                     "mask Dice vs fp32": pixel_scores(default[0] > card.threshold, ours[0] > card.threshold)["dice"], "peak MiB": float("nan"),
                     "seconds": t_default})  # fmt: skip
        if args.compile:
            t = time.perf_counter()
            predict(model, one[0, :512, :512], device="cpu", precision="fp32", compile=True)  # compiles
            cold_compile = time.perf_counter() - t
            comp, t_comp, _ = timed(predict, model, data, device="cpu", precision="fp32", compile=True)
            rows.append({"input": name, "engine": f"napari-unet fp32 + torch.compile (first call {cold_compile:.0f} s)", "Mpx/s": mpx / t_comp,
                         "x MONAI": t_monai / t_comp, "GFLOP/s": computed / t_comp / 1e9,
                         "max |diff| vs MONAI": float(np.abs(comp - ref).max()), "mask Dice vs fp32": pixel_scores(comp[0] > card.threshold, ours[0] > card.threshold)["dice"],
                         "peak MiB": float("nan"), "seconds": t_comp})  # fmt: skip
            figures[f"{name.split()[0]}_compiled_fp32_speedup"] = round(t_monai / t_comp, 3)
            figures["compile_first_call_s"] = round(cold_compile, 1)
        mask32, mask16 = ours[0] > card.threshold, half[0] > card.threshold
        diff = float(np.abs(ours - ref).max())
        dice16 = pixel_scores(mask16, mask32)["dice"]
        for engine, t, mem, out in (("MONAI sliding_window fp32 (default)", t_monai, m_monai, ref), ("napari-unet fp32", t_fp32, m_fp32, ours),
                                    ("napari-unet bf16", t_bf16, m_bf16, half)):  # fmt: skip
            rows.append({"input": name, "engine": engine, "Mpx/s": mpx / t, "x MONAI": t_monai / t, "GFLOP/s": computed / t / 1e9,
                         "max |diff| vs MONAI": float(np.abs(out - ref).max()), "mask Dice vs fp32": pixel_scores(out[0] > card.threshold, mask32)["dice"],
                         "peak MiB": mem, "seconds": t})  # fmt: skip
        key = "stack" if name.startswith("stack") else "big"
        figures.update({f"{key}_monai_mpx_s": round(mpx / t_monai, 3), f"{key}_fp32_mpx_s": round(mpx / t_fp32, 3),
                        f"{key}_bf16_mpx_s": round(mpx / t_bf16, 3), f"{key}_fp32_speedup": round(t_monai / t_fp32, 3),
                        f"{key}_bf16_speedup": round(t_monai / t_bf16, 3), f"{key}_fp32_speedup_vs_tuned_monai": round(t_monai_tuned / t_segment32, 3),
                        f"{key}_card_tile_fp32_speedup_vs_tuned_monai": round(t_monai_tuned / t_fp32, 3),
                        f"{key}_segment_fp32_tile": seg32.settings.tile,
                        f"{key}_default_speedup_vs_tuned_monai": round(t_monai_tuned / t_segment, 3),
                        f"{key}_card_tile_default_speedup_vs_tuned_monai": round(t_monai_tuned / t_default, 3),
                        f"{key}_segment_tile": seg.settings.tile,
                        f"{key}_prepared_monai_vs_ours_fp32": round(t_monai_prepared / t_fp32, 3), f"{key}_overlap_factor": round(waste, 3),
                        f"{key}_fp32_max_diff": diff, f"{key}_bf16_mask_dice": round(dice16, 5)})  # fmt: skip
    samples = sample_seams(model)
    peak32, peak16 = conv_peak_gflops(None), conv_peak_gflops(torch.bfloat16)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        t_small, mem_small = memory_run(20, Path(tmp))
        t_large, mem_large = memory_run(args.memory_slices, Path(tmp))

    print(f"napari-unet prediction benchmark on {machine()}")
    print(f"network: shipped nuclei U-Net (16..256, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params), "
          f"{flops_px / 1e3:.1f} kFLOP per pixel; tile {card.tile}, overlap {card.overlap}, batch 4")  # fmt: skip
    print(f"conv peak (64->64 3x3, channels_last): fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")
    print(f"cold first call (1024^2, includes preparing the network): fp32 {cold:.2f} s, bf16 {cold_bf16:.2f} s")
    for how, what in (
        ("card", "predict() at the card's 256 tile"),
        ("default", "segment() as a user calls it, tile chosen"),
    ):
        fc = first_calls[how]
        print(f"a fresh process predicting {args.big}^2 at the default precision, {what}: first call {fc['first_s']:.2f} s, "
              f"second {fc['second_s']:.2f} s ({fc['first_s'] / fc['second_s']:.2f}x); the process grew by "
              f"{fc['peak_growth_mib']:.0f} MiB at its peak = {fc['peak_growth_mib'] / fc['output_mib']:.2f}x "
              f"the float32 output ({fc['output_mib']:.0f} MiB)")  # fmt: skip
    rows.sort(key=lambda r: (r["input"], "MONAI" not in r["engine"], "our allocator" not in r["engine"]))
    print(
        table(
            rows,
            ["input", "engine", "Mpx/s", "x MONAI", "GFLOP/s", "max |diff| vs MONAI", "mask Dice vs fp32", "seconds"],
        )
    )
    print(table(samples, list(samples[0]), floatfmt="{:.5f}"))
    print(f"memory: {args.memory_slices}-slice vs 20-slice 1024^2 uint16 stack, lazily opened, zarr output on disk (bf16): "
          f"peak RSS of the whole process {mem_large:.0f} MiB vs {mem_small:.0f} MiB; {t_large:.1f} s vs {t_small:.1f} s "
          f"(the {args.memory_slices}-slice image is {args.memory_slices * 2:.0f} MiB as uint16, its float32 output {args.memory_slices * 8:.0f} MiB)")  # fmt: skip
    card_call, default_call = first_calls["card"], first_calls["default"]
    figures.update(
        {
            "big_first_call_ratio": round(card_call["first_s"] / card_call["second_s"], 3),
            "big_peak_rss_over_output": round(card_call["peak_growth_mib"] / card_call["output_mib"], 2),
            "big_default_first_call_ratio": round(default_call["first_s"] / default_call["second_s"], 3),
            "big_default_peak_rss_over_output": round(default_call["peak_growth_mib"] / default_call["output_mib"], 2),
        }
    )
    figures["samples_min_dice_vs_card_tile"] = round(min(r["Dice vs card's 256 tiles"] for r in samples), 5)
    figures.update({"benchmark": "predict", "cold_fp32_s": round(cold, 2), "conv_peak_fp32_gflops": round(peak32), "conv_peak_bf16_gflops": round(peak16),
                    "mem_20_slices_mib": round(mem_small), f"mem_{args.memory_slices}_slices_mib": round(mem_large)})  # fmt: skip
    emit_json(figures)


if __name__ == "__main__":
    main()
