"""Typed, immutable run configuration.

Defaults live here as pydantic fields and are documented key by key in
``configs/base.yaml`` (a test keeps the two equal). Configs are frozen values:
``with_overrides`` returns a new one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tal_core.errors import UserError
from tal_core.io import write_text_atomic

logger = logging.getLogger("talsearch.config")


class ConfigError(UserError, ValueError):
    """A config file, key or value is wrong; the message names it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class DataConfig(_Section):
    view: str = Field("front", description="which camera view to read (a key of each video's \"views\")")
    interval_seconds: float = Field(1.0, gt=0, description="length of the fixed, non-overlapping intervals that get classified")
    frames_per_interval: int = Field(4, ge=1, le=64, description="frames sampled per interval (TSN: one per equal segment)")
    sampling: Literal["tsn", "stride"] = Field("tsn", description="training frames of an interval: tsn (a random frame in each of its equal segments) | stride (equally spaced frames, the spacing evaluation sees, from a random common start: flicker and speed look the same in training and evaluation)")
    image_size: int = Field(64, ge=8, le=1024, description="frames are resized to image_size x image_size")
    min_action_overlap: float = Field(0.5, gt=0, le=1, description="an interval takes an action only if it covers >= this share of it")
    decode_fps: float = Field(8.0, gt=0, le=120, description="frame rate videos are decoded at into the frame cache")
    on_bad_video: Literal["error", "skip"] = Field("error", description="error | skip: what to do with an unreadable video")
    decode_timeout_s: float = Field(120.0, ge=0, description="a decoder call making no progress this long is an unreadable video (0 = no limit)")
    decoder: Literal["auto", "decord", "pyav"] = Field("auto", description="video decoder: auto (decord where it imports, else PyAV) / decord / pyav")
    cache_format: Literal["raw", "jpeg"] = Field("raw", description="frame cache entries: raw (uint8 frames, memory-mapped: the fastest reads, ~150 KB a frame at 224 px) | jpeg (every frame JPEG-encoded, quality 90, 4:4:4: a fraction of the disk, decoded in the DataLoader workers)")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes (0 = load in the training process)")
    flip_pairs: tuple[tuple[str, str], ...] | None = Field(None, description="pairs of actions that swap under a horizontal flip, e.g. [[turn_left, turn_right]]; other actions keep their label; [] = none swap; null = undeclared (augment.flip refused)")
    modalities: Literal["video", "audio", "video+audio"] = Field("video", description="what the model hears and sees: video (frames of data.view) | audio (the log-mel of each video's declared \"audio\" file, else the audio of its data.view file; no frames are decoded) | video+audio (both, fused before the heads)")

    @field_validator("flip_pairs")
    @classmethod
    def _distinct_pairs(cls, pairs):
        if pairs is None:
            return pairs
        named = [name for pair in pairs for name in pair]
        if len(set(named)) != len(named):
            raise ValueError(f"an action may appear in one pair only, once (got {[list(p) for p in pairs]})")
        return pairs


class ModelConfig(_Section):
    backbone: Literal["tiny", "resnet18", "resnet34", "resnet50", "mobilenet_v2"] = Field("tiny", description="tiny | resnet18 | resnet34 | resnet50 | mobilenet_v2")
    pretrained: str = Field("none", description="none | imagenet (torchvision weights) | path to a local state_dict file")
    shift_fraction: float = Field(0.125, ge=0, le=0.5, description="share of channels shifted per direction (0 = no temporal shift)")
    shift_place: Literal["blockres", "block"] = Field("blockres", description="blockres: shift the residual branch only; block: shift the block input")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the two heads")
    tiny_width: int = Field(32, ge=4, le=512, description="channel width of the tiny CPU backbone")
    output: Literal["interval", "frame"] = Field("interval", description="interval: one prediction per interval | frame: also one per sampled frame (finer cells)")
    audio_width: int = Field(32, ge=4, le=512, description="channel width of the audio branch, a small 2-D CNN over each frame's log-mel window (data.modalities with audio)")
    modality_dropout: float = Field(0.0, ge=0, le=1, description="video+audio training: share of clips whose video or audio features (either, equally likely) are blanked before the fused heads, so each modality learns to classify alone (0 = off)")
    fusion_detach: bool = Field(False, description="video+audio training with loss.modality_weight > 0: the fused heads read the branches' features without passing gradients back, so each branch learns from its own action heads only (two unimodal networks trained side by side, fused by heads learnt on top; the scene loss then trains no branch)")


