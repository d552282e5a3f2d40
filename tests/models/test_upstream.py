"""Frozen upstream parts stay frozen, whatever their owner's train() does."""

from torch import nn

from t2v.models.upstream import freeze


def test_frozen_module_stays_in_eval_mode_and_has_no_gradients() -> None:
    owner = nn.Sequential(nn.Linear(2, 2), freeze(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))))
    owner.train()
    assert owner.training and owner[0].training
    assert not owner[1].training and not owner[1][1].training
    assert not any(p.requires_grad for p in owner[1].parameters())
