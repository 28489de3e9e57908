"""Sound in training: data-set items, the audio branch, augmentation, runs with video+audio and audio alone."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from helpers import TINY_OVERRIDES
from tal_core.config import AudioConfig, DataConfig, ModelConfig, load_config
from tal_core.data import audio
from tal_core.data.annotations import load_dataset
from tal_core.data.audio import SILENCE, AudioMissingError, audio_range, windows_at
from tal_core.data.dataset import IntervalDataset, frame_times
from tal_core.data.importers import import_360x
from tal_core.data.synth import SynthSpec, synthesize
from tal_core.data.video import FrameCache
from tal_core.model.multitask import MultiTaskTSM, blank_one_modality
from tal_core.scoring.predictions import load_predictions
from tal_core.training.augment import augment_inputs, augment_sound
from tal_core.training.trainer import fit

SOUND = {**TINY_OVERRIDES, "model.audio_width": 8, "train.snapshots": 0, "train.threads": 1}


@pytest.fixture(scope="module", autouse=True)
def _threads_restored():
    """The runs here train on one thread (seconds, even on a busy machine); later tests get torch's own count."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sound_sets(tmp_path_factory):
    """Two tiny sets (3 train / 1 val / 1 test videos of 5-6 s, front view only): sound in declared wav files,
    and sound inside the mp4s."""
    root = tmp_path_factory.mktemp("sound_sets")
    sets = {}
    for kind in ("wav", "mp4"):
        sets[kind] = root / kind
        synthesize(sets[kind], SynthSpec(videos=5, seed=2, duration=(5.0, 6.0), size=32, views=("front",),
                                         audio=kind))
    return sets


def test_items_hear_the_window_of_each_frame_they_see(sound_sets, tmp_path):
    spec = load_dataset(sound_sets["wav"])
    both = DataConfig(image_size=32, frames_per_interval=2, modalities="video+audio")
    seen_and_heard = IntervalDataset(spec, "train", both, train=True, cache=FrameCache(tmp_path / "a"), seed=4)
    heard = IntervalDataset(spec, "train", both.model_copy(update={"modalities": "audio"}), train=True,
                            cache=FrameCache(tmp_path / "b"), seed=4)
    assert not [p for p in (tmp_path / "b").glob("*.npy") if "logmel" not in p.name]  # audio alone: no frames
    assert len(heard) == len(seen_and_heard)
    for item in (0, 5, len(heard) - 1):
        inputs, label, frame_labels, scene, _ = seen_and_heard[item]
        alone, label2, frame_labels2, scene2, _ = heard[item]
        assert set(inputs) == {"video", "audio"} and set(alone) == {"audio"}
        assert inputs["video"].shape == (2, 3, 32, 32) and inputs["audio"].shape == (2, 96, 64)
        assert torch.equal(inputs["audio"], alone["audio"])  # the same frames are heard, with or without sight
        assert (label, scene) == (label2, scene2) and torch.equal(frame_labels, frame_labels2)
        video_index, interval, _ = heard.index[item]
        video = heard.videos[video_index].video
        start = heard.videos[video_index].starts[interval]
        positions = heard.positions(start, heard.videos[video_index].ends[interval],
                                    heard.frames_available(video_index), item)
        expected = windows_at(heard.sounds_of(video_index), audio_range(video.offset, video.duration)[0],
                              frame_times(positions, both.decode_fps), 0.96)
        np.testing.assert_array_equal(alone["audio"].numpy(), expected)
    video_only = IntervalDataset(spec, "train", both.model_copy(update={"modalities": "video"}), train=True,
                                 cache=FrameCache(tmp_path / "a"), seed=4)
    assert torch.equal(video_only[5][0], seen_and_heard[5][0]["video"])  # video alone: unchanged items


