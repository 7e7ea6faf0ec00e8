"""bioimage.io export and import: real packages written and read by bioimageio.spec and
tested by bioimageio.core, with the network switched off."""

from __future__ import annotations

import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")
torch = pytest.importorskip("torch")

from napari_unet.cli import main  # noqa: E402
from napari_unet.exchange import ExchangeError, check_package, export_package, import_package  # noqa: E402
from napari_unet.networks.model import ModelCard, build_model, load_model, read_card, save_model  # noqa: E402
from napari_unet.objects.pipeline import Settings, segment  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network: any attempt to connect or resolve a host fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(tmp_path / "models"))


@pytest.fixture(scope="module")
def nuclei_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "nuclei.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", lambda *a: (_ for _ in ()).throw(AssertionError("network")))
        result = export_package("nuclei", out)
    assert result.test == "passed"
    assert result.weights == ["pytorch_state_dict", "torchscript", "onnx"]
    return out


def _rgb_classes_model(tmp_path: Path):
    torch.manual_seed(0)
    card = ModelCard(
        "tissue", architecture="unet", arch_args={"features": [8, 16, 32]}, in_channels=3,
        classes=("background", "tumour", "stroma"), activation="softmax", tile=64, overlap=0.25,
        normalisation={"kind": "range", "min": 0, "max": 255, "clip": True}, licence="CC0-1.0",
    )  # fmt: skip
    net = build_model(card)
    for m in net.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2)
    save_model(net, tmp_path / "tissue", card)
    return tmp_path / "tissue.safetensors"


def test_shipped_model_package_holds_what_other_tools_need(nuclei_package: Path) -> None:
    with zipfile.ZipFile(nuclei_package) as z:
        names = set(z.namelist())
        rdf = z.read("rdf.yaml").decode()
        readme = z.read("README.md").decode()
    assert {"weights.pt", "weights.torchscript", "weights.onnx", "napari_unet_nets.py", "cover.png",
            "test_input.npy", "test_output.npy", "LICENSE-mnfinder.txt"} <= names  # fmt: skip
    from napari_unet.engine.tile_choice import context_overlap
    from napari_unet.networks.model import load_model

    # half the pixels two tiles share: 40 for the shipped model
    halo = f"halo: {context_overlap(load_model('nuclei').card) // 2}"
    for needed in ("scale_range", "min_percentile: 1.0", "max_percentile: 99.8", "sigmoid", halo, "step: 1\n",
                   "pytorch_state_dict", "10.1007/978-3-319-24574-4_28", "napari_unet", "license: BSD-3-Clause"):  # fmt: skip
        assert needed in rdf, needed
    assert "## Validation" in readme and "mnfinder" in readme
    # the network's source runs without napari-unet: it imports torch only
    with zipfile.ZipFile(nuclei_package) as z:
        source = z.read("napari_unet_nets.py").decode()
    assert "napari_unet" not in source.replace("napari-unet", "")


def test_import_of_our_own_package_gives_the_very_model(nuclei_package: Path) -> None:
    path = import_package(nuclei_package)
    imported, original = load_model(path), load_model("nuclei")
    assert imported.card.name == "nuclei-2" and imported.card.parent == "nuclei"
    assert imported.card.architecture == "unet"  # our engine, fine-tunable
    image = np.asarray(
        __import__("tifffile").imread(Path(__file__).parent.parent / "sample_data" / "misc_2023-05-31_2.tif")
    )
    a = segment(original, image[:200, :260])
    b = segment(imported, image[:200, :260])
    assert np.abs(a.probabilities - b.probabilities).max() < 1e-4
    assert np.array_equal(a.labels, b.labels)


