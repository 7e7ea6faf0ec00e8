"""What napari-unet changes in its process (#27): applied when a job needs it, and put back
after a job in a process that is not ours (napari's)."""

from __future__ import annotations

import os

import numpy as np
import torch

import napari_unet
from napari_unet.engine import process


def test_a_job_in_a_borrowed_process_leaves_it_as_it_was(monkeypatch):
    monkeypatch.delenv("NAPARI_UNET_NO_MALLOPT", raising=False)
    monkeypatch.setenv("NAPARI_UNET_THREADS", "2")
    model = napari_unet.load_model()
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    process._untune_cpu_allocator()
    seen = {}
    try:
        with process.borrowed():
            napari_unet.segment(model, image, device="cpu")
            seen = {"threads": torch.get_num_threads(), "allocator": process.allocator_tuned()}
        assert seen == {"threads": 2, "allocator": sys_is_linux()}  # the job ran with them
        assert torch.get_num_threads() == 1  # and the process has its own again
        assert not process.allocator_tuned()
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.set_num_threads(threads)


def test_a_failing_job_puts_them_back_too(monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_THREADS", "2")
    torch.set_num_threads(1)
    try:
        with process.borrowed():
            process.use_all_cores()
            process.cudnn_benchmark()
            raise RuntimeError("the job failed")
    except RuntimeError:
        pass
    assert torch.get_num_threads() == 1 and torch.backends.cudnn.benchmark is False
    torch.set_num_threads(os.cpu_count() or 1)


def sys_is_linux() -> bool:
    import sys

    return sys.platform.startswith("linux")
