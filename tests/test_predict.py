from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.engine.inference import pick_device
from napari_unet.engine.planes import normalise_plane
from napari_unet.engine.predict import predict, predict_iter
from napari_unet.engine.tiling import gaussian_weight, tile_starts, tiled_predict_iter
from napari_unet.jobs import Progress
from napari_unet.networks.model import ModelCard, build_model
from napari_unet.objects.pipeline import Settings, foreground_mask


def run(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events


@pytest.mark.parametrize("shape", [(37, 53), (3, 101, 77), (2, 16, 16), (1, 5, 9), (2, 2, 30, 41)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.6])
@pytest.mark.parametrize("tile", [8, 32])
def test_stitching_is_exact_for_a_pointwise_predictor(rng, shape, overlap, tile):
    image = rng.normal(size=shape).astype(np.float32)
    out, events = run(
        tiled_predict_iter(image, lambda x: 2 * x, out_channels=1, tile=tile, overlap=overlap, batch_size=3)
    )
    assert out.shape == (1, *shape) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], 2 * image, rtol=1e-5, atol=1e-5)
    assert events[-1].done == events[-1].total and events[-1].info["planes_done"] == events[-1].info["planes"]


def test_several_output_channels_and_rgb(rng):
    image = rng.random((30, 45, 3)).astype(np.float32)

    def predictor(x):  # (B, 3, h, w) -> (B, 2, h, w)
        return np.stack([x.sum(1), x[:, 0] - x[:, 2]], axis=1)

    out, _ = run(tiled_predict_iter(image, predictor, out_channels=2, axes="YXS", in_channels=3, tile=16, overlap=0.5))
    np.testing.assert_allclose(out[0], image.sum(-1), atol=1e-5)
    np.testing.assert_allclose(out[1], image[..., 0] - image[..., 2], atol=1e-5)


def test_tiles_from_several_planes_share_a_batch(rng):
    image = rng.random((5, 16, 16)).astype(np.float32)
    sizes = []

    def predictor(x):
        sizes.append(len(x))
        return x

    run(tiled_predict_iter(image, predictor, out_channels=1, tile=16, batch_size=4))
    assert sizes == [4, 1]


def test_output_to_memmap_and_dask_input(tmp_path, rng):
    import dask.array as da

    image = rng.random((4, 40, 50)).astype(np.float32)
    out = np.lib.format.open_memmap(tmp_path / "prob.npy", mode="w+", dtype=np.float32, shape=(1, 4, 40, 50))
    result, _ = run(
        tiled_predict_iter(da.from_array(image, chunks=(1, 40, 50)), lambda x: x + 1, out_channels=1, tile=16, out=out)
    )
    assert result is out
    np.testing.assert_allclose(np.load(tmp_path / "prob.npy")[0], image + 1, atol=1e-6)


def test_stopping_keeps_finished_planes(rng):
    image = rng.random((4, 16, 16)).astype(np.float32)
    out = np.full((1, 4, 16, 16), -1, np.float32)
    gen = tiled_predict_iter(image, lambda x: x, out_channels=1, tile=16, batch_size=1, out=out)
    next(gen), next(gen)
    gen.close()
    np.testing.assert_allclose(out[0, :2], image[:2], atol=1e-6)
    assert (out[0, 2:] == -1).all()


def test_geometry_helpers():
    assert tile_starts(10, 4, 0.5) == [0, 2, 4, 6]
    assert tile_starts(256, 256, 0.25) == [0]
    w = gaussian_weight((16, 16))
    assert w.max() == 1 and w.min() > 0 and w[8, 8] > w[0, 0]
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\), got 1.5"):
        tile_starts(10, 4, 1.5)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    card = ModelCard("tiny", "unet", {"features": (4, 8, 16)}, classes=("foreground", "boundary"), tile=32)
    return build_model(card)