def test_audio_branch_fuses_before_the_heads_and_per_frame():
    cfg = ModelConfig(tiny_width=8, audio_width=4, output="frame")
    clips, sounds = torch.randint(0, 255, (3, 2, 3, 32, 32), dtype=torch.uint8), torch.randn(3, 2, 96, 64)
    both = MultiTaskTSM(cfg, 2, 5, 4, "video+audio").eval()
    out = both({"video": clips, "audio": sounds})
    assert out.action.shape == (3, 6) and out.scene.shape == (3, 4) and out.frame.shape == (3, 2, 6)
    assert both.action_head.in_features == 4 * 8 + 4 * 4
    alone = MultiTaskTSM(cfg, 2, 5, 4, "audio").eval()
    assert alone.backbone is None and alone({"audio": sounds}).frame.shape == (3, 2, 6)
    video = MultiTaskTSM(cfg, 2, 5, 4)
    assert video.audio_branch is None and not any(k.startswith("audio") for k in video.state_dict())



def test_modality_dropout_blanks_one_modality_per_clip_in_training_only():
    parts = [torch.ones(2000, 2, 3), torch.ones(2000, 2, 5)]
    torch.manual_seed(0)
    video, sound = blank_one_modality(parts, 0.5)
    video_gone, sound_gone = video.sum((1, 2)) == 0, sound.sum((1, 2)) == 0
    assert not (video_gone & sound_gone).any()  # a clip never loses both
    assert abs(video_gone.float().mean() - 0.25) < 0.04 and abs(sound_gone.float().mean() - 0.25) < 0.04
    assert torch.equal(video[~video_gone], parts[0][~video_gone])  # the others untouched
    cfg = ModelConfig(tiny_width=8, audio_width=4, modality_dropout=1.0, dropout=0.0)
    model = MultiTaskTSM(cfg, 2, 5, 4, "video+audio")
    inputs = {"video": torch.randint(0, 255, (4, 2, 3, 32, 32), dtype=torch.uint8), "audio": torch.randn(4, 2, 96, 64)}
    model.eval()
    assert torch.equal(model(inputs).action, model(inputs).action)  # evaluation hears and sees everything
    assert MultiTaskTSM(cfg, 2, 5, 4, "video").modality_dropout == 0.0  # one modality: nothing to blank


def test_unimodal_heads_train_each_branch_and_are_unused_at_evaluation():
    from tal_core.config import LossConfig
    from tal_core.training.losses import multitask_loss

    cfg = ModelConfig(tiny_width=8, audio_width=4, output="frame")
    inputs = {"video": torch.randint(0, 255, (3, 2, 3, 32, 32), dtype=torch.uint8), "audio": torch.randn(3, 2, 96, 64)}
    model = MultiTaskTSM(cfg, 2, 5, 4, "video+audio", unimodal_heads=True).train()
    out = model(inputs)
    assert [(a.shape, f.shape) for a, f in out.unimodal] == [((3, 6), (3, 2, 6))] * 2
    assert model.unimodal_heads[0].action.in_features == 4 * 8 and model.unimodal_heads[1].action.in_features == 4 * 4
    action, frames, scene = torch.tensor([1, 0, 2]), torch.tensor([[1, 1], [0, 0], [2, 0]]), torch.tensor([0, 1, 2])
    plain = multitask_loss(out.action, out.scene, action, scene, LossConfig(), out.frame, frames)
    weighted = multitask_loss(out.action, out.scene, action, scene, LossConfig(modality_weight=0.5), out.frame, frames,
                              unimodal=out.unimodal)
    own = sum(multitask_loss(a, out.scene, action, scene, LossConfig(scene_weight=0), f, frames).total
              for a, f in out.unimodal)
    assert torch.allclose(weighted.total, plain.total + 0.5 * own)
    weighted.total.backward()  # the video backbone hears its own head: its gradient includes the unimodal terms
    assert model.unimodal_heads[0].action.weight.grad.abs().sum() > 0
    assert model.eval()(inputs).unimodal == ()
    assert len(MultiTaskTSM(cfg, 2, 5, 4, "audio", unimodal_heads=True).unimodal_heads) == 0

