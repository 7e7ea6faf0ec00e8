from __future__ import annotations

import pytest
import torch

from napari_unet.networks.architectures import fuse_batchnorm
from napari_unet.networks.model import (
    ARCHITECTURES,
    ModelCard,
    ModelLoadError,
    build_model,
    list_models,
    load_model,
    save_model,
)

SMALL_ARGS = {
    "unet": {"features": (4, 8, 16, 32, 64)},
    "resunet": {"channels": (4, 8, 16, 32, 64), "num_res_units": 1},
    "attention_unet": {"channels": (4, 8, 16, 32, 64)},
    "unetpp": {"features": (4, 4, 8, 16, 32, 4)},
}


@pytest.fixture(autouse=True)
def user_models(tmp_path, monkeypatch):
    folder = tmp_path / "user_models"
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(folder))
    return folder


def small_card(arch: str = "unet", **kw) -> ModelCard:
    return ModelCard(name=f"tiny_{arch}", architecture=arch, arch_args=SMALL_ARGS[arch], **kw)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize(("cin", "classes"), [(1, ("foreground",)), (3, ("background", "left lung", "right lung"))])
def test_every_architecture_builds_runs_and_round_trips(tmp_path, arch, cin, classes):
    activation = "softmax" if len(classes) > 1 else "sigmoid"
    torch.manual_seed(0)
    net = build_model(small_card(arch, in_channels=cin, classes=classes, activation=activation))
    x = torch.randn(2, cin, 48, 64)
    with torch.inference_mode():
        y = net(x)
    assert y.shape == (2, len(classes), 48, 64)
    path = save_model(net, tmp_path / f"m_{arch}")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    back = load_model(path)
    assert back.card == net.card and not back.training
    with torch.inference_mode():
        torch.testing.assert_close(back(x), y, rtol=0, atol=0)


def test_card_is_inside_the_safetensors_file(tmp_path):
    net = build_model(small_card())
    path = save_model(net, tmp_path / "solo")
    path.with_suffix(".json").unlink()
    assert load_model(path).card.name == "tiny_unet"


def test_registry_lists_user_models_by_name(user_models):
    save_model(build_model(small_card()), user_models / "my_cells")
    names = {e.name: e.source for e in list_models()}
    assert names["my_cells"] == "user"
    assert load_model("my_cells").card.architecture == "unet"


def test_pt_state_dict_is_read_without_unpickling_code(tmp_path):
    net = build_model(small_card())
    torch.save(net.state_dict(), tmp_path / "other_tool.pt")
    (tmp_path / "other_tool.json").write_text(net.card.to_json())
    back = load_model(tmp_path / "other_tool.pt")
    for k, v in net.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v)


class Evil:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_pickled_code_is_refused(tmp_path):
    torch.save({"weights": Evil()}, tmp_path / "evil.pt")
    (tmp_path / "evil.json").write_text(small_card().to_json())
    with pytest.raises(ModelLoadError, match="only weights can be loaded"):
        load_model(tmp_path / "evil.pt")


def test_weights_that_do_not_fit_the_card(tmp_path):
    net = build_model(small_card())
    path = save_model(net, tmp_path / "m")
    wrong = small_card(in_channels=3)
    path.with_suffix(".json").write_text(wrong.to_json())
    with pytest.raises(
        ModelLoadError,
        match=r"do not fit the unet its card describes .* 3 input channel.*down.0.0.weight is \(4, 1, 3, 3\)",
    ):
        load_model(path)


def test_corrupt_truncated_empty_and_missing_files(tmp_path):
    path = save_model(build_model(small_card()), tmp_path / "m")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_model(path)
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_model(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "nothing.safetensors")
    with pytest.raises(ModelLoadError, match=r"unknown model 'no_such_model'.*known models"):
        load_model("no_such_model")


def test_bad_cards():
    with pytest.raises(ValueError, match="architecture must be one of"):
        ModelCard("x", architecture="segformer")
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\)"):
        ModelCard("x", overlap=1.0)
    with pytest.raises(ValueError, match="softmax model needs at least two"):
        ModelCard("x", activation="softmax")


def test_fused_batchnorm_gives_the_same_output():
    torch.manual_seed(1)
    net = build_model(small_card())
    net.train()
    with torch.no_grad():  # give BatchNorm real running statistics
        for _ in range(3):
            net(torch.randn(4, 1, 32, 32) * 3 + 1)
    net.eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.inference_mode():
        ref = net(x)
        fused = fuse_batchnorm(net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="eval mode"):
        fuse_batchnorm(build_model(small_card()).train())


def test_the_receptive_field_is_measured_and_kept_in_the_card():
    from napari_unet.networks.architectures import measure_receptive_field

    shallow = build_model(ModelCard("a", arch_args={"features": [4, 8]}))  # 1 pooling
    deep = build_model(ModelCard("b", arch_args={"features": [4, 8, 16, 32]}))  # 3 poolings
    a, b = measure_receptive_field(shallow, size=128), measure_receptive_field(deep, size=128)
    for rf in (a, b):
        assert 0 < rf["radius_95_px"] <= rf["radius_99_px"] <= rf["theoretical_radius_px"]
    assert b["theoretical_radius_px"] > a["theoretical_radius_px"]  # deeper looks further
    # the classic U-Net with one pooling: 2 convs (2 px), pool, 2 convs (4 px), up, 2 convs (2 px)
    assert a["theoretical_radius_px"] == 2 + 4 + 2 + 1
    card = ModelCard("c", receptive_field=b)
    import json

    assert ModelCard.from_dict(json.loads(card.to_json())).receptive_field == b
    assert load_model("nuclei").card.receptive_field["radius_99_px"] > 0  # recorded for the shipped model
