"""Make the README's screenshots in a real napari window, one per step of the loop.

    xvfb-run -a python scripts/screenshots.py

Drives the real dock (no mocks): opens the RPE1 sample, predicts with the shipped model,
paints a correction and marks the slice checked, fine-tunes for a few seconds, counts.
Writes docs/images/{sample,predict,correct,finetune,count}.png. Then the first model on
a CT stack: opens the CT sample, draws the lesion on its 3 slices (copied from the sample's
mask, as a careful hand would), marks 3 lesion-free slices checked too, trains a new model
for ``--ct-seconds``, asks it which slice to check next and predicts the other slices:
docs/images/ct_{open,drawn,train,suggest,predict}.png.
``--only dicom`` opens the CT sample written as a DICOM series: docs/images/dicom_open.png.

    xvfb-run -a python scripts/screenshots.py [--only ct|dicom] [--ct-seconds 180] [--dicom-masks DIR]
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
    from qtpy.QtWidgets import QApplication

    for _ in range(20):  # let the window lay out what just changed (a dock added, a tab switched)
        QApplication.instance().processEvents()
        time.sleep(0.01)
    viewer.screenshot(str(OUT / f"{name}.png"), canvas_only=False)
    print(f"wrote {OUT / f'{name}.png'}")


def ct_walkthrough(viewer, app, dock, seconds: float) -> None:
    """Your first model on a CT stack, step by step, as the README tells it."""
    from napari_unet._widgets._step import labels_work, workflow_for

    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    viewer.open_sample("napari-unet", "ct")
    image, truth = viewer.layers[0], viewer.layers[1]
    truth.visible = False
    viewer.dims.set_current_step(0, 6)  # a slice through the lesion
    viewer.reset_view()
    shot(viewer, "ct_open")

    drawn = viewer.add_labels(np.zeros(truth.data.shape, np.int32), name="lesion drawn", scale=image.scale)
    lesion_slices, free_slices = [5, 6, 7], [0, 2, 10]
    for z in lesion_slices:  # what a careful hand paints on the slices with the lesion
        drawn.data[z] = truth.data[z]
    drawn.refresh()
    dock.setCurrentWidget(dock.correct_step.native)
    dock.correct_step.labels_layer.value = drawn
    labels_work(workflow_for(viewer), drawn).checked.update(lesion_slices + free_slices)
    dock.correct_step._sync_checked()
    camera = getattr(viewer, "scene", viewer).camera
    lesion = np.argwhere(truth.data[6] > 0).mean(0) * np.asarray(image.scale[-2:])  # in mm, as the view is
    camera.zoom, camera.center = 4.0, (float(lesion[0]), float(lesion[1]))
    shot(viewer, "ct_drawn")

    dock.setCurrentWidget(dock.train_step.native)
    train = dock.train_step
    train.image.value, train.labels_layer.value = image, drawn
    train.start_from.value = "a new model for these images"
    train.task.value = "regions"
    train.class_names.value = "lesion"
    train.image_kind.value = "CT, soft-tissue window"
    train.seconds.value = int(seconds)
    train.model_name.value = "ct-lesion"
    train.run()
    wait(app, train, seconds + 300)
    viewer.reset_view()
    shot(viewer, "ct_train")

    train.use_model()
    suggest = dock.suggest_step  # which slice to check next, by the new model's doubt
    dock.setCurrentWidget(suggest.native)
    suggest.image.value, suggest.labels_layer.value = image, drawn
    suggest.run()
    wait(app, suggest, 600)
    suggest.go_next()
    viewer.reset_view()
    shot(viewer, "ct_suggest")
    viewer.layers.remove(viewer.layers[f"{image.name} doubt"])

    dock.predict_step.follow_drawn.value = True  # the regions that continue the drawn lesion, as the README says
    train.repredict()
    wait(app, dock.predict_step, 600)
    predicted = viewer.layers["ct_lung1 labels"] if "ct_lung1 labels" in viewer.layers else drawn
    predicted.opacity = 0.7
    if predicted is not drawn:
        drawn.visible = False
    dock.setCurrentWidget(dock.predict_step.native)
    viewer.dims.set_current_step(0, 4)  # a slice the model was not shown
    viewer.reset_view()
    shot(viewer, "ct_predict")


def dicom_open(viewer, masks: Path | None) -> None:
    """A DICOM series opened in napari: the CT sample written as a scanner would (12 files, a
    rescale intercept, names that do not follow the slices), read by napari-unet's reader,
    with the lesion mask ``predict`` wrote for it (``--dicom-masks DIR``) on top."""
    import sys

    sys.path.insert(0, str(OUT.parents[1]))
    from napari_unet.io import read_image
    from tests._dicom import write_series

    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    folder = Path(tempfile.mkdtemp(prefix="napari-unet-dicom-")) / "CHEST"
    ct = read_image(OUT.parents[1] / "napari_unet" / "sample_data" / "ct_lung1.tif")
    write_series(folder, ct.data, spacing=ct.scale, description="CHEST lung1")
    viewer.open(str(folder), plugin="napari-unet")
    if masks is not None:
        for mask in sorted(masks.glob("*_mask.nii.gz")):
            layer = viewer.open(str(mask), plugin="napari-unet", layer_type="labels")[0]
            layer.opacity = 0.6
    viewer.dims.set_current_step(0, 6)
    viewer.reset_view()
    shot(viewer, "dicom_open")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("nuclei", "ct", "dicom"), default=None)
    parser.add_argument("--dicom-masks", type=Path, default=None, help="folder of predict's *_mask.nii.gz to overlay")
    parser.add_argument("--ct-seconds", type=float, default=180.0)
    args = parser.parse_args()
    os.environ.setdefault("NAPARI_UNET_MODELS", tempfile.mkdtemp(prefix="napari-unet-models-"))
    os.environ.setdefault("NAPARI_UNET_SESSIONS", tempfile.mkdtemp(prefix="napari-unet-sessions-"))
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from napari_unet._widgets.dock import UNetDock
    from napari_unet.training.train import TrainConfig

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-unet")
    app = QApplication.instance()
    viewer.window.resize(1400, 860)
    if args.only == "dicom":
        dicom_open(viewer, args.dicom_masks)
        viewer.close()
        return
    if args.only == "ct":
        dock = UNetDock(viewer)
        viewer.window.add_dock_widget(dock, name="U-Net", area="right")
        ct_walkthrough(viewer, app, dock, args.ct_seconds)
        viewer.close()
        return
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
    dock.setCurrentWidget(dock.predict_step.native)
    shot(viewer, "predict")

    dock.setCurrentWidget(dock.correct_step.native)
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

    dock.setCurrentWidget(dock.train_step.native)
    labels.data[: 768 // 2, : 869 // 2] = truth.data[: 768 // 2, : 869 // 2]
    dock.train_step.image.value, dock.train_step.labels_layer.value = image, labels
    dock.train_step.model_name.value = "rpe1-corrected"
    dock.train_step.run(config=TrainConfig(epochs=1000, steps_per_epoch=10, max_seconds=45, crop=192, patience=1000))
    wait(app, dock.train_step, 600)
    viewer.reset_view()
    shot(viewer, "finetune")

    dock.setCurrentWidget(dock.count_step.native)
    region.visible = False
    dock.count_step.labels_layer.value = labels
    dock.count_step.image.value = image
    dock.count_step.run()
    wait(app, dock.count_step)
    labels.visible = False
    dock.count_step.table.sortByColumn(2, Qt.SortOrder.AscendingOrder)
    shot(viewer, "count")
    if args.only is None:
        ct_walkthrough(viewer, app, dock, args.ct_seconds)
    viewer.close()


if __name__ == "__main__":
    main()
