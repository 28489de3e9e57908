import torch
from torch.nn import functional as F

from tal_core.config import LossConfig
from tal_core.training.losses import action_cross_entropy, balanced_class_weights, multitask_loss


def test_focal_loss_with_gamma_near_zero_is_the_weighted_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(16, 4), torch.randint(0, 4, (16,))
    weight = torch.tensor([0.5, 1.0, 2.0, 1.0])
    focal = action_cross_entropy(logits, target, weight, LossConfig(focal_gamma=1e-9))
    assert torch.allclose(focal, F.cross_entropy(logits, target, weight=weight), atol=1e-6)


def test_focal_loss_down_weights_easy_items():
    logits = torch.tensor([[6.0, 0.0], [0.2, 0.0]])  # an easy and a hard item, both of class 0
    target = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, target, reduction="none")
    focal = [action_cross_entropy(logits[i:i + 1], target[i:i + 1], torch.ones(2), LossConfig(focal_gamma=2.0))
             for i in range(2)]
    assert focal[0] / ce[0] < 0.01 and focal[1] / ce[1] > 0.2


def test_balanced_weights_favour_rare_classes_with_mean_one():
    weights = balanced_class_weights([900, 100, 25, 0])
    assert weights[3] == 0 and weights[2] > weights[1] > weights[0]
    assert torch.isclose(weights[:3].mean(), torch.tensor(1.0))
    assert torch.isclose(weights[2] / weights[0], torch.tensor(6.0))  # sqrt(900 / 25)


def test_class_weights_reach_both_action_terms_and_background_weight_still_applies():
    torch.manual_seed(1)
    action, scene, frame = torch.randn(4, 3), torch.randn(4, 2), torch.randn(4, 2, 3)
    a_t, s_t, f_t = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 0, 1]), torch.tensor([[0, 1]] * 4)
    plain = multitask_loss(action, scene, a_t, s_t, LossConfig(), frame, f_t)
    weighted = multitask_loss(action, scene, a_t, s_t, LossConfig(), frame, f_t, torch.tensor([1.0, 1.0, 5.0]))
    assert weighted.action != plain.action and weighted.frame == plain.frame  # class 2 absent from frames
    heavy_bg = multitask_loss(action, scene, a_t, s_t, LossConfig(background_weight=3.0), frame, f_t,
                              torch.tensor([1.0, 1.0, 5.0]))
    assert heavy_bg.action != weighted.action
