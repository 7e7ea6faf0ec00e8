"""The Predict dock's *advanced* form: how an image is tiled, test-time augmentation and,
for a model that finds objects, which objects are kept and how touching ones are parted.

A thin view over :class:`~napari_unet.objects.settings.Settings`: it shows the chosen model's card
(:meth:`AdvancedForm.show_card`) and gives back the settings a person changed
(:meth:`AdvancedForm.overrides`); hidden, it changes nothing.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, FloatSpinBox, SpinBox

SEED_TIPS = {
    "seed_threshold": "Each object grows from a seed where the model's distance to the object's edge is above this: "
    "raise it to part touching objects more, lower it to keep an uneven object whole.",
    "boundary_threshold": "Each object grows from a seed where the model's boundary probability is below this: lower "
    "it to part touching objects more, raise it to keep an uneven object whole.",
}


class AdvancedForm:
    """Tile, overlap, batch, test-time augmentation; for an objects model the smallest share
    of the median object kept and the seed threshold of its outputs."""

    def __init__(self) -> None:
        self.tile = SpinBox(label="tile", value=256, min=32, max=2048, step=32, visible=False)
        self.overlap = FloatSpinBox(label="overlap", value=0.25, min=0.0, max=0.9, step=0.05, visible=False)
        self.batch = SpinBox(label="batch", value=4, min=1, max=64, visible=False)
        self.tta = CheckBox(label="average 8 flips and turns (8x slower)", value=False, visible=False)
        self.tta.tooltip = (
            "Test-time augmentation: each tile is also predicted mirrored and turned, and the results averaged."
        )
        self.min_share = FloatSpinBox(label="drop objects under this share of the median one", value=0.0, min=0.0,
                                      max=0.95, step=0.05, visible=False)  # fmt: skip
        self.min_share.tooltip = (
            "Objects smaller than this share of the image's median object are dropped (fragments and specks); 0 keeps "
            "them all, e.g. small mitotic nuclei beside large ones. An object cut by the image border is always kept."
        )
        # how readily touching objects are parted: the setting that places the chosen model's seeds
        self.seed = FloatSpinBox(label="seed threshold", value=0.5, min=0.05, max=0.95, step=0.05, visible=False)
        self.objects_model = True  # (the chosen model's card says, in show_card)
        self.seed_setting: str | None = None
        self._on = False
        # the fields a person changed since the card was shown: only those are given back, so that
        # opening the form changes nothing (the tiling stays chosen per image, the rest the card's)
        self.edited: set[str] = set()
        self._showing_card = False
        for name in self.FIELDS:
            getattr(self, name).changed.connect(lambda *_, name=name: self._mark(name))

    #: the form's fields, each the widget attribute of a setting
    FIELDS = ("tile", "overlap", "batch", "tta", "min_share", "seed")

    def _mark(self, name: str) -> None:
        if not self._showing_card:
            self.edited.add(name)

    @property
    def widgets(self) -> list[Any]:
        return [self.tile, self.overlap, self.batch, self.tta, self.min_share, self.seed]

    def show(self, on: bool) -> None:
        """Show the form (*advanced* ticked) or hide it; only what fits the model shows."""
        self._on = bool(on)
        for w in (self.tile, self.overlap, self.batch, self.tta):
            w.visible = self._on
        self.min_share.visible = self._on and self.objects_model
        self.seed.visible = self._on and self.seed_setting is not None

    def show_card(self, card: Any) -> None:
        """The chosen model's own values."""
        from napari_unet.objects.settings import seed_setting

        post = card.postprocess or {}
        self.objects_model = card.activation != "softmax"
        self.seed_setting = seed_setting(card)
        self._showing_card = True  # (values shown, not edited; a new model's card starts afresh)
        try:
            self.tile.value = card.tile
            self.overlap.value = card.overlap
            self.min_share.value = float(post.get("min_relative_area", 0.0))
            if self.seed_setting is not None:
                self.seed.value = float(post.get(self.seed_setting, 0.5))
                self.seed.tooltip = SEED_TIPS[self.seed_setting]
        finally:
            self._showing_card = False
        self.edited.clear()
        self.show(self._on)

    def overrides(self, card: Any) -> dict[str, Any]:
        """The settings a person edited in the form, for ``card`` (nothing while it is hidden
        or untouched: the tiling is then chosen per image and the rest are the card's)."""
        from napari_unet.objects.settings import seed_setting

        if not self._on:
            return {}
        given: dict[str, Any] = {}
        if "tile" in self.edited:
            given["tile"] = int(self.tile.value)
        if "overlap" in self.edited:
            given["overlap"] = float(self.overlap.value)
        if "batch" in self.edited:
            given["batch"] = int(self.batch.value)
        if "tta" in self.edited:
            given["tta"] = bool(self.tta.value)
        if card.activation != "softmax" and "min_share" in self.edited:
            given["min_relative_area"] = float(self.min_share.value)
        name = seed_setting(card)
        if name is not None and name == self.seed_setting and "seed" in self.edited:  # this model's seed setting
            given[name] = float(self.seed.value)
        return given