def test_detached_fusion_trains_each_branch_by_its_own_heads_only():
    from tal_core.config import ConfigError

    cfg = ModelConfig(tiny_width=8, audio_width=4, output="frame", fusion_detach=True, dropout=0.0)
    inputs = {"video": torch.randint(0, 255, (3, 2, 3, 32, 32), dtype=torch.uint8), "audio": torch.randn(3, 2, 96, 64)}
    model = MultiTaskTSM(cfg, 2, 5, 4, "video+audio", unimodal_heads=True).train()
    out = model(inputs)
    (out.action.sum() + out.frame.sum() + out.scene.sum()).backward()  # the fused heads' losses alone
    assert model.action_head.weight.grad.abs().sum() > 0  # the fused heads learn
    assert all(p.grad is None for branch in model.branches() for p in branch.parameters())  # no branch does
    model.zero_grad(set_to_none=True)
    sum(a.sum() + f.sum() for a, f in model(inputs).unimodal).backward()  # the own heads train both branches
    assert all(any(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters())
               for branch in model.branches())
    attached = MultiTaskTSM(ModelConfig(tiny_width=8, audio_width=4, output="frame", dropout=0.0), 2, 5, 4,
                            "video+audio", unimodal_heads=True)
    attached.load_state_dict(model.state_dict())  # the same weights: checkpoints do not depend on the key
    attached.eval()
    assert torch.equal(model.eval()(inputs).action, attached(inputs).action)  # the same network at evaluation
    with pytest.raises(ConfigError, match="model.fusion_detach=true needs loss.modality_weight > 0"):
        load_config(None, {"data.modalities": "video+audio", "model.fusion_detach": True})
    assert load_config(None, {"data.modalities": "video", "model.fusion_detach": True}).model.fusion_detach


def test_audio_augmentation_gain_shift_and_masks():
    loud = torch.full((2, 1, 96, 64), SILENCE)
    loud[:, :, 40] = 3.0  # a click in frame 40
    generator = torch.Generator().manual_seed(0)
    gained = augment_sound(loud, AudioConfig(gain_db=12), generator)
    assert (gained[:, :, :40] == SILENCE).all()  # silence stays silence
    assert not torch.allclose(gained[:, :, 40], loud[:, :, 40]) and (gained[:, :, 40] - 3.0).abs().max() <= 1.39
    shifted = augment_sound(loud, AudioConfig(time_shift_seconds=0.2), torch.Generator().manual_seed(1))
    rows = [int(torch.nonzero(shifted[i, 0, :, 0] > 0)[0]) for i in range(2)]
    assert all(abs(r - 40) <= 20 for r in rows) and (shifted > 0).sum() == (loud > 0).sum()
    masked = augment_sound(torch.zeros(4, 2, 96, 64), AudioConfig(time_masks=2, time_mask_seconds=0.2, freq_masks=1,
                                                                    freq_mask_bands=10), torch.Generator().manual_seed(2))
    blank = masked == SILENCE
    assert blank.any() and torch.equal(blank[:, 0], blank[:, 1])  # one mask per clip, on every window of it
    assert blank.float().mean() < 0.5
    # a flip needs frames: audio alone keeps its labels
    action, frames = torch.tensor([1, 2]), torch.tensor([[1, 1], [2, 2]])
    perm = torch.tensor([0, 2, 1])
    from tal_core.config import AugmentConfig

    _, kept, kept_frames = augment_inputs({"audio": loud}, action, frames, AugmentConfig(flip=1.0), perm,
                                          torch.Generator().manual_seed(0), AudioConfig())
    assert torch.equal(kept, action) and torch.equal(kept_frames, frames)


@pytest.mark.parametrize("kind, output", [("wav", "interval"), ("mp4", "frame")])
def test_one_epoch_with_video_and_audio_and_with_audio_alone(sound_sets, tmp_path, kind, output):
    spec = load_dataset(sound_sets[kind])
    cache = FrameCache(tmp_path / "cache")
    runs = {}
    # the per-frame run also trains each modality's own heads and blanks a modality in some clips (inert alone)
    remedies = {"loss.modality_weight": 1.0, "model.modality_dropout": 0.25} if output == "frame" else {}
    for modalities in ("video+audio", "audio"):
        cfg = load_config(None, {**SOUND, "data.modalities": modalities, "model.output": output, **remedies})
        decodes = audio.decode_count()
        best = fit(cfg, spec, tmp_path / modalities, cache=cache)
        assert {"val_mAP", "val_mAP@0.5", "train_loss"} <= set(best) and np.isfinite(best["train_loss"])
        weights = torch.load(tmp_path / modalities / "checkpoint.pt", weights_only=True)["model"]
        own_heads = {key.split(".")[1] for key in weights if key.startswith("unimodal_heads.")}
        assert own_heads == ({"0", "1"} if remedies and modalities == "video+audio" else set())
        runs[modalities] = load_predictions(tmp_path / modalities / "predictions" / "val.npz")
        if modalities == "audio":  # the second run reads the log-mel the first one cached
            assert audio.decode_count() == decodes
    a, b = runs["video+audio"], runs["audio"]
    assert a.video_ids == b.video_ids and a.actions == b.actions and a.probs.shape == b.probs.shape
    np.testing.assert_array_equal(a.starts, b.starts)
    np.testing.assert_array_equal(a.ends, b.ends)
    assert not np.allclose(a.probs, b.probs)


