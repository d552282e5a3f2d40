"""Channels-last convolution weights: every 2D and 3D convolution moves, the network computes the same, and
optimizers and checkpoints keep working."""

from __future__ import annotations

import torch
from torch import nn

from t2v.callbacks.memory_format import to_channels_last


def mixed_network() -> nn.Module:
    """A 3D and a 2D convolution (as the video GAN has both) and a linear layer, which has no layout to change."""
    torch.manual_seed(0)
    return nn.ModuleDict({"video": nn.Conv3d(3, 4, 3, padding=1), "frame": nn.Conv2d(3, 4, 3, padding=1),
                          "up": nn.ConvTranspose2d(4, 2, 4, 2, 1), "head": nn.Linear(4, 1)})  # fmt: skip


def test_every_convolution_weight_moves_and_the_outputs_stay_the_same() -> None:
    network, reference = mixed_network(), mixed_network()
    optimizer = torch.optim.Adam(network.parameters())
    clip, image = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 8, 8)

    assert to_channels_last(network) == 3
    assert network["video"].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert network["frame"].weight.is_contiguous(memory_format=torch.channels_last)
    assert network["up"].weight.is_contiguous(memory_format=torch.channels_last)
    assert not network["frame"].weight.is_contiguous()  # really another layout, not a no-op
    assert to_channels_last(network) == 0  # already there
    # The optimizer still holds the network's parameters.
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == {id(p) for p in network.parameters()}
    for name, x in (("video", clip), ("frame", image)):
        torch.testing.assert_close(network[name](x), reference[name](x), rtol=1e-5, atol=1e-5)
    upsampled = network["up"](network["frame"](image))
    torch.testing.assert_close(upsampled, reference["up"](reference["frame"](image)), rtol=1e-5, atol=1e-5)


def test_a_checkpoint_loads_into_either_layout() -> None:
    moved, plain = mixed_network(), nn.ModuleDict(mixed_network())
    to_channels_last(moved)
    for parameter in plain.parameters():
        parameter.data.add_(1.0)
    plain.load_state_dict(moved.state_dict())  # saved channels-last, loaded contiguous
    moved.load_state_dict(plain.state_dict())  # and back: the layout stays the module's own
    assert moved["frame"].weight.is_contiguous(memory_format=torch.channels_last)
    for (name, a), (_, b) in zip(moved.state_dict().items(), plain.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_train_py_puts_every_stage_channels_last_unless_switched_off(compose_train) -> None:
    from hydra.utils import instantiate

    from t2v.callbacks.memory_format import ChannelsLast

    callbacks = instantiate(compose_train("stage=videogan").callbacks)
    assert isinstance(callbacks["channels_last"], ChannelsLast)
    assert compose_train("stage=videogan", "callbacks.channels_last=null").callbacks.channels_last is None
    network = mixed_network()
    callbacks["channels_last"].setup(None, network, "fit")  # type: ignore[arg-type]
    assert network["video"].weight.is_contiguous(memory_format=torch.channels_last_3d)