def test_bioimageio_core_agrees_with_napari_unet_predict(nuclei_package: Path) -> None:
    import tifffile
    from bioimageio.core import predict

    image = tifffile.imread(Path(__file__).parent.parent / "sample_data" / "misc_2023-05-31_2.tif")[:256, :320]
    ours = segment(load_model("nuclei"), image, settings=Settings(tile=512, precision="fp32")).probabilities  # one tile
    x = image[None, None].astype(np.float32)
    same = _core_unpadded(nuclei_package, image, "output")  # the same pixels normalised: no halo padding
    assert same.shape == ours.shape
    assert np.abs(same - ours).max() < 1e-4
    # as a user calls it, core mirrors the image out by the halo before taking percentiles
    theirs = np.asarray(predict(model=nuclei_package, inputs=x).members["output"].data)[0]
    fg_ours, fg_theirs = ours[0] > 0.5, theirs[0] > 0.5
    assert 2 * (fg_ours & fg_theirs).sum() / (fg_ours.sum() + fg_theirs.sum()) > 0.98


def _core_predict(package: Path, image: np.ndarray, weights: str) -> np.ndarray:
    """bioimageio.core's ``predict`` as a consumer calls it (the image as it is, no tiling),
    through one weight format; ``(C, H, W)``."""
    from bioimageio.core import create_prediction_pipeline, load_description, predict

    descr = load_description(package)
    x = (image[None, None] if image.ndim == 2 else np.moveaxis(image, -1, 0)[None]).astype(np.float32)
    out = predict(model=create_prediction_pipeline(descr, weight_format=weights), inputs=x)  # predict unloads it
    return np.asarray(next(iter(out.members.values())).data)[0]


@pytest.mark.parametrize("weights", ["pytorch_state_dict", "torchscript", "onnx"])
def test_bioimageio_core_predicts_images_of_any_size_with_each_weight_format(nuclei_package: Path, weights) -> None:
    """768x869 is the samples' own size, 601x475 and 600x476 are no multiple of 16: the package's
    network pads to its size divisor and crops back, so a consumer that passes the image as it
    is gets the whole answer (it ended in 'size of tensor a (237) must match ... (236)')."""
    import tifffile

    sample = tifffile.imread(Path(__file__).parent.parent / "sample_data" / "rpe1_2022-05-25_1.tif")
    ours = segment(load_model("nuclei"), sample, settings=Settings(precision="fp32")).probabilities
    for image, truth in ((sample, ours), (sample[:601, :475], None), (sample[100:700, 200:676], None)):
        theirs = _core_predict(nuclei_package, image, weights)
        assert theirs.shape == (3, *image.shape) and np.isfinite(theirs).all()
        if truth is not None:  # the whole sample: the same nuclei as napari-unet's tiled prediction
            a, b = truth[0] > 0.5, theirs[0] > 0.5
            assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.98


def test_multiclass_rgb_round_trip_and_bioimageio_test(tmp_path: Path) -> None:
    weights = _rgb_classes_model(tmp_path)
    out = tmp_path / "tissue.zip"
    result = export_package(weights, out)
    assert result.test == "passed"
    with zipfile.ZipFile(out) as z:
        rdf = z.read("rdf.yaml").decode()
    assert "softmax" in rdf and "scale_linear" in rdf and "clip" in rdf and "tumour" in rdf
    assert "red" in rdf and "license: CC0-1.0" in rdf
    path = import_package(out, "tissue-back")
    a, b = load_model(weights), load_model(path)
    assert b.card.classes == ("background", "tumour", "stroma") and b.card.kind == "semantic"
    rgb = np.random.default_rng(1).integers(0, 255, (96, 80, 3), dtype=np.uint8)
    pa, pb = segment(a, rgb).probabilities, segment(b, rgb).probabilities
    assert np.abs(pa - pb).max() < 1e-4
    # bioimageio.core's predict on an RGB image of the samples' size: whole, and the classes sum to 1
    theirs = _core_predict(out, np.random.default_rng(2).integers(0, 255, (768, 869, 3)).astype(np.uint8), "onnx")
    assert theirs.shape == (3, 768, 869) and np.allclose(theirs.sum(0), 1, atol=1e-4)