class LossConfig(_Section):
    action_weight: float = Field(1.0, ge=0, description="weight of the interval action cross-entropy (background = class 0)")
    scene_weight: float = Field(0.5, ge=0, description="weight of the scene cross-entropy")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of both cross-entropies")
    background_weight: float = Field(1.0, gt=0, description="class weight of background in the action loss")
    frame_weight: float = Field(1.0, ge=0, description="weight of the per-frame action cross-entropy (model.output=frame only)")
    focal_gamma: float = Field(0.0, ge=0, le=10, description="focal loss focusing of both action terms: (1 - p)^gamma x cross-entropy (0 = plain cross-entropy)")
    class_balanced: bool = Field(False, description="weight action classes by 1 / sqrt(their share of training labels), normalised to mean 1 (times background_weight for background)")
    modality_weight: float = Field(0.0, ge=0, description="video+audio training: weight of each modality's own action losses (interval and per-frame, from its own heads, unused at evaluation), which train each branch on every class (0 = off)")
    gradient_modulation: float = Field(0.0, ge=0, le=10, description="video+audio training: alpha of on-the-fly gradient modulation; the branch whose part of the fused action logits scores rho > 1 times the other's gets its optimizer update scaled by 1 - tanh(alpha (rho - 1)) (0 = off)")


class AugmentConfig(_Section):
    crop_min_area: float = Field(1.0, gt=0, le=1, description="random resized crop (training): a clip keeps a crop of this share of the frame area or more, aspect 3/4-4/3, resized back (1 = off)")
    colour: float = Field(0.0, ge=0, le=1, description="colour jitter (training): brightness, contrast and saturation each scaled by 1 +- up to this, per clip (0 = off)")
    flip: float = Field(0.0, ge=0, le=1, description="probability of flipping a training clip horizontally; labels swap through data.flip_pairs, which must be declared")
    temporal_jitter: float = Field(0.0, ge=0, le=0.5, description="a training clip's frames come from its interval shifted by up to this share of the interval either way (0 = off)")


class AudioConfig(_Section):
    window_seconds: float = Field(0.96, gt=0, le=2.0, description="each sampled frame hears the log-mel (VGGish's: 16 kHz, 25 ms windows every 10 ms, 64 mel bands 125-7500 Hz, log(mel + 0.01)) of this many seconds centred on the time it shows")
    missing: Literal["error", "silence"] = Field("error", description="a video whose audio file or stream is missing: error (exit 2 naming the file) | silence (it hears silence; counted and logged)")
    gain_db: float = Field(0.0, ge=0, le=40, description="training: each clip's sound louder or softer by up to this many dB (0 = off)")
    time_shift_seconds: float = Field(0.0, ge=0, le=1.0, description="training: each clip's windows shifted in time by up to this many seconds either way, silence filling in (0 = off)")
    time_masks: int = Field(0, ge=0, le=8, description="training: stretches of time blanked to silence per clip (SpecAugment; 0 = off)")
    time_mask_seconds: float = Field(0.1, gt=0, le=1.0, description="longest of those time masks, seconds")
    freq_masks: int = Field(0, ge=0, le=8, description="training: bands of mel channels blanked to silence per clip (SpecAugment; 0 = off)")
    freq_mask_bands: int = Field(8, ge=1, le=64, description="widest of those frequency masks, mel bands")


