"""New models from what a person knows: the image kind sets the scaling, the task the
outputs. The command line's ``train --scratch`` and the dock's *new model* build their
cards here. No torch."""

from __future__ import annotations

from napari_unet.networks.model import ModelCard

__all__ = ["FROM_SCRATCH", "IMAGE_KINDS", "new_model_card", "training_crop"]

#: how a model learns from nothing (a fine-tune keeps TrainConfig's defaults: lr 1e-3, patience 6):
#: a larger step, and no early give-up before it has seen enough epochs
FROM_SCRATCH = {"lr": 3e-3, "min_epochs": 10, "patience": 15}
#: the side of the crops training cuts, when the card does not resize whole images
CROP = 192


def training_crop(card: ModelCard | None) -> int:
    """The crop side for training a model of ``card``: its input size in whole-image mode."""
    return int(card.input_size) if card is not None and card.input_size else CROP


#: what a person knows about their images -> how a new model scales them
IMAGE_KINDS = {
    "fluorescence": {"kind": "percentile", "low": 1.0, "high": 99.8},
    "brightfield / H&E (RGB)": {"kind": "percentile", "low": 1.0, "high": 99.8},
    "X-ray": {"kind": "percentile", "low": 0.5, "high": 99.5},
    "CT, lung window": {"kind": "window", "preset": "lung"},
    "CT, soft-tissue window": {"kind": "window", "preset": "soft_tissue"},
    "CT, bone window": {"kind": "window", "preset": "bone"},
    "CT, brain window": {"kind": "window", "preset": "brain"},
    "MR": {"kind": "zscore"},
}


def new_model_card(
    *,
    classes: int = 1,
    class_names: list[str] | None = None,
    in_channels: int = 1,
    channels: list[int] | None = None,
    normalisation: dict | None = None,
    architecture: str = "unet",
    width: int = 16,
    depth: int = 5,
    input_size: int | None = None,
    context: int = 0,
    flips: bool = True,
    name: str = "new",
) -> ModelCard:
    """The card of a model trained from scratch, from what a person knows of the task.

    ``classes`` 1: objects to count (foreground + boundary); N >= 2: N classes including
    background, a class per pixel, named by ``class_names`` (one per class after
    background). The command line's ``train --scratch`` and the dock's *new model* build
    their cards here; every value is checked, with a message that says what to change.
    """
    from napari_unet.engine.planes import check_normalisation
    from napari_unet.networks.architectures import arch_args_for, size_divisor

    if classes < 1:
        raise ValueError(f"classes must be 1 (objects) or N >= 2 (classes including background), got {classes}")
    names = [n.strip() for n in class_names] if class_names else None
    if names is not None:
        wanted = 1 if classes == 1 else classes - 1
        if len(names) != wanted or not all(names):
            raise ValueError(
                f"{len(names)} class name(s) given ({', '.join(names)}) but {classes} classes need {wanted}: "
                "one per class after background"
            )
        if "background" in names:
            raise ValueError("'background' is class 0 already; name only the classes after it")
    arch_args = arch_args_for(architecture, width, depth)
    if input_size is not None:
        factor = size_divisor(architecture, arch_args)
        if input_size < factor or input_size % factor:
            raise ValueError(
                f"input size {input_size} is not a multiple of {factor}, the factor by which this {architecture} of "
                f"depth {depth} shrinks the image; use e.g. {max(factor, round(input_size / factor) * factor)}"
            )
    if not 0 <= context <= 3:
        raise ValueError(f"context must be 0 to 3 slices on each side, got {context}")
    if context and in_channels != 1:
        raise ValueError("2.5D context takes grayscale stacks; these images have several channels")
    if classes > 1:
        out_classes = ("background", *(names or [f"class_{i}" for i in range(1, classes)]))
        activation, outputs = "softmax", {}
    else:
        out_classes = ((names[0] if names else "foreground"), "boundary")
        activation = "sigmoid"
        outputs = {"boundary": "inner edge of each object, to part touching objects"}
    return ModelCard(
        name,
        architecture=architecture,
        arch_args=arch_args,
        in_channels=in_channels * (2 * context + 1),
        context=context,
        channels=channels,
        classes=out_classes,
        activation=activation,
        outputs=outputs,
        normalisation=check_normalisation(normalisation or {"kind": "percentile"}),
        input_size=input_size,
        flips=flips,
        tile=input_size or 256,
        overlap=0.0 if input_size else 0.25,
    )
