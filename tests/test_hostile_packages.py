"""Packages from other tools, as a hostile or careless author would make them (#32): TorchScript
is a program and runs only when trusted, broken weights are refused at import in one sentence,
an ONNX file never reads outside its package, and onnxruntime keeps quiet."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from napari_unet.cli import main  # noqa: E402
from napari_unet.exchange import ExchangeError, import_package  # noqa: E402
from napari_unet.networks.model import ModelLoadError, list_models, load_model, read_card  # noqa: E402
from napari_unet.objects.pipeline import Settings, segment  # noqa: E402
from tests.test_exchange import _edited, _foreign_package, offline  # noqa: E402, F401  (offline: autouse)

IMAGE = np.random.default_rng(5).gamma(2.0, 40.0, (96, 112)).astype(np.float32)


def _registered() -> set[str]:
    return {e.name for e in list_models() if e.source == "user"}


def _replace_file(folder: Path, name: str, content: bytes, weights: str) -> Path:
    """``folder``'s file ``name`` replaced by ``content``, its checksum in rdf.yaml updated (a
    careful forger's package, which bioimage.io's checksum alone does not catch)."""
    (folder / name).write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()

    def rehash(rdf):
        rdf["weights"][weights]["sha256"] = digest

    return _rehash(folder, rehash)


def _rehash(folder: Path, edit) -> Path:
    import yaml

    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    edit(rdf)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    return folder


def _unpacked_foreign(tmp_path: Path, weights: str, **kw) -> Path:
    return _edited(_foreign_package(tmp_path, weights, **kw), tmp_path / "unpacked", lambda rdf: None)


def test_torchscript_is_not_run_unless_the_person_trusts_its_source(tmp_path: Path, capfd) -> None:
    package = _foreign_package(tmp_path, "torchscript", program=True)
    with pytest.raises(ExchangeError, match=r"only weights napari-unet can run are TorchScript.*--trust") as err:
        import_package(package)
    assert "\n" not in str(err.value) and not _registered()
    assert not list((tmp_path / "models").glob("*.bioimageio"))  # nothing half-imported
    assert main(["import", str(package)]) == 1
    assert "--trust" in capfd.readouterr().err
    # trusted: imported, and it runs when it predicts (the person's choice)
    path = import_package(package, trust=True)
    assert read_card(path).training["trusted"] is True
    segment(load_model(path), IMAGE, settings=Settings(tile=128, precision="fp32"))
    assert "this TorchScript ran" in capfd.readouterr().out


def test_a_package_with_onnx_runs_its_onnx_and_never_its_torchscript(tmp_path: Path, capfd) -> None:
    path = import_package(_foreign_package(tmp_path, "both", program=True))  # no trust asked for
    assert read_card(path).architecture == "onnx"
    result = segment(load_model(path), IMAGE, settings=Settings(tile=128, precision="fp32"))
    assert result.probabilities.shape == (1, 96, 112)
    assert "this TorchScript ran" not in capfd.readouterr().out


def test_a_model_imported_before_trust_was_asked_is_not_run(tmp_path: Path) -> None:
    path = import_package(_foreign_package(tmp_path, "torchscript"), trust=True)
    card = read_card(path)
    training = {k: v for k, v in card.training.items() if k != "trusted"}  # as an older napari-unet wrote it
    path.with_suffix(".json").write_text(card.replace(training=training).to_json())
    with pytest.raises(ModelLoadError, match="imported without --trust") as err:
        load_model(path.with_suffix(".json"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "content, what",
    [
        (b"\x00not a torchscript archive" * 40, "random bytes"),
        (pickle.dumps({"weights": [1.0, 2.0]}), "a pickle renamed"),
    ],
)
def test_torchscript_that_is_not_one_is_refused_at_import(tmp_path: Path, content: bytes, what: str) -> None:
    folder = _replace_file(_unpacked_foreign(tmp_path, "torchscript"), "net.torchscript", content, "torchscript")
    with pytest.raises(ExchangeError, match="TorchScript weights cannot be loaded") as err:
        import_package(folder, trust=True)
    assert "\n" not in str(err.value), what
    assert not _registered() and not list((tmp_path / "models").glob("*.bioimageio"))


def test_onnx_that_is_not_one_is_refused_at_import(tmp_path: Path) -> None:
    folder = _replace_file(_unpacked_foreign(tmp_path, "onnx"), "net.onnx", b"\x08garbage" * 100, "onnx")
    with pytest.raises(ExchangeError, match=r"ONNX weights (cannot be read|do not open)") as err:
        import_package(folder)
    assert "\n" not in str(err.value) and not _registered()


def _with_external_data(folder: Path, location: str, tmp_path: Path) -> Path:
    """The package's ONNX file with its tensors moved to an external file named ``location``."""
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(folder / "net.onnx"))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="net.data", size_threshold=0)
    onnx.save_model(model, str(folder / "net.onnx"))  # writes net.data beside it
    model = onnx.load(str(folder / "net.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    content = model.SerializeToString()
    return _replace_file(folder, "net.onnx", content, "onnx")


@pytest.mark.parametrize("location", ["/etc/hostname", "../secret.bin", "..\\secret.bin"])
def test_onnx_external_data_outside_the_package_is_refused(tmp_path: Path, location: str) -> None:
    folder = _with_external_data(_unpacked_foreign(tmp_path, "onnx"), location, tmp_path)
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    with pytest.raises(ExchangeError, match="outside the package") as err:
        import_package(folder)
    assert "\n" not in str(err.value) and not _registered()


def test_onnx_external_data_inside_the_package_travels_with_it(tmp_path: Path) -> None:
    folder = _with_external_data(_unpacked_foreign(tmp_path, "onnx"), "net.data", tmp_path)
    path = import_package(folder)
    assert (path.parent / f"{read_card(path).name}.bioimageio" / "net.data").is_file()
    assert segment(load_model(path), IMAGE, settings=Settings(tile=128, precision="fp32")).probabilities.shape[1:] == (
        96,
        112,
    )


def test_onnxruntime_keeps_its_warnings_to_itself(tmp_path: Path, capfd) -> None:
    """An ONNX file with a large initializer that no node uses: onnxruntime warns about it
    (in colour, on stderr) unless told to report errors only."""
    from onnx import numpy_helper

    folder = _unpacked_foreign(tmp_path, "onnx")
    model = onnx.load(str(folder / "net.onnx"))
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((512, 512), np.float32), "unused"))
    _replace_file(folder, "net.onnx", model.SerializeToString(), "onnx")
    capfd.readouterr()
    path = import_package(folder)
    segment(load_model(path), IMAGE, settings=Settings(tile=128, precision="fp32"))
    err = capfd.readouterr().err
    assert "onnxruntime" not in err.lower() and "\x1b[" not in err, err[:300]