def test_model_predicts_a_synthetic_stack_end_to_end(tiny_model, rng):
    image = (rng.random((2, 50, 70)) * 4000).astype(np.uint16)
    prob = predict(tiny_model, image, device="cpu")
    assert prob.shape == (2, 2, 50, 70) and prob.dtype == np.float32
    assert 0 <= prob.min() and prob.max() <= 1
    # fp32 engine == the plain network on the same normalised input (one tile covers the image)
    img2 = image[0, :32, :32]
    direct = predict(tiny_model, img2, device="cpu", precision="fp32")
    x = torch.from_numpy(normalise_plane(img2[None].astype(np.float32), tiny_model.card.normalisation))[None]
    with torch.inference_mode():
        ref = torch.sigmoid(tiny_model(x))[0].numpy()
    np.testing.assert_allclose(direct, ref, atol=1e-4)
    mask = foreground_mask(prob, tiny_model.card, Settings.for_model(tiny_model.card))
    assert mask.shape == (2, 50, 70) and set(np.unique(mask)) <= {0, 1}


def test_bf16_is_close_to_fp32(tiny_model, rng):
    image = rng.random((64, 64)).astype(np.float32)
    a = predict(tiny_model, image, device="cpu", precision="fp32")
    b = predict(tiny_model, image, device="cpu", precision="bf16")
    assert np.abs(a - b).max() < 0.05


def test_test_time_augmentation_makes_the_prediction_turn_with_the_image(tiny_model, rng):
    """With tta, the probabilities of a turned or mirrored image are those of the image,
    turned or mirrored (one tile covers it, so the tiling cannot differ): the mean over the
    8 flips and quarter turns is the same set of views whichever view comes in."""
    image = rng.random((64, 64)).astype(np.float32)
    kwargs = dict(device="cpu", precision="fp32", tile=64)
    plain = predict(tiny_model, image, **kwargs)
    turned_plain = predict(tiny_model, np.rot90(image).copy(), **kwargs)
    assert np.abs(np.rot90(plain, axes=(1, 2)) - turned_plain).max() > 1e-3  # the network alone is not invariant
    tta = predict(tiny_model, image, tta=True, **kwargs)
    for view in (lambda a: np.rot90(a, axes=(-2, -1)), lambda a: a[..., ::-1], lambda a: np.rot90(a, 2, axes=(-2, -1))):
        other = predict(tiny_model, view(image).copy(), tta=True, **kwargs)
        np.testing.assert_allclose(view(tta), other, atol=2e-5)
    assert np.abs(tta - plain).max() > 1e-3  # and it is not the plain prediction


def test_test_time_augmentation_is_refused_where_left_and_right_differ(rng):
    from napari_unet.objects.pipeline import segment

    torch.manual_seed(0)
    card = ModelCard("lungs", "unet", {"features": (4, 8)}, classes=("background", "left", "right"),
                     activation="softmax", tile=32, flips=False)  # fmt: skip
    lateral = build_model(card)
    image = rng.random((40, 40)).astype(np.float32)
    with pytest.raises(ValueError, match="trained without flips"):
        predict(lateral, image, device="cpu", tta=True)
    with pytest.raises(ValueError, match="trained without flips"):
        segment(lateral, image, device="cpu", tta=True)
    assert predict(lateral, image, device="cpu").shape == (3, 40, 40)  # without it, as before


