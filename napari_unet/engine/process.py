"""What napari-unet changes in its whole process to run fast, in one place, and how it is put back.

Prediction and training change three process-wide things, each when a job first needs it:

- **torch's threads**: every core the process may use (torch starts with the physical
  cores only; prediction is compute-bound). ``NAPARI_UNET_THREADS=N`` asks for N.
- **glibc's allocator**: freed memory is kept in the heap instead of being unmapped after
  every tensor (whole-image prediction 1.3x faster in fp32 on this project's CPU
  machines). ``NAPARI_UNET_NO_MALLOPT=1`` leaves it alone.
- **cuDNN's benchmark mode** on a GPU: every tile has one shape, so its fastest
  convolutions are picked once.

A command-line run keeps them until it exits. Inside napari's process (the dock's jobs),
:func:`borrowed` puts each back as it was when the job ends: the thread count, cuDNN's mode,
and the allocator's thresholds, its kept memory given back to the system. (The dock also
freezes start-up objects out of garbage collection: :mod:`napari_unet._widgets._warmup`.)
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["borrowed", "cudnn_benchmark", "tune_cpu_allocator", "use_all_cores"]

_ALLOCATOR_TUNED = False
#: glibc's own thresholds (M_TRIM_THRESHOLD, M_MMAP_THRESHOLD), put back after a job
_GLIBC_DEFAULT = 128 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def use_all_cores() -> None:
    """Let torch use every core this process may run on (or ``NAPARI_UNET_THREADS``)."""
    import torch

    wanted = os.environ.get("NAPARI_UNET_THREADS", "")
    n = max(1, int(wanted) if wanted.isdigit() else os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def cudnn_benchmark() -> None:
    """Let cuDNN time its convolutions once per tile shape and keep the fastest."""
    import torch

    torch.backends.cudnn.benchmark = True


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def tune_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of unmapping it after every tensor.

    By default glibc gives each buffer over 32 MiB its own mmap and returns it on free, so
    every forward pass page-faults its activations in again. Raising the mmap and trim
    thresholds made whole-image prediction 1.3x faster in fp32 on this project's CPU
    machines (benchmarks/bench_predict.py). Once per process (until :func:`borrowed` puts it
    back); ``NAPARI_UNET_NO_MALLOPT=1`` leaves the allocator alone.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or os.environ.get("NAPARI_UNET_NO_MALLOPT"):
        return _ALLOCATOR_TUNED
    libc = _libc()
    try:
        _ALLOCATOR_TUNED = bool(libc and libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        )
    except AttributeError:
        _ALLOCATOR_TUNED = False
    return _ALLOCATOR_TUNED


def allocator_tuned() -> bool:
    """Whether :func:`tune_cpu_allocator` has changed glibc's thresholds in this process."""
    return _ALLOCATOR_TUNED


def _untune_cpu_allocator() -> None:
    global _ALLOCATOR_TUNED
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT)
        libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT)
        libc.malloc_trim(0)  # what the job's tensors left in the heap goes back to the system
    _ALLOCATOR_TUNED = False


@contextmanager
def borrowed() -> Iterator[None]:
    """Run a job in a process that is not ours (napari's): whatever of the above the job
    changes is put back as it was when the job ends, however it ends."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    cudnn = torch.backends.cudnn.benchmark if torch is not None else None
    tuned = _ALLOCATOR_TUNED
    try:
        yield
    finally:
        torch = sys.modules.get("torch")
        if torch is not None:
            if threads is not None and torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            torch.backends.cudnn.benchmark = bool(cudnn)
        if _ALLOCATOR_TUNED and not tuned:
            _untune_cpu_allocator()
