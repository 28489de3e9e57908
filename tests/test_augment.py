import pytest
import torch

from tal_core.config import AugmentConfig, ConfigError, load_config
from tal_core.training.augment import augment_batch, flip_permutation

ACTIONS = ("turn_left", "turn_right", "wave")


def clips_with_ramp(n=2, t=3, size=8):
    """Clips whose pixel value grows left to right (so a mirror is visible)."""
    ramp = torch.arange(size, dtype=torch.uint8).mul(20).view(1, 1, 1, 1, size)
    return ramp.expand(n, t, 3, size, size).contiguous()


def test_flip_mirrors_every_frame_and_swaps_declared_pairs_only():
    clips = clips_with_ramp()
    action = torch.tensor([1, 3])
    frames = torch.tensor([[0, 1, 2], [3, 3, 0]])
    perm = flip_permutation(ACTIONS, [("turn_left", "turn_right")])
    out, new_action, new_frames = augment_batch(clips, action, frames, AugmentConfig(flip=1.0), perm,
                                                torch.Generator().manual_seed(0))
    assert torch.allclose(out, clips.flip(-1).float(), atol=1e-3)
    assert new_action.tolist() == [2, 3]  # turn_left -> turn_right; wave keeps its label
    assert new_frames.tolist() == [[0, 2, 1], [3, 3, 0]]


def test_no_flip_keeps_clips_and_labels():
    clips = clips_with_ramp()
    action, frames = torch.tensor([1, 2]), torch.tensor([[1, 1, 1], [2, 2, 2]])
    out, a, f = augment_batch(clips, action, frames, AugmentConfig(), None, torch.Generator())
    assert out is clips and a is action and f is frames


def test_crop_and_colour_change_pixels_the_same_way_on_every_frame_of_a_clip():
    torch.manual_seed(0)
    clip = torch.randint(0, 255, (1, 1, 3, 16, 16), dtype=torch.uint8).expand(2, 4, 3, 16, 16).contiguous()
    cfg = AugmentConfig(crop_min_area=0.3, colour=0.4)
    out, _, _ = augment_batch(clip, torch.zeros(2, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long), cfg,
                              None, torch.Generator().manual_seed(1))
    assert out.shape == clip.shape and out.min() >= 0 and out.max() <= 255
    assert not torch.allclose(out, clip.float(), atol=1.0)
    assert torch.allclose(out[:, :1].expand_as(out), out)  # frames of one clip: one crop, one colour change
    assert not torch.allclose(out[0], out[1])  # clips differ


def test_flip_pairs_name_actions_of_the_data_set():
    with pytest.raises(ConfigError, match="'jump'"):
        flip_permutation(ACTIONS, [("turn_left", "jump")])


def test_flip_needs_declared_pairs_and_pairs_are_distinct():
    with pytest.raises(ConfigError, match="data.flip_pairs"):
        load_config(overrides=["augment.flip=0.5"])
    assert load_config(overrides=["augment.flip=0.5", "data.flip_pairs=[]"]).augment.flip == 0.5
    with pytest.raises(ConfigError, match="flip_pairs"):
        load_config(overrides=["data.flip_pairs=[[a, b], [b, c]]"])