def test_instance_model_without_boundary_and_2p5d_model_export(tmp_path: Path) -> None:
    torch.manual_seed(1)
    card = ModelCard("lesion", arch_args={"features": [8, 16]}, classes=("lesion",), context=1, in_channels=3,
                     normalisation={"kind": "window", "preset": "lung"}, tile=64)  # fmt: skip
    save_model(build_model(card), tmp_path / "lesion", card)
    result = export_package(tmp_path / "lesion.safetensors", tmp_path / "lesion.zip", formats=("pytorch_state_dict",))
    assert result.test == "passed" and result.weights == ["pytorch_state_dict"]
    assert "plane" in result.example  # the middle slice of the CT sample, with its neighbours
    with zipfile.ZipFile(tmp_path / "lesion.zip") as z:
        rdf = z.read("rdf.yaml").decode()
    assert "slice_m1" in rdf and "slice_p1" in rdf


class _SaysItRan(torch.nn.Module):
    """A TorchScript program around a network: it prints a line whenever it predicts."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("this TorchScript ran")
        return self.net(x)


def _foreign_package(
    tmp_path: Path, weights: str = "torchscript", wrong_output: bool = False, program: bool = False
) -> Path:
    """A package another tool could have written: MONAI's BasicUNet with random weights,
    z-score pre-processing, a sigmoid, torchscript (``weights``: or ``onnx``, or ``both``) and
    state-dict weights, built with bioimageio.spec's own classes. With ``program``, the
    TorchScript prints a line when it runs."""
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as s
    from monai.networks.nets import BasicUNet

    torch.manual_seed(3)
    kwargs = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "features": [8, 8, 16, 32, 64, 8]}
    net = BasicUNet(**kwargs).eval()
    x = np.random.default_rng(2).gamma(2.0, 30.0, (1, 1, 64, 64)).astype(np.float32)
    xn = (x - x.mean()) / (x.std() + 1e-6)
    with torch.no_grad():
        y = torch.sigmoid(net(torch.from_numpy(xn))).numpy()
        if weights in ("torchscript", "both"):
            traced = torch.jit.trace(net, torch.from_numpy(xn))
            (torch.jit.script(_SaysItRan(traced)) if program else traced).save(str(tmp_path / "net.torchscript"))
        if weights in ("onnx", "both"):
            torch.onnx.export(net, (torch.from_numpy(xn),), str(tmp_path / "net.onnx"), input_names=["raw"],
                              dynamic_axes={"raw": {0: "b", 2: "y", 3: "x"}}, opset_version=17, dynamo=False)  # fmt: skip
    torch.save(net.state_dict(), tmp_path / "net.pt")
    np.save(tmp_path / "in.npy", x)
    np.save(tmp_path / "out.npy", 1 - y if wrong_output else y)
    (tmp_path / "doc.md").write_text("# BasicUNet\n\n## Validation\n\nRandom weights, for a test.\n")
    ref = {a: s.SizeReference(tensor_id=s.TensorId("raw"), axis_id=s.AxisId(a)) for a in "yx"}
    descr = s.ModelDescr(
        name="other tool net",
        description="random MONAI BasicUNet",
        authors=[s.Author(name="someone else")],
        cite=[s.CiteEntry(text="a paper", doi=s.Doi("10.1000/xyz123"))],
        license=s.LicenseId("MIT"),
        documentation=s.FileDescr(source=tmp_path / "doc.md"),
        inputs=[s.InputTensorDescr(
            id=s.TensorId("raw"),
            axes=[s.BatchAxis(), s.ChannelAxis(channel_names=[s.Identifier("dapi")]),
                  s.SpaceInputAxis(id=s.AxisId("y"), size=s.ParameterizedSize(min=32, step=16)),
                  s.SpaceInputAxis(id=s.AxisId("x"), size=s.ParameterizedSize(min=32, step=16))],
            test_tensor=s.FileDescr(source=tmp_path / "in.npy"),
            preprocessing=[s.ZeroMeanUnitVarianceDescr(kwargs=s.ZeroMeanUnitVarianceKwargs(axes=[s.AxisId("y"), s.AxisId("x")]))],
        )],
        outputs=[s.OutputTensorDescr(
            id=s.TensorId("nuclei"),
            axes=[s.BatchAxis(), s.ChannelAxis(channel_names=[s.Identifier("nucleus")]),
                  s.SpaceOutputAxisWithHalo(id=s.AxisId("y"), size=ref["y"], halo=8),
                  s.SpaceOutputAxisWithHalo(id=s.AxisId("x"), size=ref["x"], halo=8)],
            test_tensor=s.FileDescr(source=tmp_path / "out.npy"),
            postprocessing=[s.SigmoidDescr()],
        )],
        weights=s.WeightsDescr(
            pytorch_state_dict=s.PytorchStateDictWeightsDescr(
                source=tmp_path / "net.pt", pytorch_version=s.Version("2.1"),
                architecture=s.ArchitectureFromLibraryDescr(import_from="monai.networks.nets", callable=s.Identifier("BasicUNet"), kwargs=kwargs),
            ),
            **({"torchscript": s.TorchscriptWeightsDescr(source=tmp_path / "net.torchscript", pytorch_version=s.Version("2.1"))}
               if weights in ("torchscript", "both") else {}),
            **({"onnx": s.OnnxWeightsDescr(source=tmp_path / "net.onnx", opset_version=17)}
               if weights in ("onnx", "both") else {}),
        ),
    )  # fmt: skip
    return save_bioimageio_package(descr, output_path=tmp_path / "other.zip")


def _core_unpadded(package: Path, image: np.ndarray, output: str) -> np.ndarray:
    """bioimageio.core's prediction of the very pixels given (no halo padding), ``(C, H, W)``."""
    from bioimageio.core import create_prediction_pipeline, load_description
    from bioimageio.core.digest_spec import create_sample_for_model

    descr = load_description(package)
    with create_prediction_pipeline(descr) as pp:
        sample = create_sample_for_model(descr, inputs=image[None, None].astype(np.float32), sample_id="s")
        raw = pp.predict_sample_without_blocking(sample, skip_input_padding=True, skip_output_cropping=True)
    return np.asarray(raw.members[output].data)[0]