def test_a_360x_import_with_clips_trains_on_its_recordings_sound(sound_sets, tmp_path):
    src = tmp_path / "src"
    spec = load_dataset(sound_sets["mp4"])
    for video in spec.videos.values():
        (src / video.video_id).mkdir(parents=True)
        shutil.copy(spec.video_path(video, "front"), src / video.video_id / "front_view.mp4")
        meta = {f"s{i}": {"z": [s.start, s.end], "av": {"1": s.label}} for i, s in enumerate(video.segments)}
        (src / video.video_id / f"{video.video_id}.json").write_text(json.dumps({"metadata": meta}))
    rows = "".join(f"{v.video_id},{v.scene}\n" for v in spec.videos.values())
    (src / "scenes.csv").write_text("recording,scene\n" + rows)
    import_360x(src, tmp_path / "out", cut=1.0)
    clips = load_dataset(tmp_path / "out")
    assert any(v.offset > 0 for v in clips.videos.values())
    data = DataConfig(image_size=32, frames_per_interval=2, modalities="audio")
    heard = IntervalDataset(clips, "train", data, train=False, cache=FrameCache(tmp_path / "cache"))
    index = next(i for i, vi in enumerate(heard.videos) if vi.video.offset >= 2.0)
    clip = heard.videos[index].video
    item = int(np.flatnonzero(heard.index[:, 0] == index)[0])
    whole = audio.AudioCache(tmp_path / "cache").load(clips.audio_path(clip, "front"), 0.0, 20.0)
    positions = heard.positions(heard.videos[index].starts[0] + clip.offset,
                                heard.videos[index].ends[0] + clip.offset, heard.frames_available(index), item)
    expected = windows_at(whole, 0.0, frame_times(positions, data.decode_fps), 0.96)  # recording time
    np.testing.assert_allclose(heard[item][0]["audio"].numpy(), expected, atol=0.05)
    best = fit(load_config(None, {**SOUND, "data.modalities": "audio"}), clips, tmp_path / "run",
               cache=FrameCache(tmp_path / "cache"))
    assert np.isfinite(best["train_loss"])


def test_asked_for_audio_a_silent_mp4_exits_2_naming_it(tmp_path, capsys, caplog):
    from talsearch.cli import main

    synthesize(tmp_path / "mute", SynthSpec(videos=3, seed=5, duration=(4.0, 5.0), size=32, views=("front",),
                                            audio="none"))
    code = main(["train", "--data", str(tmp_path / "mute"), "--out", str(tmp_path / "run"), "--set",
                 "data.modalities=video+audio", *[f"{k}={v}" for k, v in SOUND.items()]])
    err = capsys.readouterr().err
    assert code == 2
    assert "videos/vid0000/front.mp4: has no audio stream" in err and "audio.missing=silence" in err
    spec = load_dataset(tmp_path / "mute")
    with pytest.raises(AudioMissingError):
        IntervalDataset(spec, "train", DataConfig(modalities="audio"), train=True, cache=FrameCache(tmp_path / "c"))
    with caplog.at_level(logging.WARNING):
        silent = IntervalDataset(spec, "train", DataConfig(modalities="audio"), train=True,
                                 cache=FrameCache(tmp_path / "c"), audio=AudioConfig(missing="silence"))
    assert silent.silent == [v.video_id for v in sorted(spec.subset("train"), key=lambda v: v.video_id)]
    assert "hear silence" in caplog.text + capsys.readouterr().err  # logged (to stderr once the CLI set logs up)
    assert (silent[0][0]["audio"] == SILENCE).all()
