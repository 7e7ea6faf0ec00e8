"""Spatial dimensions in the card (#27): old cards load as 2D; the tile, overlap and spacing
hold one value per spatial axis; the networks are built with the card's dimensions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import napari_unet
from napari_unet.networks.architectures import build_model
from napari_unet.networks.card import ModelCard


def test_a_card_written_before_spatial_dims_loads_as_2d():
    from napari_unet.networks.model import resolve_model_path

    shipped = json.loads(resolve_model_path("nuclei").with_suffix(".json").read_text())
    assert "spatial_dims" not in shipped  # written by an earlier version
    card = ModelCard.from_dict(shipped)
    assert card.spatial_dims == 2 and card.spacing is None
    assert card.tile_shape == (card.tile, card.tile) and card.overlap_shape == (card.overlap, card.overlap)


def test_a_volume_card_keeps_a_value_per_axis_through_json():
    card = ModelCard("ct", spatial_dims=3, tile=[32, 128, 128], overlap=[0.5, 0.25, 0.25], spacing=[2.5, 0.7, 0.7])
    again = ModelCard.from_dict(json.loads(card.to_json()))
    assert again == card
    assert again.tile_shape == (32, 128, 128) and again.overlap_shape == (0.5, 0.25, 0.25)
    assert ModelCard("same", tile=[128, 128]).tile == 128  # one value where every axis has it


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"spatial_dims": 4}, "spatial_dims must be 2 (planes) or 3 (volumes)"),
        ({"spatial_dims": True}, "spatial_dims must be 2"),
        ({"tile": [128, 160]}, "a 2D model's tile is square"),
        ({"spatial_dims": 3, "tile": [2, 128, 128]}, "at least 16 (4 along Z)"),
        ({"spatial_dims": 3, "tile": [32, 128]}, "tile has 2 values; a 3D model takes one, or one per axis"),
        ({"spacing": [1.0]}, "spacing has 1 values"),
        ({"spacing": [0.0, 1.0]}, "spacing must be one positive number per spatial axis"),
        ({"spacing": 0.5}, "spacing must be one positive number per spatial axis"),
        ({"overlap": [0.1, 1.2]}, "overlap must be in [0, 1)"),
        ({"spatial_dims": 3, "context": 1, "in_channels": 3}, "a 3D network sees the neighbouring slices itself"),
    ],
)
def test_cards_that_cannot_be_say_why(fields, said):
    with pytest.raises(ValueError) as err:
        ModelCard("bad", **fields)
    assert said in str(err.value)


@pytest.mark.parametrize(
    ("architecture", "arch_args"),
    [
        ("unet", {"features": [4, 8]}),
        ("resunet", {"channels": [4, 8]}),
        ("attention_unet", {"channels": [4, 8]}),
        ("unetpp", {"features": [4, 4, 8, 8, 8, 4]}),
    ],
)
def test_every_architecture_is_built_with_the_cards_dimensions(architecture, arch_args):
    card = ModelCard("v", architecture=architecture, arch_args=arch_args, spatial_dims=3, tile=[16, 32, 32])
    net = build_model(card)
    x = torch.rand(1, 1, 16, 32, 32)
    assert any(isinstance(m, torch.nn.Conv3d) for m in net.modules())
    with torch.no_grad():
        inference = net(x)  # (the classic U-Net's memory-saving decoder runs without autograd)
    assert tuple(inference.shape) == (1, 1, 16, 32, 32)
    assert tuple(net.train()(x).shape) == (1, 1, 16, 32, 32)  # and training's forward pass
    plane = build_model(card.replace(spatial_dims=2, tile=32))
    assert not any(isinstance(m, torch.nn.Conv3d) for m in plane.modules())


def test_the_classic_unets_two_decoders_agree_in_3d():
    net = build_model(ModelCard("v", arch_args={"features": [4, 8, 16]}, spatial_dims=3, tile=[16, 32, 32])).eval()
    x = torch.rand(2, 1, 8, 32, 32)
    with torch.no_grad():
        fast = net(x)
    with torch.enable_grad():
        plain = net(x)
    assert torch.allclose(fast, plain.detach(), atol=1e-5)


def test_a_3d_model_is_refused_by_the_engine_in_one_sentence():
    model = build_model(ModelCard("v3", arch_args={"features": [4, 8]}, spatial_dims=3, tile=[16, 32, 32]))
    with pytest.raises(ValueError, match="is a 3D network, and napari-unet predicts with 2D networks only") as err:
        napari_unet.segment(model, np.ones((4, 32, 32), np.float32), device="cpu")
    assert "\n" not in str(err.value)
