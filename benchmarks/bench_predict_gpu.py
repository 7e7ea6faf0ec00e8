"""Prediction on a CUDA GPU: napari-unet's engine against MONAI's sliding_window_inference
under the same autocast.

    python benchmarks/bench_predict_gpu.py [--slices 20] [--big 4096]

Same network (the shipped nuclei U-Net), same image, tile 256, overlap 0.25, Gaussian
blending, sigmoid before blending. MONAI gets the image on the GPU and blends on the GPU
(``sw_device`` and ``device`` cuda), with the plain network, in fp32 and under bf16
autocast; for reference also given our prepared network (BatchNorm folded,
channels_last). Ours runs as a user gets it: ``segment`` (tile and batch chosen for the
GPU's free memory, bf16), and in fp32 at the card's tile. Each timing is the best of 3
after a warm-up, with ``torch.cuda.synchronize()``; ratios come from this one run. The
engine's output comes back to host memory (numpy), MONAI's is left on the GPU: that
favours MONAI.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import emit_json, machine, table

from napari_unet.engine.inference import prepare_model
from napari_unet.engine.planes import normalise_plane
from napari_unet.engine.predict import predict
from napari_unet.networks.model import load_model
from napari_unet.objects.metrics import pixel_scores
from napari_unet.objects.pipeline import segment


def real_stack(n: int, size: int) -> np.ndarray:
    from bench_predict import real_stack as cpu_real_stack

    return cpu_real_stack(n, size)


def best_of(fn, repeats: int = 3) -> tuple[object, float]:
    fn()  # warm-up (kernels chosen, memory pooled)
    torch.cuda.synchronize()
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return out, best


def monai_run(net, stack: np.ndarray, card, dtype, channels_last: bool = False) -> list:
    from monai.inferers import sliding_window_inference

    outs = []
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        for plane in stack.reshape(-1, *stack.shape[-2:]):
            x = torch.from_numpy(normalise_plane(plane[None].astype(np.float32), card.normalisation))[None].cuda()
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = sliding_window_inference(
                x, roi_size=(card.tile, card.tile), sw_batch_size=8, predictor=lambda t: torch.sigmoid(net(t)).float(),
                overlap=card.overlap, mode="gaussian", sigma_scale=0.125, padding_mode="reflect",
                sw_device="cuda", device="cuda",
            )  # fmt: skip
            outs.append(y[0])
    return outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--big", type=int, default=4096)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here; this benchmark runs on a GPU (bench_predict.py is the CPU one)")
    print(f"machine: {machine()}")
    model = load_model("nuclei")
    card = model.card
    plain = load_model("nuclei").cuda().eval()
    prepared = prepare_model(model, torch.device("cuda"), "bf16")
    rows, figures = [], {}
    for label, data in (("big", real_stack(1, args.big)), ("stack", real_stack(args.slices, 1024))):
        mpx = data.size / 1e6
        fp32_ref, t_fp32 = best_of(lambda d=data: predict(model, d, device="cuda", precision="fp32", tile=card.tile))
        seg, t_default = best_of(lambda d=data: segment(model, d, device="cuda", objects=False))
        m32, t_m32 = best_of(lambda d=data: monai_run(plain, d, card, None))
        _, t_mbf = best_of(lambda d=data: monai_run(plain, d, card, torch.bfloat16))
        _, t_mprep = best_of(lambda d=data: monai_run(prepared, d, card, torch.bfloat16, True))
        monai32 = np.stack([t.cpu().numpy() for t in m32], 1).reshape(fp32_ref.shape)
        diff = float(np.abs(fp32_ref - monai32).max())
        dice = pixel_scores(seg.probabilities[0] > 0.5, fp32_ref[0] > 0.5)["dice"]
        for mode, seconds, ref in (
            ("ours, default (segment: bf16, tile chosen)", t_default, t_mbf),
            ("ours, fp32, card tile", t_fp32, t_m32),
            ("MONAI fp32, plain network", t_m32, t_m32),
            ("MONAI bf16 autocast, plain network", t_mbf, t_mbf),
            ("MONAI bf16 autocast, our prepared network", t_mprep, t_mbf),
        ):
            rows.append({"image": f"{label} {data.shape}", "mode": mode, "seconds": seconds, "Mpx/s": mpx / seconds,
                         "x MONAI same autocast": ref / seconds})  # fmt: skip
        figures[f"gpu_{label}_default_speedup_vs_monai_same_autocast"] = t_mbf / t_default
        figures[f"gpu_{label}_fp32_speedup_vs_monai_fp32"] = t_m32 / t_fp32
        figures[f"gpu_{label}_fp32_max_diff_vs_monai"] = diff
        figures[f"gpu_{label}_default_mask_dice_vs_fp32"] = dice
        figures[f"gpu_{label}_default_tile"] = seg.settings.tile
        print(f"{label}: segment chose tile {seg.settings.tile}, batch {seg.settings.batch}; fp32 max |diff| vs MONAI "
              f"{diff:.2e}; default mask Dice vs fp32 {dice:.5f}")  # fmt: skip
    print(table(rows, ["image", "mode", "seconds", "Mpx/s", "x MONAI same autocast"]))
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    emit_json(figures)


if __name__ == "__main__":
    main()
