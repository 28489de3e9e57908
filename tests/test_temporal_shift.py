import pytest
import torch

from tal_core.model.temporal_shift import TemporalShift, temporal_shift


def naive_shift(x, n_segment, fraction):
    nt, c, h, w = x.shape
    fold = int(c * fraction)
    out = torch.zeros_like(x)
    for clip in range(nt // n_segment):
        for t in range(n_segment):
            i = clip * n_segment + t
            if t + 1 < n_segment:
                out[i, :fold] = x[i + 1, :fold]
            if t - 1 >= 0:
                out[i, fold:2 * fold] = x[i - 1, fold:2 * fold]
            out[i, 2 * fold:] = x[i, 2 * fold:]
    return out


@pytest.mark.parametrize("n_segment", range(1, 9))
@pytest.mark.parametrize("fraction", [0.0, 0.125, 0.25, 0.5])
def test_values_and_gradients_match_naive_loop(n_segment, fraction):
    x = torch.randn(3 * n_segment, 16, 2, 3, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out, ref = temporal_shift(x, n_segment, fraction), naive_shift(x2, n_segment, fraction)
    assert torch.equal(out, ref)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    assert torch.equal(x.grad, x2.grad)


def test_no_leakage_between_clips():
    x = torch.zeros(2 * 4, 8, 1, 1)
    x[:4] = 1.0  # clip 0 all ones, clip 1 all zeros
    out = temporal_shift(x, 4, 0.25)
    assert out[4:].abs().sum() == 0


def test_fraction_zero_is_identity_and_module_wraps():
    x = torch.randn(4, 8, 2, 2)
    assert temporal_shift(x, 4, 0.0) is x
    module = TemporalShift(torch.nn.Identity(), 4, 0.25)
    assert torch.equal(module(x), naive_shift(x, 4, 0.25))


def test_gradcheck_and_channels_last():
    x = torch.randn(2 * 3, 8, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: temporal_shift(t, 3, 0.25), (x,))
    y = torch.randn(8, 16, 4, 4).to(memory_format=torch.channels_last)
    out = temporal_shift(y, 4, 0.125)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, naive_shift(y.contiguous(), 4, 0.125))
