from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _leftover_widgets_deleted(qapp):
    """Delete, while Qt is still up, the windows a test made outside a viewer (our docks built
    on a bare viewer, magicgui's orphans). Left to the interpreter's exit, hundreds of them were
    destroyed in arbitrary order after QApplication, and the process could crash (exit 139) after
    every test had passed."""
    from qtpy.QtCore import QEvent, QThreadPool

    before = list(qapp.topLevelWidgets())
    yield
    QThreadPool.globalInstance().waitForDone(60_000)  # no worker may outlive its widget
    for widget in qapp.topLevelWidgets():
        if not any(widget is w for w in before):
            widget.close()
            widget.deleteLater()
    qapp.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    qapp.processEvents()


@pytest.fixture
def errors():
    """Error notifications shown to the user during a test."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def record(notification):
        if notification.severity == "error":
            seen.append(notification.message)

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


@pytest.fixture
def notices():
    """Every notification shown during a test, as ``(severity, message)``."""
    from napari.utils.notifications import notification_manager

    seen: list[tuple[str, str]] = []

    def record(notification):
        seen.append((str(notification.severity), notification.message))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A user model folder holding a tiny model, and a session folder, both private to the test."""
    from napari_unet.networks.model import ModelCard, build_model, save_model

    folder = tmp_path / "models"
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(folder))
    monkeypatch.setenv("NAPARI_UNET_SESSIONS", str(tmp_path / "sessions"))
    torch.manual_seed(0)
    card = ModelCard(
        "tiny", "unet", {"features": (4, 8, 16)}, classes=("foreground", "boundary"), tile=64, threshold=0.5
    )
    save_model(build_model(card), folder / "tiny")
    return folder


def wait_for(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


@pytest.fixture
def stack():
    from tests.conftest import synthetic_nuclei

    rng = np.random.default_rng(2)
    pairs = [synthetic_nuclei(rng, (96, 96), 10) for _ in range(4)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