def test_generator_reports_progress(tiny_model, rng):
    image = rng.random((3, 40, 40)).astype(np.float32)
    _out, events = run(predict_iter(tiny_model, image, device="cpu", tile=32, batch_size=2))
    assert all(isinstance(e, Progress) for e in events)
    assert events[-1].done == events[-1].total == 3 * 4


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.zeros((1, 1), np.float32) + 1, {}, "at least 4x4"),
        (np.zeros((2, 3, 4, 40, 40), np.float32), {}, "cannot tell the axes of a 5D array"),
        (np.zeros((40, 40, 3), np.uint8) + np.arange(3, dtype=np.uint8), {"axes": "YXS"}, "takes 1 input channel.*RGB"),
        (np.zeros((40, 40), np.float32), {}, "constant"),
        (np.full((40, 40), np.nan, np.float32), {}, "NaN or infinite"),
        (np.random.default_rng(0).random((40, 40)), {"overlap": 1.0}, r"overlap must be in \[0, 1\)"),
        (np.random.default_rng(0).random((40, 40)), {"axes": "ZYX"}, "do not fit an image shaped"),
    ],
)
def test_bad_inputs(tiny_model, image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict(tiny_model, image, device="cpu", **kwargs)


def test_nan_in_one_slice_is_named(tiny_model, rng):
    image = rng.random((3, 40, 40)).astype(np.float32)
    image[2, 5, 5] = np.inf
    with pytest.raises(ValueError, match=r"1 NaN or infinite pixel.*plane 2"):
        predict(tiny_model, image, device="cpu")


def test_image_smaller_than_a_tile_is_padded(tiny_model, rng):
    image = rng.random((9, 13)).astype(np.float32)
    assert predict(tiny_model, image, device="cpu", tile=256).shape == (2, 9, 13)


def test_devices():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        pick_device("tpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(tiny_model, rng):
    image = rng.random((2, 100, 90)).astype(np.float32)
    cpu = predict(tiny_model, image, device="cpu", precision="fp32")
    gpu = predict(tiny_model, image, device="cuda", precision="fp32")
    np.testing.assert_allclose(gpu, cpu, atol=1e-3)
    half = predict(tiny_model, image, device="cuda")
    assert np.abs(half - cpu).max() < 0.05


def test_public_api_in_any_import_order(tiny_model, rng):
    import subprocess
    import sys

    import napari_unet
    import napari_unet.engine.predict as module

    image = rng.random((40, 40)).astype(np.float32)
    assert napari_unet.predict(tiny_model, image, device="cpu").shape == (2, 40, 40)
    assert module.predict(tiny_model, image, device="cpu").shape == (2, 40, 40)
    # importing the module must not shadow the segment function
    import napari_unet.objects.pipeline

    assert napari_unet.segment(tiny_model, image, device="cpu").labels.shape == (40, 40)
    code = "import napari_unet; m = napari_unet.load_model(); import numpy as np; print(napari_unet.predict(m, np.random.rand(64, 64), device='cpu').shape, type(m).__name__, m.training)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["(3,", "64,", "64)", "UNet", "False"]


@pytest.mark.slow
def test_compile_is_used_and_matches_eager(tiny_model, rng):
    import torch._dynamo

    image = rng.random((70, 90)).astype(np.float32)
    eager = predict(tiny_model, image, device="cpu", precision="fp32", batch_size=4)
    torch._dynamo.utils.counters.clear()
    compiled = predict(tiny_model, image, device="cpu", precision="fp32", batch_size=4, compile=True)
    assert torch._dynamo.utils.counters["frames"]["ok"] >= 1, "the network was really compiled"
    np.testing.assert_allclose(compiled, eager, atol=1e-4)


@pytest.mark.parametrize("shape", [(9, 21, 17), (2, 7, 33, 12)])
def test_the_grid_stitches_volumes_exactly_for_a_3d_network(shape):
    """One engine over N spatial dimensions: a 3D predictor (here 2 * x) needs no second engine."""
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    axes = "ZYX" if len(shape) == 3 else "TZYX"
    out, events = run(
        tiled_predict_iter(
            image, lambda x: 2 * x, out_channels=1, axes=axes, tile=8, overlap=0.5, spatial_dims=3, size_divisor=4
        )
    )
    np.testing.assert_allclose(out[0], 2 * image, rtol=1e-6, atol=1e-6)
    assert events[-1].info["planes"] == (1 if len(shape) == 3 else shape[0])


def test_a_3d_network_needs_a_z_axis():
    with pytest.raises(ValueError, match="a 3D network needs a Z axis"):
        run(tiled_predict_iter(np.zeros((8, 8), np.float32), lambda x: x, out_channels=1, spatial_dims=3))


def test_the_grid_gives_the_same_tiles_and_weights_as_before_in_2d():
    from napari_unet.engine.tiling import Grid

    g = Grid.for_shape((300, 130), tile=256, overlap=0.25, divisor=16)
    assert g.tile == (256, 144) and g.padded == (300, 144)
    assert g.starts == (tuple(tile_starts(300, 256, 0.25)), (0,))
    w = np.outer(*[np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / (n * 0.125)) ** 2) for n in g.tile])
    np.testing.assert_array_equal(g.weight, np.maximum(w / w.max(), 1e-3).astype(np.float32))
    assert g.tiles_touching((0, 0), (10, 10)) == [(0, 0)]
    assert len(g.tiles_touching((0, 0), (300, 144))) == len(g.tiles())


