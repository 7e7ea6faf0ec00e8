"""Kill napari with SIGKILL after edits; the autosaved corrections come back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication
    from napari_unet._widgets.correct_widget import CorrectWidget

    viewer = napari.Viewer(show=False)
    layer = viewer.add_labels(np.zeros((3, 64, 64), np.int32), name="cells labels")
    widget = CorrectWidget(viewer, autosave_seconds=0.5)
    widget.labels_layer.value = layer
    app = QApplication.instance()

    def spin(seconds):
        end = time.time() + seconds
        while time.time() < end:
            app.processEvents()
            time.sleep(0.01)

    viewer.dims.set_point(0, 1)
    widget.mark_checked()
    layer.data_setitem((np.full(100, 1), *np.nonzero(np.ones((10, 10)))), 7)   # a stroke on slice 1
    layer.data_setitem((np.full(25, 2), *[a + 30 for a in np.nonzero(np.ones((5, 5)))]), 9)  # and on slice 2
    spin(1.5)  # three autosave intervals
    print("READY", flush=True)
    spin(600)
    """
)


def test_sigkill_after_edits_loses_nothing_older_than_the_autosave(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_SESSIONS", str(tmp_path / "sessions"))
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline and "READY" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(f"the napari process ended early: {proc.stderr.read()[-2000:]}")
        assert "READY" in line
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    from napari_unet.work.session import Session

    session = Session.for_image(None, name="cells labels", shape=(3, 64, 64))
    labels, checked, _ = session.load()
    assert checked == [1]
    assert (labels[1][:10, :10] == 7).all() and (labels[2][30:35, 30:35] == 9).all()
    assert int((labels > 0).sum()) == 125
    assert not list(session.folder.glob("*.part")), "no half-written file is left behind"