@pytest.mark.parametrize("weights", ["torchscript", "onnx"])
def test_a_package_from_another_tool_predicts_what_bioimageio_core_predicts(tmp_path: Path, weights: str) -> None:
    from bioimageio.core import predict

    package = _foreign_package(tmp_path, weights)
    assert check_package(package) == "passed"
    path = import_package(package, trust=True)  # (ONNX needs no trust)
    card = read_card(path)
    assert card.name == "other-tool-net" and card.architecture == weights
    assert card.normalisation == {"kind": "zscore"} and card.classes == ("nucleus",)
    net = load_model(card.name)  # by name: it is in the registry, for Predict and the CLI
    image = np.random.default_rng(5).gamma(2.0, 40.0, (96, 112)).astype(np.float32)
    ours = segment(net, image, settings=Settings(tile=128, precision="fp32")).probabilities
    assert np.abs(ours - _core_unpadded(package, image, "nuclei")).max() < 1e-4
    theirs = np.asarray(predict(model=package, inputs=image[None, None]).members["nuclei"].data)[0]
    assert np.abs(ours - theirs)[:, 8:-8, 8:-8].mean() < 0.02  # core mirrors the image out by the halo first
    # and through the command line, which tiles it like any model
    img = tmp_path / "img.tif"
    __import__("tifffile").imwrite(img, (image * 10).astype(np.uint16))
    assert main(["predict", str(img), "--model", card.name, "--out", str(tmp_path / "pred")]) == 0
    assert (tmp_path / "pred" / "img_mask.tif").is_file()
    with pytest.raises(ExchangeError, match="export the original package"):
        export_package(card.name, tmp_path / "again.zip")


def test_packaged_models_predict_but_are_not_fine_tuned(tmp_path: Path) -> None:
    from napari_unet.training.train import Trainer, TrainingItem

    path = import_package(_foreign_package(tmp_path), trust=True)
    net = load_model(path)
    image = np.zeros((64, 64), np.float32)
    labels = np.zeros((64, 64), np.int32)
    labels[10:20, 10:20] = 1
    with pytest.raises(ValueError, match="cannot be trained or fine-tuned"):
        Trainer([TrainingItem(image, labels)], base=net)