def test_a_large_plane_is_divided_strip_by_strip_bit_for_bit(monkeypatch, rng):
    """Above a size, the weights' sum is made a strip at a time instead of kept as a
    plane-sized array: the output must not change by a single bit."""
    import napari_unet.engine.tiling as tiling

    g = tiling.Grid.for_shape((700, 530), tile=160, overlap=0.3, divisor=16)
    for lo, hi in (((0, 0), (700, 530)), ((37, 101), (300, 129)), ((650, 0), (700, 1))):
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        np.testing.assert_array_equal(g.weight_sum_box(lo, hi), g.weight_sum[box])
    image = rng.random((2, 700, 530)).astype(np.float32)

    def predictor(x):  # not pointwise in the channels: the blending must still agree exactly
        return np.concatenate([np.sin(3 * x), x * x], axis=1)

    kwargs = dict(out_channels=2, tile=160, overlap=0.3, size_divisor=16, axes="ZYX")
    whole, _ = run(tiled_predict_iter(image, predictor, **kwargs))
    monkeypatch.setattr(tiling, "_CACHED_WEIGHT_SUM_PX", 0)  # every plane counts as large
    monkeypatch.setattr(tiling.Grid, "weight_sum", property(lambda self: pytest.fail("made the whole weight sum")))
    strips, _ = run(tiled_predict_iter(image, predictor, **kwargs))
    np.testing.assert_array_equal(strips, whole)


@pytest.mark.parametrize("shape, tile", [((2, 50, 70), 32), ((1, 20, 24), 64), ((3, 96, 80), 48)])
def test_device_resident_engine_agrees_with_the_host_engine(tiny_model, rng, shape, tile):
    """The GPU path (each plane kept on the device) is the same arithmetic as the host
    engine: checked here on the CPU device, where CI runs; on CUDA it is what predict uses."""
    from napari_unet.engine.device import device_tiled_iter
    from napari_unet.engine.inference import prepare_model
    from napari_unet.engine.tiling import tiled_predict_iter
    from napari_unet.jobs import run_to_end

    image = (rng.random(shape) * 4000).astype(np.uint16)
    card = tiny_model.card
    dev = torch.device("cpu")
    options = dict(out_channels=2, axes="ZYX", in_channels=1, tile=tile, overlap=0.25, batch_size=3,
                   size_divisor=4, normalisation=card.normalisation)  # fmt: skip
    on_device = run_to_end(device_tiled_iter(image, prepare_model(tiny_model, dev, "fp32"), dev, "fp32",
                                             card.activation, **options))  # fmt: skip
    from napari_unet.engine.inference import torch_predictor

    on_host = run_to_end(tiled_predict_iter(image, torch_predictor(tiny_model, dev, "fp32", card.activation),
                                            **options))  # fmt: skip
    np.testing.assert_allclose(on_device, on_host, atol=2e-5)
