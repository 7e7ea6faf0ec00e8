"""Make the README's screenshots in a real napari window, one per step of the loop.

    xvfb-run -a python scripts/screenshots.py

Drives the real dock (no mocks): opens the RPE1 sample, predicts with the shipped model,
paints a correction and marks the slice checked, fine-tunes for a few seconds, counts.
Writes docs/images/{sample,predict,correct,finetune,count}.png.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def wait(app, widget, timeout: float = 300) -> None:
    t = time.time()
    while widget.worker is not None and time.time() - t < timeout:
        app.processEvents()
        time.sleep(0.01)
    for _ in range(20):
        app.processEvents()


def shot(viewer, name: str) -> None:
    viewer.screenshot(str(OUT / f"{name}.png"), canvas_only=False)
    print(f"wrote {OUT / f'{name}.png'}")


def main() -> None:
    os.environ.setdefault("NAPARI_UNET_MODELS", tempfile.mkdtemp(prefix="napari-unet-models-"))
    os.environ.setdefault("NAPARI_UNET_SESSIONS", tempfile.mkdtemp(prefix="napari-unet-sessions-"))
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from napari_unet._widgets.dock import UNetDock
    from napari_unet.train import TrainConfig

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-unet")
    app = QApplication.instance()
    viewer.window.resize(1400, 860)
    viewer.open_sample("napari-unet", "rpe1")
    truth = viewer.layers[-1]
    truth.contour = 2
    shot(viewer, "sample")

    truth.visible = False
    dock = UNetDock(viewer)
    viewer.window.add_dock_widget(dock, name="U-Net", area="right")
    image = viewer.layers["rpe1_2022-05-25_1"]
    dock.predict_step.image.value = image
    dock.predict_step.run()
    wait(app, dock.predict_step)
    labels = viewer.layers[f"{image.name} labels"]
    labels.contour = 0
    labels.opacity = 0.5
    dock.setCurrentIndex(0)
    shot(viewer, "predict")

    dock.setCurrentIndex(1)
    dock.correct_step.labels_layer.value = labels
    camera = getattr(viewer, "scene", viewer).camera  # viewer.scene from napari 0.9 on
    camera.zoom = 2.5
    camera.center = (380, 430)
    labels.selected_label = int(labels.data.max()) + 1
    yy, xx = np.mgrid[:768, :869]
    stroke = np.nonzero(((yy - 380) ** 2 + (xx - 430) ** 2) <= 12**2)
    labels.data_setitem(stroke, labels.selected_label)
    labels.mode = "paint"
    region = dock.correct_step.add_region_layer()
    region.data[: 768 // 2, : 869 // 2] = 1
    region.refresh()
    viewer.layers.selection.active = labels
    dock.correct_step.autosave(force=True)
    shot(viewer, "correct")

    dock.setCurrentIndex(2)
    labels.data[: 768 // 2, : 869 // 2] = truth.data[: 768 // 2, : 869 // 2]
    dock.train_step.image.value, dock.train_step.labels_layer.value = image, labels
    dock.train_step.model_name.value = "rpe1-corrected"
    dock.train_step.run(config=TrainConfig(epochs=1000, steps_per_epoch=10, max_seconds=45, crop=192, patience=1000))
    wait(app, dock.train_step, 600)
    viewer.reset_view()
    shot(viewer, "finetune")

    dock.setCurrentIndex(3)
    region.visible = False
    dock.count_step.labels_layer.value = labels
    dock.count_step.image.value = image
    dock.count_step.run()
    wait(app, dock.count_step)
    labels.visible = False
    dock.count_step.table.sortByColumn(2, Qt.SortOrder.AscendingOrder)
    shot(viewer, "count")
    viewer.close()


if __name__ == "__main__":
    main()