def test_cli_export_and_import(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = _rgb_classes_model(tmp_path)
    out = tmp_path / "t.zip"
    assert main(["export", str(weights), "--out", str(out), "--no-onnx", "--author", "A. Person"]) == 0
    said = capsys.readouterr().out
    assert "pytorch_state_dict, torchscript" in said and "test of the package: passed" in said
    assert main(["import", str(out), "--name", "t2"]) == 0
    assert "'t2'" in capsys.readouterr().out and read_card(tmp_path / "models" / "t2.safetensors").in_channels == 3
    assert main(["import", str(out), "--name", "t2"]) == 1  # taken
    assert "exists already" in capsys.readouterr().err


# --------------------------------------------------------------------------- refused, one sentence each


def _unpacked(package: Path, where: Path) -> Path:
    with zipfile.ZipFile(package) as z:
        z.extractall(where)
    return where


def test_damaged_packages_are_refused_in_one_sentence(tmp_path: Path, nuclei_package: Path) -> None:
    folder = _unpacked(nuclei_package, tmp_path / "wrong_hash")
    with open(folder / "weights.pt", "r+b") as f:  # one byte changed after packing
        f.seek(2000)
        byte = f.read(1)
        f.seek(2000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ExchangeError, match="checksum does not match") as err:
        import_package(folder)
    assert "\n" not in str(err.value)

    folder = _unpacked(nuclei_package, tmp_path / "missing")
    (folder / "weights.pt").unlink()
    with pytest.raises(ExchangeError, match=r"missing|not found|does not exist") as err:
        import_package(folder)
    assert "\n" not in str(err.value)

    with pytest.raises(ExchangeError, match="not a zip file"):
        (tmp_path / "x.zip").write_text("no")
        import_package(tmp_path / "x.zip")
    with pytest.raises(ExchangeError, match=r"no rdf\.yaml"):
        import_package(tmp_path)
    with pytest.raises(ExchangeError, match="no such file"):
        import_package(tmp_path / "nowhere.zip")


def _edited(package: Path, where: Path, edit) -> Path:
    import yaml

    folder = _unpacked(package, where)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    edit(rdf)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    return folder


def test_a_package_whose_test_tensors_disagree_fails_bioimageios_own_test(tmp_path: Path) -> None:
    package = _foreign_package(tmp_path, wrong_output=True)
    with pytest.raises(ExchangeError, match=r"bioimage\.io's own test failed") as err:
        check_package(package)
    assert "\n" not in str(err.value)


def test_packages_we_cannot_run_say_why(tmp_path: Path) -> None:
    package = _foreign_package(tmp_path)

    def scale_mean_variance(rdf):
        rdf["inputs"][0]["preprocessing"] = [{"id": "scale_range", "kwargs": {"axes": ["channel", "y", "x"]}}]

    with pytest.raises(ExchangeError, match="scales over axes") as err:
        import_package(_edited(package, tmp_path / "a", scale_mean_variance), trust=True)
    assert "\n" not in str(err.value)

    def three_d(rdf):
        for tensor in (*rdf["inputs"], *rdf["outputs"]):
            z = {
                "type": "space",
                "id": "z",
                "size": 8 if tensor in rdf["inputs"] else {"tensor_id": "raw", "axis_id": "z"},
            }
            tensor["axes"].insert(2, z)
            tensor.pop("test_tensor", None)  # a 2D test tensor would not fit

    with pytest.raises(ExchangeError, match="3D models are not supported yet"):
        import_package(_edited(package, tmp_path / "b", three_d))

    def state_dict_only(rdf):
        del rdf["weights"]["torchscript"]

    with pytest.raises(ExchangeError, match="ONNX or TorchScript weights"):
        import_package(_edited(package, tmp_path / "c", state_dict_only))

    def tensorflow_only(rdf):
        rdf["weights"] = {"keras_hdf5": {"source": "doc.md", "tensorflow_version": "2.15"}}

    with pytest.raises(ExchangeError, match="keras_hdf5 weights"):
        import_package(_edited(package, tmp_path / "d", tensorflow_only))


def test_export_refuses_bad_targets(tmp_path: Path) -> None:
    with pytest.raises(ExchangeError, match=r"\.zip"):
        export_package("nuclei", tmp_path / "x.tar")
    with pytest.raises(ExchangeError, match="no such folder"):
        export_package("nuclei", tmp_path / "no" / "x.zip")
    assert main(["export", "nuclei", "--out", str(tmp_path / "x.tar")]) == 1


def test_without_the_extra_export_and_import_say_which_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "bioimageio.core", None)
    with pytest.raises(ExchangeError, match=r"napari-unet\[bioimageio\]"):
        export_package("nuclei", tmp_path / "x.zip")
    with pytest.raises(ExchangeError, match=r"napari-unet\[bioimageio\]"):
        import_package(tmp_path)


