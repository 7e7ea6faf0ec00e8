"""Fine-tuning (or training from scratch) on annotated regions of images and stacks.

A person checks the labels of some slices of a stack, or paints the checked part of one
large image: that is the *annotated region*. The loss is computed only inside it, so the
rest of the image, however wrong its labels, teaches the model nothing.

:class:`Trainer` runs as a generator of :class:`~napari_unet.jobs.Progress` events
(one per step, with loss; one per epoch, with validation figures), can be stopped at any
step from another thread (:meth:`Trainer.stop`), and always has a result: the best
checkpoint so far, scored against its parent on held-out annotated data (the quality gate).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import math
import threading
import time
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.engine.inference import pick_device, resolve_precision
from napari_unet.jobs import Progress, run_to_end
from napari_unet.training import heldout
from napari_unet.training.augment import augment
from napari_unet.training.config import TrainConfig, TrainResult
from napari_unet.training.data import (
    TrainingItem,
    _item_planes,
    _merge_stats,
    _Sampler,
    _split_validation,
    check_classes_drawn,
    dataset_normalisation,
    make_targets,
)
from napari_unet.training.losses import masked_loss

if TYPE_CHECKING:
    from napari_unet.networks.model import ModelCard

__all__ = ["TrainConfig", "TrainResult", "Trainer", "TrainingItem", "make_targets", "masked_loss", "train"]


#: a best held-out score under this is "nothing found yet" (a lesion model marking a few stray
#: pixels of it scores 0.001): early stopping waits for a model that found something to stall
NOTHING_FOUND = 0.1


def _hash(a: Any) -> str:
    arr = np.asarray(a)
    return hashlib.sha256(np.ascontiguousarray(arr).view(np.uint8)).hexdigest()[:16]


class Trainer:
    """Fine-tune ``base`` (or a new network from ``card``) on annotated data.

    Iterate :meth:`steps` (or call :func:`train`); call :meth:`stop` from any thread to
    end at the next step; :meth:`result` gives the best model so far at any time.
    """

    def __init__(
        self,
        items: Sequence[TrainingItem],
        *,
        base: Any = None,
        card: ModelCard | None = None,
        config: TrainConfig | None = None,
        name: str | None = None,
        val_items: Sequence[TrainingItem] | None = None,
    ) -> None:
        import datetime as dt

        from napari_unet.networks.architectures import network_spec
        from napari_unet.networks.model import build_model

        self.config = config or TrainConfig()
        if base is None and card is None:
            raise ValueError("give a base model to fine-tune, or a model card to train from scratch")
        self.parent = base
        if base is not None:
            card = base.card
        network_spec(card)  # an imported torchscript/ONNX network cannot be rebuilt to train: say so now
        self.name = name or f"{card.name}-finetuned-{dt.datetime.now():%Y%m%d-%H%M%S}"
        if not items:
            raise ValueError("no training images given")
        if card.normalisation.get("kind") == "dataset" and "mean" not in card.normalisation:
            card = card.replace(normalisation=dataset_normalisation(items, card))
        planes = [p for item in items for p in _item_planes(item, card)]
        self.full_size = None
        if card.input_size:  # the smallest image's plane size, to scale areas back
            from napari_unet.engine.planes import plane_layout, select_channels, with_context

            sizes = []
            for it in items:
                image, axes = select_channels(it.image, it.axes, card.channels, card.image_channels)
                image, axes = with_context(image, axes, card.context)
                sizes.append(plane_layout(tuple(image.shape), axes, card.in_channels).spatial_shape[-2:])
            self.full_size = min(sizes, key=lambda s: s[0] * s[1])
        if not planes:
            raise ValueError("nothing is annotated: mark at least one slice (or region) as checked before training")
        if all(not (p.labels[p.region] > 0).any() for p in planes):
            raise ValueError(
                "the annotated region holds no objects; annotate at least one object so the model can learn"
            )
        if card.activation == "softmax":
            check_classes_drawn(planes, card, new=base is None)
        self.rng = np.random.default_rng(self.config.seed)
        if val_items:
            self.train_planes = planes
            self.val_planes = [p for item in val_items for p in _item_planes(item, card)]
        else:
            self.train_planes, self.val_planes = _split_validation(
                planes, self.config.val_fraction, self.rng, self.config.crop
            )
        from napari_unet.objects.fit import input_statistics

        self.input_stats = _merge_stats(
            card.input_stats if base is not None else {}, input_statistics((p.image, p.labels) for p in planes)
        )
        self.items_meta = [
            {"name": it.name, "sha256": _hash(it.image), "labels_sha256": _hash(it.labels)} for it in items
        ]
        self.device = pick_device(self.config.device)
        self.precision = resolve_precision(self.config.precision, self.device)  # as prediction resolves it
        if base is not None:
            net = copy.deepcopy(base)
            net.__dict__.pop("_napari_unet_prepared", None)
        else:
            import torch

            torch.manual_seed(self.config.seed)
            net = build_model(card)
        self.card = card
        self.net = net
        self._stop = threading.Event()
        self._best_state: dict | None = None
        self._best_score = -1.0
        self._best_epoch = -1
        self.history: list[dict] = []
        self._result: TrainResult | None = None
        self._t0 = time.perf_counter()
        self._stopped = False
        #: called with (state_dict, epoch record) at every new best checkpoint, e.g. to save it
        self.on_best: Any = None

    def stop(self) -> None:
        """Ask the run to end after the current step (thread-safe)."""
        self._stop.set()

    @property
    def has_checkpoint(self) -> bool:
        """True once a validated epoch has given a best checkpoint to keep."""
        return self._best_state is not None

    def interrupted(self) -> TrainResult:
        """The result of a run stopped from outside its loop (Ctrl-C): the best checkpoint."""
        self._stopped = True
        return self.result()

    def _snapshot(self) -> dict:
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.net.state_dict().items()}

    def validation_settings(self, card: Any) -> Any:
        """The settings held-out planes are segmented with (:func:`heldout.validation_settings`)."""
        return heldout.validation_settings(card, self.device, self.precision)

    def validation_results(self, model: Any) -> list[Any]:
        """``model``'s :class:`~napari_unet.objects.pipeline.Segmentation` of each held-out plane,
        made by :func:`napari_unet.segment` as every other caller makes it."""
        return heldout.segment_planes(model, self.val_planes, self.validation_settings(model.card))

    def evaluate(self, model: Any) -> dict:
        """Held-out figures of ``model`` (:func:`heldout.heldout_scores`)."""
        return heldout.heldout_scores(model, self.val_planes, self.validation_settings(model.card))

    def steps(self) -> Generator[Progress, None, TrainResult]:
        import torch

        cfg = self.config
        net = self.net.to(self.device)
        if self.device.type == "cpu":
            from napari_unet.engine.layout import channels_last
            from napari_unet.engine.process import tune_cpu_allocator

            tune_cpu_allocator()
            net = channels_last(net)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total_steps = cfg.epochs * cfg.steps_per_epoch

        def lr_factor(s: int) -> float:
            # warm-up, then cosine decay over the run: its steps, or its time budget when that
            # ends it first (a 60 s run with room for 10,000 epochs must still decay in 60 s)
            done = s / total_steps
            if cfg.max_seconds:
                done = max(done, (time.perf_counter() - self._t0) / cfg.max_seconds)
            return min(1.0, (s + 1) / max(1, cfg.warmup_steps)) * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        gen = torch.Generator().manual_seed(cfg.seed)
        sampler = _Sampler(self.train_planes, cfg.crop, cfg.foreground_bias, self.rng)
        if self.parent is not None:
            self._best_score = -1.0
        step, bad_epochs = 0, 0
        ema = {k: v.detach().clone() for k, v in net.state_dict().items()} if cfg.ema else None
        for epoch in range(cfg.epochs):
            net.train()
            losses = []
            for _ in range(cfg.steps_per_epoch):
                if self._stop.is_set() or (cfg.max_seconds and time.perf_counter() - self._t0 > cfg.max_seconds):
                    if epoch == 0 and not self._stop.is_set():
                        _budget_too_short(cfg, len(losses), time.perf_counter() - self._t0)
                    break
                x, y, m = (torch.from_numpy(a).to(self.device) for a in sampler.batch(cfg.batch_size))
                x, y, m = augment(x, y, m, gen, level=cfg.augmentation, flips=self.card.flips)
                if self.device.type == "cpu":
                    x = channels_last(x)
                with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
                    logits = net(x)
                loss = masked_loss(logits, y, m, self.card.activation, loss=cfg.loss, class_weights=cfg.class_weights)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                step += 1
                if ema is not None:
                    with torch.no_grad():
                        for k, v in net.state_dict().items():
                            if v.dtype.is_floating_point:
                                ema[k].lerp_(v, 1 - cfg.ema)
                            else:
                                ema[k].copy_(v)
                losses.append(loss.item())
                yield Progress(step, total_steps, {"epoch": epoch, "loss": losses[-1], "lr": opt.param_groups[0]["lr"],
                                                   "elapsed": time.perf_counter() - self._t0})  # fmt: skip
            if not losses:
                self._stopped = True
                break
            net.eval()
            if ema is not None:  # score (and keep) the averaged weights
                raw = {k: v.detach().clone() for k, v in net.state_dict().items()}
                net.load_state_dict(ema)
            scores = self.evaluate(net)
            if self.card.activation == "softmax" and cfg.hard_negatives:
                sampler.set_hard_negatives(
                    heldout.false_positives(net, self.train_planes, self.validation_settings(net.card))
                )
            record = {
                "epoch": epoch,
                "step": step,
                "loss": float(np.mean(losses)),
                "val_dice": scores["dice"],
                "val_f1": scores["f1"],
                "elapsed": time.perf_counter() - self._t0,
            }
            if "classes" in scores:
                record["val_dice_per_class"] = {v["name"]: v["dice"] for v in scores["classes"].values()}
            self.history.append(record)
            # checkpoints are chosen on held-out Dice and object F1 together: on a few dozen
            # held-out objects F1 alone swings from epoch to epoch, Dice is steadier
            score = scores["dice"] if math.isnan(scores["f1"]) else 0.5 * (scores["dice"] + scores["f1"])
            # while nothing is found yet (a new model's first epochs score 0) the latest, most
            # trained weights are kept: the first epoch's are no better, only less trained
            if math.isnan(score):  # the held-out data holds nothing to score: the latest weights are kept
                self._best_epoch, bad_epochs = epoch, 0
                self._best_state = self._snapshot()
            elif score > self._best_score or score == self._best_score <= 0:
                self._best_score, self._best_epoch, bad_epochs = score, epoch, 0
                self._best_state = self._snapshot()
                if self.on_best is not None:
                    self.on_best(self._best_state, record)
            elif self._best_score < NOTHING_FOUND:  # a new model's first epochs: not a plateau to stop on
                bad_epochs = 0
            else:
                bad_epochs += 1
            if ema is not None:
                net.load_state_dict(raw)  # training goes on from the raw weights
            yield Progress(step, total_steps, {**record, "best_epoch": self._best_epoch, "kind": "epoch"})
            elapsed = time.perf_counter() - self._t0
            patience_over = (
                bad_epochs >= cfg.patience
                and epoch + 1 >= cfg.min_epochs
                and (not cfg.max_seconds or elapsed > 0.5 * cfg.max_seconds)
            )
            if (
                patience_over
                or self._stop.is_set()
                or (cfg.max_seconds and time.perf_counter() - self._t0 > cfg.max_seconds)
            ):
                self._stopped = self._stop.is_set()
                break
        return self.result()

    def result(self) -> TrainResult:
        """The best checkpoint so far with the quality gate's verdict (computed once)."""
        if self._result is not None:
            return self._result
        import torch

        from napari_unet.networks.model import build_model

        best = build_model(self.card)
        if self._best_state is not None:
            best.load_state_dict(self._best_state)
        elif self.parent is not None:
            best.load_state_dict(self.parent.state_dict())
        else:
            best.load_state_dict({k: v.cpu() for k, v in self.net.state_dict().items()})
        best.eval()
        new_scores = self.evaluate(best)
        parent_scores = self.evaluate(self.parent) if self.parent is not None else None
        better = None
        if parent_scores is not None:
            key = "f1" if not math.isnan(new_scores["f1"]) and not math.isnan(parent_scores["f1"]) else "dice"
            better = new_scores[key] > parent_scores[key]
        postprocess = dict(self.card.postprocess)
        if self.card.activation == "softmax" and self.parent is None:
            postprocess["min_area"] = heldout.smallest_region_area(
                self.train_planes + self.val_planes, self.card, self.full_size
            )
        card = self.card.replace(
            postprocess=postprocess,
            name=self.name,
            parent=self.parent.card.name if self.parent is not None else None,
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            training={
                "images": self.items_meta,
                "settings": {k: getattr(self.config, k) for k in self.config.__dataclass_fields__},
                "device": str(self.device),
                "precision": self.precision,
                "epochs_run": len(self.history),
                "best_epoch": self._best_epoch,
                "train_planes": len(self.train_planes),
                "val_planes": len(self.val_planes),
                "seconds": round(time.perf_counter() - self._t0, 1),
                "torch": torch.__version__,
                "history": [
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in self.history
                ],
            },
            input_stats=self.input_stats,
            receptive_field=_receptive_field(best),
            metrics={
                "heldout_dice": new_scores["dice"],
                "heldout_f1": new_scores["f1"],
                **({"heldout_classes": new_scores["classes"]} if "classes" in new_scores else {}),
                **(
                    {"parent_heldout_dice": parent_scores["dice"], "parent_heldout_f1": parent_scores["f1"]}
                    if parent_scores
                    else {}
                ),
            },
        )
        best.card = card
        self._result = TrainResult(
            best,
            card,
            self.history,
            self._best_epoch,
            self._best_score,
            parent_scores,
            new_scores,
            better,
            self._stopped,
            time.perf_counter() - self._t0,
        )
        return self._result


def _receptive_field(net: Any) -> dict:
    """The trained network's measured receptive field, for its card (a network that cannot be
    probed so, e.g. a whole-image one too small for the probe, records nothing)."""
    from napari_unet.networks.architectures import measure_receptive_field

    try:
        return measure_receptive_field(net)
    except (RuntimeError, ValueError):
        return {}


def _budget_too_short(cfg: TrainConfig, steps_done: int, elapsed: float) -> None:
    """The time budget ended inside the first epoch: say how long an epoch takes here."""
    per_step = elapsed / max(1, steps_done)
    epoch = per_step * cfg.steps_per_epoch
    raise ValueError(
        f"the time budget ({cfg.max_seconds:g} s) ended before the first epoch: {steps_done} of its "
        f"{cfg.steps_per_epoch} steps ran in {elapsed:.1f} s, so an epoch takes about {epoch:.0f} s here; "
        f"give at least {math.ceil(3 * epoch)} s (a few epochs)"
    )


def train(items: Sequence[TrainingItem], **kwargs: Any) -> TrainResult:
    """Run a :class:`Trainer` to the end and return its result."""
    return run_to_end(Trainer(items, **kwargs).steps())