# --------------------------------------------------------------------------- the package file itself


def _small_own_package(tmp_path: Path) -> Path:
    from napari_unet.exchange import export_package
    from tests.test_exchange import _rgb_classes_model

    return export_package(_rgb_classes_model(tmp_path), tmp_path / "own.zip", test=False).path


def _rezipped(package: Path, out: Path, extra: dict[str, bytes] | None = None, replace: dict | None = None) -> Path:
    import zipfile

    with zipfile.ZipFile(package) as z, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as w:
        for name in z.namelist():
            w.writestr(name, (replace or {}).get(name, z.read(name)))
        for name, content in (extra or {}).items():
            w.writestr(name, content)
    return out


def test_a_zip_slip_entry_writes_nothing_outside_the_models_folder(tmp_path: Path) -> None:
    """Entries that climb out of wherever the package is unpacked: enough '..' to reach '/' from any
    folder, an absolute path, and two levels up (looked for around the test's own folders)."""
    import uuid

    mark = f"slipped-{uuid.uuid4().hex}.txt"
    package = _rezipped(_foreign_package(tmp_path, "onnx"), tmp_path / "slip.zip",
                        extra={"../" * 40 + mark: b"out", "/" + mark: b"out", "../../" + mark: b"out"})  # fmt: skip
    try:
        import_package(package)
    except ExchangeError as exc:
        assert "\n" not in str(exc)
    assert not (Path("/") / mark).exists()
    assert not list(tmp_path.parent.parent.rglob(mark)) and not list((tmp_path / "models").rglob(mark))


def test_a_zip_bomb_entry_does_not_blow_up_import(tmp_path: Path) -> None:
    from tests.conftest import traced_peak

    bomb = b"\0" * (256 << 20)  # 256 MiB of zeros, about 256 KiB in the zip
    package = _rezipped(_foreign_package(tmp_path, "onnx"), tmp_path / "bomb.zip", extra={"padding.bin": bomb})
    del bomb
    assert package.stat().st_size < 8 << 20
    path, peak = traced_peak(lambda: import_package(package))
    assert read_card(path).architecture == "onnx"
    assert peak < 128 << 20, f"{peak / 2**20:.0f} MiB held to import a package with an unused 256 MiB entry"


class _Marks:
    """A pickle that writes a file when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the pickle ran"))


def test_a_code_carrying_pickle_with_its_checksum_forged_never_runs(tmp_path: Path) -> None:
    import io
    import zipfile

    import yaml

    package = _small_own_package(tmp_path)
    marker = tmp_path / "ran.txt"
    buffer = io.BytesIO()
    torch.save({"weights": _Marks(marker)}, buffer)
    evil = buffer.getvalue()
    with zipfile.ZipFile(package) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
    rdf["weights"]["pytorch_state_dict"]["sha256"] = hashlib.sha256(evil).hexdigest()
    forged = _rezipped(package, tmp_path / "forged.zip", replace={"weights.pt": evil, "rdf.yaml": yaml.safe_dump(rdf)})
    with pytest.raises(ExchangeError, match="holds pickled objects or code") as err:
        import_package(forged)
    assert "\n" not in str(err.value) and not marker.exists() and not _registered()


def test_a_description_with_a_python_tag_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "tagged.txt"
    package = _foreign_package(tmp_path, "onnx")
    import zipfile

    with zipfile.ZipFile(package) as z:
        rdf = z.read("rdf.yaml").decode()
    tagged = rdf + f"\nx: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]\n"
    with pytest.raises(ExchangeError, match="description cannot be read") as err:
        import_package(_rezipped(package, tmp_path / "tagged.zip", replace={"rdf.yaml": tagged.encode()}))
    assert "\n" not in str(err.value) and not marker.exists() and not _registered()


def test_a_description_of_nested_yaml_aliases_is_refused_at_once(tmp_path: Path) -> None:
    """The "billion laughs": nine aliases nested nine deep, 387 million strings once followed."""
    import zipfile

    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    text = "\n".join([*lines, "format_version: 0.5.4", "type: model", "name: laughs", "attachments: *i", ""])
    package = tmp_path / "laughs.zip"
    with zipfile.ZipFile(package, "w") as z:
        z.writestr("rdf.yaml", text)
    with pytest.raises(ExchangeError, match="YAML aliases") as err:
        import_package(package)
    assert "\n" not in str(err.value) and not _registered()
