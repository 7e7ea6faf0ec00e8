"""The annotation loop, simulated: which order of checking slices gets a volume right soonest.

    python benchmarks/bench_annotation.py --pyradiomics pyradiomics-3.0.1/data \\
        --stardist stardist/data/images --nilearn nilearn/datasets/data [--rounds 5] [--k 2]

A simulated person starts from 2 checked slices (the lesion's middle slice and the slice
farthest from it; for volumes full of structure, two slices at a third and two thirds).
Each round they check ``--k`` more slices, drawing them perfectly (the ground truth), in one
of three orders:

- ``suggest``: the unchecked slices :mod:`napari_unet.objects.suggest` ranks first;
- ``even``: the unchecked slice farthest from every checked one (even spacing);
- ``random``: at random (seeded, the same for every volume);

and the model is trained on all checked slices for a fixed number of steps (a new model
from scratch in the first round, fine-tuned from the last round's after; the shipped nuclei
model fine-tuned for the nuclei stack). The result is what the person has: the checked slices
as drawn, the model's prediction on the others; its Dice against the truth is plotted against
slices checked (``--png``), with the slices each order needs to reach Dice 0.8.

The suggest order's rankings are also scored against the model's real per-slice error (the
pixels its prediction gets wrong on each unchecked slice): Spearman correlation and the error
of the three top-ranked slices against the median slice's, for each uncertainty method.

Volumes (each optional, from the wheels and sdists named in DATA.md): pyradiomics lung1 (CT)
and brain1 (MR) lesions (lung2 is reserved and never read); the stardist wheel's synthetic 3D
nuclei; the nilearn MNI template's grey/white matter (a real MR volume, 2 mm). Training steps
are fixed, not seconds, so that a busy machine changes the times but not the curves.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import emit_json, line_charts, machine, peak_rss_mb, table

from napari_unet.io import read_image
from napari_unet.objects.suggest import combine, rank_slices, uncertainty_parts

ORDERS = ("suggest", "even", "random")


# --------------------------------------------------------------------------- volumes


def volumes(args: argparse.Namespace) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if args.pyradiomics is not None:
        windows = {
            "lung1": {"kind": "window", "preset": "lung"},
            "brain1": {"kind": "percentile", "low": 1, "high": 99.8},
        }
        for name, norm in windows.items():  # (lung2 is reserved for independent evaluation: never read)
            image = np.asarray(read_image(args.pyradiomics / f"{name}_image.nrrd").data)
            truth = (np.asarray(read_image(args.pyradiomics / f"{name}_label.nrrd").data) > 0).astype(np.int32)
            out[f"{name} lesion"] = {"image": image, "truth": truth, "kind": "region", "norm": norm}
    if args.stardist is not None:
        image = np.asarray(read_image(args.stardist / "img3d.tif").data)
        truth = np.asarray(read_image(args.stardist / "mask3d.tif").data).astype(np.int32)
        out["3D nuclei"] = {"image": image, "truth": truth, "kind": "nuclei"}
    if args.nilearn is not None:
        t1 = np.asarray(read_image(args.nilearn / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz").data)
        gm = np.asarray(read_image(args.nilearn / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz").data)
        wm = np.asarray(read_image(args.nilearn / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz").data)
        sub = (slice(None, None, 2),) * 3  # 2 mm
        truth = np.where((gm > 127) & (gm >= wm), 1, np.where(wm > 127, 2, 0)).astype(np.int32)[sub]
        keep = [z for z in range(len(truth)) if (truth[z] > 0).sum() > 200]  # slices with brain in them
        out["MR grey/white"] = {"image": t1[sub][keep], "truth": truth[keep], "kind": "classes",
                                "norm": {"kind": "percentile", "low": 1, "high": 99.8}}  # fmt: skip
    return out


def first_slices(truth: np.ndarray, kind: str) -> list[int]:
    depth = len(truth)
    if kind == "region":  # the lesion's middle slice, and the slice farthest from it
        on = [z for z in range(depth) if truth[z].any()]
        mid = on[len(on) // 2]
        return sorted({mid, 0 if mid > depth // 2 else depth - 1})
    return sorted({depth // 3, 2 * depth // 3})


# --------------------------------------------------------------------------- the model


def new_card(volume: dict) -> object:
    from napari_unet.networks.recipes import new_model_card

    if volume["kind"] == "region":
        return new_model_card(classes=2, class_names=["lesion"], normalisation=volume["norm"], depth=4, name="lesion")
    return new_model_card(classes=3, class_names=["grey", "white"], normalisation=volume["norm"], depth=4, name="gm-wm")


def train_round(volume: dict, checked: list[int], model: object, steps: int, seed: int) -> tuple[object, float]:
    from napari_unet.networks.model import load_model
    from napari_unet.networks.recipes import FROM_SCRATCH
    from napari_unet.training.train import TrainConfig, Trainer, TrainingItem

    truth = volume["truth"]
    item = TrainingItem(volume["image"], truth, sorted(checked), "volume", "ZYX")
    scratch = model is None and volume["kind"] != "nuclei"
    crop = min(128, *truth.shape[1:]) // 16 * 16
    config = TrainConfig(epochs=max(1, steps // 10), steps_per_epoch=10, crop=max(32, crop), batch_size=4,
                         seed=seed, patience=10_000, min_epochs=0, **({"lr": FROM_SCRATCH["lr"]} if scratch else {}))  # fmt: skip
    if model is None and volume["kind"] == "nuclei":
        model = load_model("nuclei")
    t = time.perf_counter()
    trainer = (
        Trainer([item], base=model, config=config)
        if model is not None
        else Trainer([item], card=new_card(volume), config=config)
    )
    for _ in trainer.steps():
        pass
    return trainer.result().model, time.perf_counter() - t


def decisions(prob: np.ndarray, volume: dict) -> np.ndarray:
    if volume["kind"] == "nuclei":
        return (prob[0] > 0.5).astype(np.int32)
    return np.argmax(prob, axis=0).astype(np.int32)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    values = [v for v in np.unique(truth) if v > 0]
    scores = [2 * ((pred == v) & (truth == v)).sum() / max(1, (pred == v).sum() + (truth == v).sum()) for v in values]
    return float(np.mean(scores))


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


# --------------------------------------------------------------------------- the loop


def next_slices(
    order: str, checked: list[int], depth: int, k: int, ranking: list, rng: np.random.Generator
) -> list[int]:
    free = [z for z in range(depth) if z not in checked]
    if order == "suggest":
        return [s.z for s in ranking[:k]]
    if order == "random":
        return sorted(int(z) for z in rng.choice(free, size=min(k, len(free)), replace=False))
    chosen: list[int] = []
    for _ in range(min(k, len(free))):  # even: farthest from every checked (and chosen) slice
        taken = [*checked, *chosen]
        chosen.append(max((z for z in free if z not in chosen), key=lambda z: (min(abs(z - c) for c in taken), -z)))
    return chosen


def run_order(name: str, volume: dict, order: str, args: argparse.Namespace) -> dict:
    truth = volume["truth"]
    depth = len(truth)
    rng = np.random.default_rng(args.seed)
    checked = first_slices(truth, volume["kind"] if volume["kind"] == "region" else "dense")
    model, curve, ranks, seconds = None, [], [], 0.0
    for r in range(args.rounds + 1):
        model, s = train_round(volume, checked, model, args.first_steps if r == 0 else args.steps, args.seed)
        seconds += s
        t = time.perf_counter()
        prob, parts = uncertainty_parts(model, volume["image"], axes="ZYX", flips=order == "suggest")
        pred = decisions(prob, volume)
        result = pred.copy()
        result[checked] = truth[checked]
        curve.append((len(checked), dice(result, truth)))
        wrong = [int((pred[z] != truth[z]).sum()) for z in range(depth)]
        ranking = []
        if order == "suggest":
            for method in ("margin", "flips", "both"):
                u, _ = combine(parts, method)
                ranked = rank_slices(u, checked=checked)
                errors = [wrong[s.z] for s in ranked]
                ranks.append({"method": method, "round": r, "spearman": spearman([s.score for s in ranked], errors),
                              "top3 error": float(np.mean(errors[:3])), "median error": float(np.median(errors))})  # fmt: skip
                if method == args.method:
                    ranking = ranked
        seconds += time.perf_counter() - t
        if r < args.rounds:
            checked = sorted({*checked, *next_slices(order, checked, depth, args.k, ranking, rng)})
    reach = next((n for n, d in curve if d >= 0.8), None)
    print(f"{name}, {order}: " + ", ".join(f"{n} -> {d:.3f}" for n, d in curve) + f" ({seconds:.0f} s)", flush=True)
    return {"volume": name, "order": order, "curve": curve, "reach": reach, "ranks": ranks, "seconds": seconds}


def plot(runs: list[dict], path: Path) -> None:
    panels: dict[str, dict] = {}
    for r in runs:
        panels.setdefault(r["volume"], {})[r["order"]] = r["curve"]
    line_charts(panels, path, xlabel="slices checked", ylabel="Dice", hline=0.8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pyradiomics", type=Path, default=None, help="pyradiomics-3.0.1/data")
    parser.add_argument("--stardist", type=Path, default=None, help="the stardist wheel's stardist/data/images")
    parser.add_argument("--nilearn", type=Path, default=None, help="the nilearn wheel's nilearn/datasets/data")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--k", type=int, default=2, help="slices checked per round")
    parser.add_argument("--first-steps", type=int, default=300, help="training steps of the first model")
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps per round")
    parser.add_argument("--method", default="both", help="the uncertainty suggest ranks by")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="run only the volumes whose name holds this text")
    parser.add_argument("--png", type=Path, default=Path("annotation_loop.png"))
    args = parser.parse_args()
    vols = {name: v for name, v in volumes(args).items() if args.only is None or args.only in name}
    if not vols:
        parser.error("give at least one of --pyradiomics, --stardist, --nilearn")
    import torch

    torch.manual_seed(args.seed)
    runs = [run_order(name, vol, order, args) for name, vol in vols.items() for order in ORDERS]
    print(f"annotation loop: {args.rounds} rounds of {args.k} slices, {args.first_steps}+{args.steps} steps, "
          f"seed {args.seed}, on {machine()}")  # fmt: skip
    rows = []
    for r in runs:
        row = {"volume": r["volume"], "order": r["order"], "slices to 0.8": r["reach"] or f">{r['curve'][-1][0]}",
               "s": round(r["seconds"], 1)}  # fmt: skip
        row.update({f"dice@{n}": round(d, 3) for n, d in r["curve"]})
        rows.append(row)
    print(table(rows, list(dict.fromkeys(k for row in rows for k in row))))
    ranks = [dict(volume=r["volume"], **x) for r in runs for x in r["ranks"]]
    summary = []
    for name in dict.fromkeys(r["volume"] for r in ranks):
        for method in ("margin", "flips", "both"):
            sel = [x for x in ranks if x["volume"] == name and x["method"] == method]
            summary.append({"volume": name, "method": method,
                            "spearman (mean of rounds)": float(np.nanmean([x["spearman"] for x in sel])),
                            "rounds top3 > median": f"{sum(x['top3 error'] > x['median error'] for x in sel)}/{len(sel)}"})  # fmt: skip
    print("suggest's ranking against the model's real per-slice error (pixels wrong), unchecked slices:")
    print(table(summary))
    plot(runs, args.png)
    print(f"curves: {args.png}; peak memory {peak_rss_mb():.0f} MiB")
    halves = []
    for name in dict.fromkeys(r["volume"] for r in runs):
        by = {r["order"]: r["reach"] for r in runs if r["volume"] == name}
        if by["suggest"] is not None and (by["random"] is None or by["suggest"] <= by["random"] / 2):
            halves.append(name)
    emit_json({"benchmark": "annotation", "rounds": args.rounds, "k": args.k, "method": args.method,
               "slices_to_0.8": {f"{r['volume']}|{r['order']}": r["reach"] for r in runs},
               "suggest_at_most_half_of_random_on": halves,
               "spearman": {f"{s['volume']}|{s['method']}": round(s["spearman (mean of rounds)"], 3) for s in summary}})  # fmt: skip


if __name__ == "__main__":
    main()