class TrainConfig(_Section):
    epochs: int = Field(12, ge=1, le=10_000, description="training epochs; the best epoch by val mAP is kept")
    batch_size: int = Field(8, ge=1, le=4096, description="intervals per optimizer step over all workers: each of k DDP workers takes batch_size / k (rounded up), so k workers take the steps of one process")
    lr: float = Field(3e-3, gt=0, le=10, description="AdamW learning rate (cosine schedule)")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    seed: int = Field(0, description="seeds sampling, initialisation and data order")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto | cpu | cuda")
    amp: bool = Field(True, description="mixed precision (used on CUDA only)")
    threads: int = Field(0, ge=0, le=256, description="torch CPU threads (0 = torch's default)")
    warmup_epochs: float = Field(0.5, ge=0, le=1000, description="linear learning-rate warm-up, in epochs, before the cosine decay")
    snapshots: int = Field(2, ge=0, le=50, description="also keep the val/test predictions of this many next-best epochs (RUN/snapshots/epoch_N/): extra ensemble members at no extra training (0 = off)")
    sync_bn: bool = Field(True, description="BatchNorm statistics over the global batch of all DDP workers (SyncBatchNorm on GPUs, an all-reduce over gloo on CPU), so a k-worker trial normalises as one process does; false = each worker its own share")
    ema: float = Field(0.0, ge=0, lt=1, description="decay of an exponential moving average of the weights, evaluated and saved instead of the raw weights (0 = off; e.g. 0.99)")


DEFAULT_DECODING = "config"  # the name of the eval section's own decoding among eval.alternatives
DECODING_KEYS = ("decode", "thresholds", "nms_tiou", "max_segments_per_video", "scene_prior", "smooth",
                 "smooth_seconds", "boundary_contrast", "bridge_seconds", "refine_seconds",
                 "foreground_classes")  # what an eval.alternatives entry may change


