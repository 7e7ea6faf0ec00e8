"""The seams a 3D model hangs on (#27): losses, augmentation, channels-last, test-time
augmentation and the receptive-field probe take the card's spatial dimensions. Nothing
else of 3D is built yet; these hold the 2D behaviour as it was and work on volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.networks.architectures import build_model, measure_receptive_field
from napari_unet.networks.card import ModelCard
from napari_unet.training.augment import augment
from napari_unet.training.losses import masked_loss


def volume_card(**fields):
    return ModelCard("v", arch_args={"features": [4, 8]}, spatial_dims=3, **{"tile": [16, 32, 32], **fields})


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_the_masked_loss_of_a_volume_counts_only_its_checked_slices(activation):
    torch.manual_seed(0)
    k = 2
    logits = torch.randn(2, k, 6, 16, 16, requires_grad=True)
    target = torch.zeros(2, k, 6, 16, 16)
    target[:, 1, :, 4:10, 4:10] = 1
    target[:, 0] = 1 - target[:, 1]
    mask = torch.zeros(2, 1, 6, 16, 16)
    mask[:, :, [1, 4]] = 1  # two checked slices in each volume
    loss = masked_loss(logits, target, mask, activation)
    loss.backward()
    grad_per_slice = logits.grad.abs().sum((0, 1, 3, 4))
    assert torch.isfinite(loss) and loss > 0
    assert grad_per_slice[[1, 4]].min() > 0 and grad_per_slice[[0, 2, 3, 5]].max() == 0  # unchecked: weight zero
    # a plane batch gives what it gave before the loss took any number of dimensions
    plane = masked_loss(logits[:, :, 1].detach(), target[:, :, 1], mask[:, :, 1], activation)
    assert torch.isfinite(plane)


def test_volumes_are_flipped_along_depth_and_turned_in_plane_with_their_labels():
    gen = torch.Generator().manual_seed(3)
    depth = torch.arange(4, dtype=torch.float32).view(1, 1, 4, 1, 1)
    x = (depth * torch.ones(2, 1, 4, 8, 8)) / 3  # brighter with depth
    y = (depth >= 2).float().expand(2, 1, 4, 8, 8).contiguous()  # the object: the far half
    m = torch.ones_like(y)
    seen_depth_flip = False
    for _ in range(12):
        ax, ay, am = augment(x.clone(), y.clone(), m.clone(), gen, level="light")
        assert ax.shape == x.shape and ay.shape == y.shape and am.shape == m.shape
        assert set(torch.unique(ay).tolist()) <= {0.0, 1.0}
        # the labels moved with the image: where y was 1 the (monotone) image was high
        assert (ax[ay > 0].mean() > ax[ay == 0].mean()) or torch.equal(ay, y)
        seen_depth_flip |= bool(ay[:, :, 0].sum() > ay[:, :, -1].sum())
    assert seen_depth_flip  # y is high at the far end of depth, so a flip brings it to the front


def test_channels_last_and_tta_run_a_3d_network():
    from napari_unet.engine.inference import prepare_model
    from napari_unet.engine.layout import channels_last

    net = build_model(volume_card())
    x = torch.rand(1, 1, 8, 32, 32)
    assert channels_last(x).is_contiguous(memory_format=torch.channels_last_3d)
    assert channels_last(torch.rand(1, 1, 32, 32)).is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        plain = net(x)
        prepared = prepare_model(net, torch.device("cpu"), "fp32")(x)
        averaged = prepare_model(net, torch.device("cpu"), "fp32", tta=True)(x)
    assert torch.allclose(prepared, plain, atol=1e-4)  # BatchNorm folded, 3D layout
    assert averaged.shape == plain.shape


def test_the_receptive_field_probe_measures_a_volume_network():
    field = measure_receptive_field(build_model(volume_card()), size=32, samples=1)
    plane = measure_receptive_field(build_model(volume_card().replace(spatial_dims=2, tile=32)), size=32, samples=1)
    assert field["theoretical_radius_px"] == plane["theoretical_radius_px"] > 0
    assert 0 < field["radius_95_px"] <= field["theoretical_radius_px"]


def test_a_plane_batch_is_augmented_the_same_for_the_same_seed():
    """One seed, one augmentation (checked once against the code before the volumes branch)."""
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x = torch.rand(2, 1, 32, 32)
    y = (x > 0.5).float()
    m = torch.ones_like(y)
    a = augment(x, y, m, gen_a, level="medium")
    b = augment(x, y, m, gen_b, level="medium")
    for s, t in zip(a, b):
        assert torch.equal(s, t)
    assert not np.array_equal(a[0].numpy(), x.numpy())


@pytest.mark.parametrize(("shape", "tile"), [((2, 12, 40, 36), 16), ((1, 6, 20, 24), 32)])
def test_the_device_engine_tiles_volumes_as_the_host_engine_does(shape, tile):
    """Each volume kept on the device (here the CPU, where CI runs) and cut into 3D tiles gives
    the host engine's result: one tiling with the device as an option, in 2D and 3D."""
    from napari_unet.engine.device import device_tiled_iter
    from napari_unet.engine.inference import prepare_model, torch_predictor
    from napari_unet.engine.tiling import tiled_predict_iter
    from napari_unet.jobs import run_to_end

    torch.manual_seed(0)
    net = build_model(volume_card(tile=[8, 16, 16]))
    image = (np.random.default_rng(1).random(shape) * 4000).astype(np.uint16)
    dev = torch.device("cpu")
    options = dict(out_channels=1, axes="TZYX", in_channels=1, tile=tile, overlap=0.25, batch_size=2, size_divisor=2,
                   normalisation=net.card.normalisation, spatial_dims=3)  # fmt: skip
    on_device = run_to_end(device_tiled_iter(image, prepare_model(net, dev, "fp32"), dev, "fp32", "sigmoid", **options))
    on_host = run_to_end(tiled_predict_iter(image, torch_predictor(net, dev, "fp32", "sigmoid"), **options))
    assert on_device.shape == (1, *shape)
    np.testing.assert_allclose(on_device, on_host, atol=2e-5)