def test_old_cards_without_the_new_architectures_still_load() -> None:
    card = json.loads((Path(__file__).parent.parent / "napari_unet" / "models" / "nuclei.json").read_text())
    assert ModelCard.from_dict(card).architecture == "unet"
    with pytest.raises(ValueError, match="architecture must be one of"):
        ModelCard.from_dict({**card, "architecture": "keras"})


def test_a_whole_image_model_exports_at_its_size_and_comes_back(tmp_path: Path) -> None:
    torch.manual_seed(2)
    card = ModelCard("lungs", arch_args={"features": [8, 16, 32]}, classes=("background", "left", "right"),
                     activation="softmax", input_size=128, flips=False)  # fmt: skip
    save_model(build_model(card), tmp_path / "lungs", card)
    result = export_package(tmp_path / "lungs.safetensors", tmp_path / "lungs.zip", formats=("pytorch_state_dict",))
    assert result.test == "passed" and any("resize an image to it" in note for note in result.notes)
    assert any("give --image" in note for note in result.notes)  # a sample stood in for their images
    with zipfile.ZipFile(tmp_path / "lungs.zip") as z:
        assert np.load(__import__("io").BytesIO(z.read("test_input.npy"))).shape == (1, 1, 128, 128)
    back = load_model(import_package(tmp_path / "lungs.zip"))
    assert back.card.input_size == 128 and back.card.flips is False
    x = np.random.default_rng(0).random((300, 260)).astype(np.float32)
    a, b = segment(load_model(tmp_path / "lungs.safetensors"), x), segment(back, x)
    assert np.array_equal(a.labels, b.labels)


def test_an_imported_package_of_ours_fine_tunes(tmp_path: Path) -> None:
    from napari_unet.training.train import TrainConfig, Trainer, TrainingItem

    package = tmp_path / "t.zip"
    export_package(_rgb_classes_model(tmp_path), package, formats=("pytorch_state_dict",), test=False)
    base = load_model(import_package(package))
    rgb = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    classes = np.zeros((64, 64), np.uint8)
    classes[8:30, 8:30], classes[35:60, 30:60] = 1, 2
    trainer = Trainer([TrainingItem(rgb, classes, axes="YXS")], base=base, name="t-tuned",
                      config=TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, crop=64))  # fmt: skip
    for _ in trainer.steps():
        pass
    tuned = trainer.result().model
    assert tuned.card.parent == base.card.name and tuned.card.classes == base.card.classes


def test_a_package_that_points_to_the_web_is_refused_without_a_connection(tmp_path: Path, nuclei_package: Path) -> None:
    def remote_docs(rdf):
        rdf["documentation"] = {"source": "https://example.org/README.md"}

    with pytest.raises(ExchangeError, match="never downloads") as err:
        import_package(_edited(nuclei_package, tmp_path / "web", remote_docs))  # the fixture fails any connection
    assert "\n" not in str(err.value)