class EvalConfig(_Section):
    tiou_thresholds: tuple[float, ...] = Field((0.5, 0.75, 0.95), description="mAP thresholds; mAP = mean over them")
    decode: Literal["merge", "multithreshold"] = Field("multithreshold", description="merge (runs of equal arg-max) | multithreshold (runs above thresholds + NMS)")
    thresholds: tuple[float, ...] = Field((0.2, 0.35, 0.5, 0.65, 0.8), description="probability thresholds of the multithreshold decoder")
    nms_tiou: float = Field(0.45, gt=0, le=1, description="1-D NMS overlap above which the lower-scored segment is dropped")
    max_segments_per_video: int = Field(200, ge=1, description="keep at most this many segments per video (highest scores)")
    batch_size: int = Field(0, ge=0, le=8192, description="intervals per evaluation batch (0 = twice train.batch_size)")
    bin_seconds: float = Field(0.0, ge=0, description="score as BinEgo-360 does: split truth and detections over bins of this length, each bin a video (0 = off)")
    scene_prior: bool = Field(False, description="rescale action probabilities by their frequency in the predicted scene")
    smooth: Literal["median", "mean"] = Field("median", description="median (keeps steps, drops isolated cells) | mean (length-weighted moving average)")
    smooth_seconds: float = Field(0.0, ge=0, description="window (seconds) of that filter over cell probabilities before decoding (0 = off)")
    boundary_contrast: bool = Field(True, description="multithreshold: scale candidates by 1 - mean probability just outside them")
    bridge_seconds: float = Field(0.0, ge=0, description="merge: runs of one class at most this many seconds apart become one segment, scored by their length-weighted mean score (0 = off)")
    foreground_classes: int = Field(0, ge=0, description="every run of cells whose arg-max is an action (any action) is also a segment of each of its this many likeliest actions (mean probability over the run): an action whose cells waver between two similar classes is found whole (0 = off)")
    refine_seconds: float = Field(0.0, ge=0, description="move each segment's start and end to the strongest step of its class's unsmoothed probabilities within this many seconds (0 = off)")
    frame_phases: int = Field(1, ge=1, le=16, description="model.output=frame: evaluation passes per interval on shifted frames; cells per interval = frames_per_interval x this")
    grid_offsets: tuple[float, ...] = Field((), description="model.output=frame: evaluation also runs on the interval grid shifted by each of these fractions of an interval (each a whole number of cells), and every cell's probabilities are averaged over the grids (test-time augmentation: each frame seen among other neighbours; [] = off)")
    alternatives: dict[str, dict[str, Any]] = Field({}, description="other decodings, by name, each a mapping of decoding keys to values that replace this section's: every evaluation scores them all on val and uses the best (recorded in metrics.json's decoding, with an out-of-fold figure); null = none")

    @field_validator("grid_offsets")
    @classmethod
    def _fractions(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        bad = [v for v in values if not 0 < v < 1]
        if bad:
            raise ValueError(f"fractions of an interval lie in (0, 1), got {bad}")
        if len(set(values)) != len(values):
            raise ValueError(f"each offset once, got {list(values)}")
        return tuple(float(v) for v in values)

    @field_validator("alternatives", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("alternatives")
    @classmethod
    def _alternatives_decode(cls, alternatives: dict[str, dict[str, Any]], info: ValidationInfo):
        """Each alternative names decoding keys only, with values this section would accept."""
        base = dict(info.data)  # the fields above, already validated (a bad one is reported on its own)
        for name, changes in alternatives.items():
            if not name.isidentifier() or name == DEFAULT_DECODING:
                raise ValueError(f"'{name}' must be an identifier other than '{DEFAULT_DECODING}'")
            if not changes:
                raise ValueError(f"{name}: must map decoding keys to values")
            unknown = sorted(set(changes) - set(DECODING_KEYS))
            if unknown:
                raise ValueError(f"{name}.{unknown[0]} is not a decoding key (those are {', '.join(DECODING_KEYS)})")
            try:
                EvalConfig.model_validate({**base, **changes})
            except ValidationError as error:
                item = error.errors()[0]
                key = ".".join(str(p) for p in item["loc"])
                raise ValueError(f"{name}.{key}: {item['msg']} (got {item.get('input')!r})") from None
        return alternatives

    def decodings(self) -> list[tuple[str, EvalConfig]]:
        """(name, decoding) of this section ('config') and of each alternative, in order, alternatives emptied."""
        own = self.model_copy(update={"alternatives": {}})
        return [(DEFAULT_DECODING, own)] + [(name, self.decoding(name)) for name in self.alternatives]

    def decoding(self, name: str) -> EvalConfig:
        """This section with alternative ``name`` applied ('config': as it is), alternatives emptied."""
        if name == DEFAULT_DECODING:
            return self.model_copy(update={"alternatives": {}})
        if name not in self.alternatives:
            raise ConfigError(f"eval.alternatives has no decoding '{name}' (it has {sorted(self.alternatives)})")
        return EvalConfig.model_validate({**self.model_dump(exclude={"alternatives"}), **self.alternatives[name]})

    @field_validator("tiou_thresholds", "thresholds")
    @classmethod
    def _in_unit_interval(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not values:
            raise ValueError("must not be empty")
        bad = [v for v in values if not 0 < v <= 1]
        if bad:
            raise ValueError(f"values must lie in (0, 1], got {bad}")
        return tuple(float(v) for v in values)


class SearchConfig(_Section):
    num_samples: int = Field(6, ge=1, description="trials Optuna proposes")
    trial_workers: int = Field(2, ge=1, le=1024, description="Ray Train workers (DDP ranks) per trial")
    use_gpu: bool = Field(False, description="workers train on GPUs, NCCL backend (else gloo on CPU)")
    gpus_per_worker: float = Field(1.0, gt=0, le=16, description="GPUs each worker reserves with use_gpu; a fraction lets trials share a GPU (0.5: two single-worker trials per GPU; needs trial_workers 1)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per Ray Train worker")
    max_concurrent: int = Field(0, ge=0, description="trials at once (0 = as many as the cluster's resources allow)")
    metric: str = Field("val_mAP", description="metric maximised by Optuna and ASHA (val_mAP, val_mAP_at_<tIoU>, val_scene_acc, train_*)")
    scheduler: Literal["asha", "hyperband", "fifo"] = Field("asha", description="early stopping: asha (Ray's ASHA) | hyperband (asynchronous Hyperband: ASHA over up to 3 brackets of different grace periods) | fifo (every trial runs its full budget)")
    grace_period: int = Field(3, ge=1, description="epochs every trial runs before ASHA may stop it (3 and 3: among the fastest to random search's best in the replay of benchmarks/data/replay_hard.json, docs/performance.md)")
    reduction_factor: int = Field(3, ge=2, description="ASHA keeps 1 in this many trials at each rung")
    max_failures: int = Field(1, ge=0, description="restarts of a crashed trial from its last checkpoint")
    seed: int = Field(0, description="seeds the Optuna sampler")
    sampler: Literal["tpe", "random", "grid"] = Field("tpe", description="tpe (Optuna's TPE) | random (Optuna's RandomSampler) | grid (every combination of categorical values, in a seeded order)")
    startup_trials: int = Field(0, ge=0, description="TPE's random proposals before it models the results (0 = one per searched key, at least 2)")
    multivariate: bool = Field(False, description="TPE models the searched keys jointly (Optuna's multivariate TPE) instead of one by one")
    avoid_repeats: bool = Field(True, description="a proposal that repeats a configuration a trial already tried (every searched key equal) is replaced by an untried one (search.repeat_replacement): samplers keep re-proposing their favourite point of a categorical space, and a repeat with the same seed trains the same model again")
    repeat_replacement: Literal["nearest", "random"] = Field("nearest", description="what replaces a repeat of TPE: nearest (an untried configuration one searched key away from it, random among those; random when all are tried) | random (any untried configuration); the random sampler's repeats are always replaced randomly (random search without repeats)")
    constant_liar: bool = Field(False, description="TPE counts running trials as bad results so that concurrent trials get different proposals")
    poll_interval_s: float = Field(0.5, gt=0, le=60, description="how often Ray Train's controller polls a trial's workers (Ray's default: 2 s)")
    private_network: bool = Field(True, description="a local cluster runs in a network namespace of its own: Ray reachable on loopback only (Linux; needs a local tracking store)")
    storage: str = Field("", description="the Optuna study's database: an RDB URL (postgresql://user@host:5432/db, mysql://..., sqlite:///path.db) that every reader of the sweep opens (\"\" = sqlite:///SWEEP/optuna.db); its password comes from PGPASSWORD or ~/.pgpass (PostgreSQL), or from this URL at run time, and is never saved (sweep.json records the URL without it)")

    @field_validator("storage")
    @classmethod
    def _study_storage(cls, url: str) -> str:
        """An Optuna RDB URL; its password (if any) leaves the config for this process's memory only."""
        clean, password = split_password(url.strip())
        if clean and urlsplit(clean).scheme.partition("+")[0] not in STUDY_STORAGE_SCHEMES:
            raise ValueError("not an Optuna storage URL (postgresql://..., mysql://... or sqlite:///path.db; "
                             "empty = SWEEP/optuna.db)")
        if clean.startswith("sqlite:") and clean.partition("://")[2].lstrip("/") in ("", ":memory:"):
            raise ValueError("an in-memory SQLite study ends with the process: name a file (sqlite:///path.db) "
                             "or leave it empty")
        if password is not None:
            _STUDY_STORAGE_PASSWORDS[clean] = password
        return clean

    @property
    def stopper(self) -> str:
        """The scheduler the sweep uses (``scheduler``; the older ``asha: false`` arrives translated to fifo)."""
        return self.scheduler

    @model_validator(mode="before")
    @classmethod
    def _older_spellings(cls, data: Any) -> Any:
        """``asha`` (deprecated): translated wherever a search section is built (``translate_deprecated``)."""
        if isinstance(data, Mapping) and "asha" in data:
            return translate_deprecated({"search": data})[0]["search"]
        return data

    @model_validator(mode="after")
    def _one_gpu_per_rank(self) -> SearchConfig:
        """NCCL refuses two ranks of one job on one GPU: a fractional GPU is for trials of one worker."""
        if self.use_gpu and self.gpus_per_worker < 1 and self.trial_workers > 1:
            raise ValueError(f"search.gpus_per_worker={self.gpus_per_worker} (a shared GPU) needs "
                             f"search.trial_workers=1, got {self.trial_workers}: NCCL refuses two ranks on one GPU")
        return self


STUDY_STORAGE_SCHEMES = ("postgresql", "mysql", "sqlite")
_STUDY_STORAGE_PASSWORDS: dict[str, str] = {}  # search.storage without its password -> the password (memory only)


def split_password(url: str) -> tuple[str, str | None]:
    """(``url`` without the password of its ``user:password@``, that password or None). The credentials end at
    the last ``@`` before any query, so that a password left unquoted is still cut out whole."""
    scheme, sep, rest = url.partition("://")
    address, query_sep, query = rest.partition("?")
    userinfo, at, host = address.rpartition("@")
    if not sep or not at or ":" not in userinfo or scheme.startswith("sqlite"):  # a file path has no password
        return url, None
    user, _, password = userinfo.partition(":")
    return f"{scheme}://{user}@{host}{query_sep}{query}", unquote(password)


def study_storage_password(url: str) -> str | None:
    """The password a config loaded in this process gave with ``search.storage`` = ``url`` (else None)."""
    return _STUDY_STORAGE_PASSWORDS.get(url)


def split_credentials(uri: str) -> tuple[str, dict[str, str]]:
    """(the URI without credentials, MLflow's own environment variables carrying them): ``user:password@``
    becomes MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, a token-like query value MLFLOW_TRACKING_TOKEN."""
    parsed = urlsplit(uri)
    if parsed.scheme not in ("http", "https"):
        return uri, {}
    env: dict[str, str] = {}
    netloc = parsed.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        env["MLFLOW_TRACKING_USERNAME"] = unquote(user)
        if password:
            env["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    kept = []
    for name, value in parse_qsl(parsed.query, keep_blank_values=True):
        if any(word in name.lower() for word in ("token", "password", "secret", "key")):
            env["MLFLOW_TRACKING_TOKEN"] = value
        else:
            kept.append((name, value))
    return urlunsplit(parsed._replace(netloc=netloc, query=urlencode(kept))), env


class TrackingConfig(_Section):
    uri: str = Field("", description="MLflow tracking URI (\"\" = sqlite:///<cwd>/mlflow.db)")
    experiment: str = Field("tal-search", description="MLflow experiment name")

    @field_validator("uri")
    @classmethod
    def _credentials_to_environment(cls, uri: str) -> str:
        """Credentials never stay in the config (it is saved, logged and sent to workers): they move to MLflow's
        environment variables, which this process and the Ray cluster it starts read."""
        clean, env = split_credentials(uri)
        os.environ.update(env)
        return clean


class Config(_Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    augment: AugmentConfig = AugmentConfig()
    audio: AudioConfig = AudioConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    search: SearchConfig = SearchConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _grid_offsets_align(self) -> Config:
        """Shifted grids are averaged cell by cell: they need per-frame cells, and shifts of whole cells."""
        offsets = self.eval.grid_offsets
        if offsets and self.model.output != "frame":
            raise ValueError(f"eval.grid_offsets={list(offsets)} needs model.output=frame (interval cells of a "
                             "shifted grid never coincide with the unshifted ones)")
        cells = self.data.frames_per_interval * self.eval.frame_phases
        off_grid = [o for o in offsets if abs(o * cells - round(o * cells)) > 1e-6]
        if off_grid:
            raise ValueError(f"eval.grid_offsets {off_grid} are not whole cells: an interval holds {cells} cells "
                             f"(data.frames_per_interval x eval.frame_phases), so use multiples of 1/{cells}")
        return self

    @model_validator(mode="after")
    def _detached_fusion_needs_own_heads(self) -> Config:
        """Detached fused heads train no branch: each branch then learns from its own heads alone (the key does
        nothing for video or audio alone, so a sweep may search data.modalities beside it)."""
        if self.model.fusion_detach and self.data.modalities == "video+audio" and self.loss.modality_weight <= 0:
            raise ValueError(f"model.fusion_detach=true needs loss.modality_weight > 0 (got {self.loss.modality_weight})"
                             " with data.modalities=video+audio: without the modalities' own heads no loss would "
                             "train the branches")
        return self

    @model_validator(mode="after")
    def _flip_needs_pairs(self) -> Config:
        """A flip turns left into right: it is allowed only where the data say which actions swap."""
        if self.augment.flip > 0 and self.data.flip_pairs is None:
            raise ValueError(f"augment.flip={self.augment.flip} needs data.flip_pairs: declare the actions that swap "
                             "under a horizontal flip ([] when none do)")
        return self

    def with_overrides(self, flat: Mapping[str, Any]) -> Config:
        return from_dict(merge_nested(self.model_dump(), unflatten(flat)))

    def flat(self) -> dict[str, Any]:
        return flatten(self.model_dump())


# Keys older versions wrote (stored configs, sweep files, replay tables) and what replaces them. Every reader
# translates them: stored files silently, a user's config (``load_config``) with one warning line per key.
DEPRECATED_KEYS = {"search.asha": "search.scheduler (search.asha: false = search.scheduler: fifo; true = keep "
                                  "search.scheduler)"}


def translate_deprecated(nested: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(``nested`` with its deprecated keys replaced, the dotted names of those it held). ``search.asha: false``
    becomes ``search.scheduler: fifo``; ``search.asha: true`` is dropped (the scheduler keeps its value), as the
    older versions read it."""
    search = nested.get("search")
    if not isinstance(search, Mapping) or "asha" not in search:
        return dict(nested), []
    search = dict(search)
    raw = search.pop("asha")
    try:
        asha = TypeAdapter(bool).validate_python(raw)
    except ValidationError:
        raise ConfigError(f"config key 'search.asha' (deprecated): expected a boolean, got {raw!r}; "
                          f"use {DEPRECATED_KEYS['search.asha']}") from None
    if not asha:
        search["scheduler"] = "fifo"
    return {**nested, "search": search}, ["search.asha"]


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; an empty mapping stays a value ({'a': {}} -> {'a': {}})."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}."""
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        parts = dotted.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{dotted}': '{part}' is a value, not a section")
        node[parts[-1]] = value
    return nested


def merge_nested(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_nested(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'")
        elif not key:  # a rule across sections: its message names the keys
            lines.append(item["msg"].removeprefix("Value error, "))
        else:
            value = item.get("input")
            value = split_password(value)[0] if isinstance(value, str) else value  # no password in messages
            lines.append(f"config key '{key}': {item['msg']} (got {value!r})")
    return f"invalid config{source}:\n  " + "\n  ".join(lines)


def from_dict(nested: Mapping[str, Any], source: str = "") -> Config:
    try:
        return Config.model_validate(nested)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
    return loaded


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """['a.b=1', 'c=[1, 2]'] -> {'a.b': 1, 'c': [1, 2]}; values parse as YAML."""
    flat: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{pair}' must look like key=value")
        try:
            flat[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override '{pair}': value is not valid YAML") from None
    return flat


def load_config(path: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] = ()) -> Config:
    """Defaults <- YAML file (sections other than the config's are ignored) <- overrides."""
    nested: dict[str, Any] = {}
    source = ""
    if path is not None:
        nested = {k: v for k, v in read_yaml(path).items() if k not in EXTRA_YAML_SECTIONS}
        source = f" in {path}"
    flat = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    nested, deprecated = translate_deprecated(merge_nested(nested, unflatten(flat)))
    for key in deprecated:
        logger.warning(f"config key '{key}'{source or ' (--set)'} is deprecated: use {DEPRECATED_KEYS[key]}")
    return from_dict(nested, source)


# Top-level YAML sections that are not run config (sweep files carry a search space).
EXTRA_YAML_SECTIONS = frozenset({"space"})


def save_config(config: Config, path: str | Path) -> None:
    write_text_atomic(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
