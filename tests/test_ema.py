import torch
from torch import nn

from tal_core.training.ema import WeightEMA


def test_average_follows_the_weights_with_a_warming_decay():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = WeightEMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay min(0.9, 2 / 11)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 1 - 2 / 11))
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.module.weight, torch.ones(1, 2), atol=1e-6)
    assert not ema.module.weight.requires_grad


def test_state_round_trips_and_buffers_are_copied():
    model = nn.BatchNorm1d(3)
    ema = WeightEMA(model, decay=0.99)
    model.running_mean.fill_(2.0)
    ema.update(model)
    assert torch.equal(ema.module.running_mean, model.running_mean)
    other = WeightEMA(nn.BatchNorm1d(3), decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and torch.equal(other.module.running_mean, ema.module.running_mean)
