"""The tile engine with each plane (or volume) kept on the accelerator (a GPU): one upload,
tiles cut, predicted and blended there, one download. On a GPU the host-side tiling and per-batch
copies of :mod:`napari_unet.engine.tiling` cost more than the network; on the CPU that engine
is the one used. Same grid, weights and blending order, so the two agree to rounding.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.jobs import Progress

if TYPE_CHECKING:
    import torch

__all__ = ["device_tiled_iter"]


def device_tiled_iter(
    image: Any,
    net: torch.nn.Module,
    device: torch.device,
    precision: str,
    activation: str,
    *,
    out_channels: int,
    axes: str | None,
    in_channels: int,
    tile: int,
    overlap: float,
    batch_size: int,
    size_divisor: int,
    normalisation: dict | None,
    out: Any = None,
    spatial_dims: int = 2,
) -> Generator[Progress, None, Any]:
    """The tile engine with each plane kept on ``device`` (a GPU): the plane is copied there
    once, scaled, padded, cut into tiles, predicted and blended there, and its result copied
    back once. Same :class:`~napari_unet.engine.tiling.Grid`, weights and blending order as
    :func:`~napari_unet.engine.tiling.tiled_predict_iter`, so the two agree to float rounding;
    on a GPU the host-side tiling and per-batch copies cost more than the network.
    ``spatial_dims`` 3: volumes ``ZYX`` are the unit (a 3D network's), as for the host engine."""
    import torch

    from napari_unet.engine.layout import channels_last
    from napari_unet.engine.planes import clips, plane_layout, plane_limits, read_plane
    from napari_unet.engine.tiling import Grid

    layout = plane_layout(tuple(image.shape), axes, in_channels, spatial_dims=spatial_dims)
    shape = layout.spatial_shape[-spatial_dims:]
    grid = Grid.for_shape(shape, tile=tile, overlap=overlap, divisor=size_divisor)
    starts = grid.tiles()
    total = len(starts) * layout.n_planes
    expected = (out_channels, *layout.spatial_shape)
    if out is None:
        out = np.empty(expected, np.float32)
    elif tuple(out.shape) != expected:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {expected}")
    stack_shape = layout.spatial_shape[:-spatial_dims]
    scale = normalisation is not None and normalisation.get("kind", "percentile") != "none"
    clip = scale and clips(normalisation)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    weight = torch.from_numpy(grid.weight).to(device)
    crop = tuple(slice(0, n) for n in shape)
    wsum = torch.from_numpy(np.ascontiguousarray(grid.weight_sum[crop])).to(device)
    done, per_axis = 0, (1,) * spatial_dims

    def window(start: tuple[int, ...]) -> tuple[slice, ...]:
        return (slice(None), *(slice(s, s + k) for s, k in zip(start, grid.tile)))

    for p in range(layout.n_planes):
        plane = read_plane(image, layout, p, in_channels, raw=True)
        limits = plane_limits(plane, normalisation) if scale else None
        if grid.padded != tuple(shape) and min(n - 1 for n in shape) < max(
            q - n for q, n in zip(grid.padded, shape)
        ):  # a plane much smaller than a tile: numpy reflects it as often as needed
            plane = grid.pad(plane)
        x = _to_device_float(plane, device)
        if limits is not None:
            lo = torch.tensor([v[0] for v in limits], dtype=torch.float32, device=device).view(-1, *per_axis)
            span = torch.tensor([v[1] - v[0] for v in limits], dtype=torch.float32, device=device).view(-1, *per_axis)
            x = (x - lo) / span
            if clip:
                x = x.clamp_(0.0, 1.0)
        if tuple(x.shape[1:]) != grid.padded:  # (pad takes the last axis first)
            pad = tuple(v for q, n in zip(grid.padded[::-1], x.shape[1:][::-1]) for v in (0, q - n))
            x = torch.nn.functional.pad(x[None], pad, mode="reflect" if min(shape) > 1 else "replicate")[0]
        acc = torch.zeros((out_channels, *grid.padded), dtype=torch.float32, device=device)
        with torch.inference_mode():
            for first in range(0, len(starts), batch_size):
                chunk = starts[first : first + batch_size]
                xb = torch.stack([x[window(start)] for start in chunk])
                xb = channels_last(xb)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    y = net(xb)
                y = y.float()
                y = torch.softmax(y, dim=1) if activation == "softmax" else torch.sigmoid(y)
                for start, r in zip(chunk, y):
                    acc[window(start)] += r * weight
                done += len(chunk)
                yield Progress(done, total, {"planes_done": p, "planes": layout.n_planes})
            result = acc[(slice(None), *crop)] / wsum
            index = np.unravel_index(p, stack_shape) if stack_shape else ()
            target = out[(slice(None), *index)] if isinstance(out, np.ndarray) else None
            if target is not None and target.flags.writeable:
                torch.from_numpy(target).copy_(result)  # straight into the output, no host temporary
            else:
                out[(slice(None), *index)] = result.cpu().numpy()
    return out


def _to_device_float(plane: np.ndarray, device: torch.device) -> torch.Tensor:
    """A plane as float32 on ``device``, sent in its own (narrower) type and converted there;
    uint16, which torch cannot hold, travels as int16 bits and is unwrapped on the device."""
    import torch

    plane = np.ascontiguousarray(plane)
    if plane.dtype == np.uint16:
        bits = torch.from_numpy(plane.view(np.int16)).to(device)
        return (bits.to(torch.int32) & 0xFFFF).to(torch.float32)
    if plane.dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32):
        return torch.from_numpy(plane).to(device).to(torch.float32)
    return torch.from_numpy(plane.astype(np.float32)).to(device)
