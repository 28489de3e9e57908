"""Audio front end: PyAV decoding, VGGish's log-mel, its cache, and the window each cell hears.

- Decoding (PyAV): the first audio stream of a file, every channel resampled to 16 kHz (``av.AudioResampler``)
  and averaged to mono. Times are on the video's clock: time 0 is the first frame of the file's video stream
  (its ``start_time``; a file without video, e.g. a declared ``audio.wav``, starts with the video at its own
  start time). A clip that points into a longer recording (``offset``, ``talsearch import-360x --cut``) decodes
  only its own stretch of the recording, plus ``CONTEXT_S`` either side.
- Log-mel with VGGish's settings (its ``mel_features.py``): 25 ms windows (400 samples) every 10 ms (160), a
  periodic Hann window, the magnitude of a 512-point FFT, 64 mel bands over 125-7500 Hz on the HTK mel scale
  (``1127 ln(1 + f / 700)``), ``log(mel + 0.01)``. Log-mel frame j hears samples [160 j, 160 j + 400), so its
  centre is ``start + j / 100 + 0.0125`` s.
- The cache: each (file, its size and modification time, the settings above, the decoded time range) is
  decoded once into a float32 ``.npy`` (frames, 64) beside the frame cache, written under a temporary name and
  renamed when complete; readers memory-map it. ``AudioCache.decoded`` and ``decode_count()`` count decodes.
- A cell's window (``windows_at``, ``cell_windows``): the ``round(window_seconds * 100)`` log-mel frames whose
  centres lie in [c - window / 2, c + window / 2) around the cell's centre c; frames outside the signal read
  ``log(0.01)``, the log-mel of silence.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from pathlib import Path

import numpy as np

from tal_core.errors import UserError
from tal_core.io import atomic_file

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
FFT_SIZE = 512  # the next power of two above the window (VGGish)
MEL_BANDS = 64
MEL_LOW_HZ, MEL_HIGH_HZ = 125.0, 7500.0
LOG_OFFSET = 0.01
SILENCE = float(np.log(LOG_OFFSET))  # the log-mel of silence, and of every frame outside the signal
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_SAMPLES  # 100 log-mel frames per second
FRAME_CENTRE_S = WINDOW_SAMPLES / 2 / SAMPLE_RATE  # frame j's centre lies j / 100 + 0.0125 s after the start
CONTEXT_S = 1.0  # decoded beyond a clip's ends, so windows (audio.window_seconds <= 2) near them hear the recording
CACHE_VERSION = 1
DECODE_CHUNK_FRAMES = 8192  # log-mel frames computed at once (bounds the memory of long recordings)
DEFAULT_TIMEOUT_S = 120.0

logger = logging.getLogger(__name__)
_decodes = {"files": 0}


class AudioMissingError(UserError, FileNotFoundError):
    """A file asked for audio has none (no such file, no audio stream, no samples); the message names it."""


class AudioDecodeError(UserError, RuntimeError):
    """An audio file could not be decoded; the message names it."""


def decode_count() -> int:
    """How many audio decodes this process has run (every cache miss is one)."""
    return _decodes["files"]


def hertz_to_mel(hertz) -> np.ndarray:
    """The HTK mel scale, as VGGish's ``mel_features.hertz_to_mel``."""
    return 1127.0 * np.log1p(np.asarray(hertz, dtype=np.float64) / 700.0)


def mel_filterbank(bands: int = MEL_BANDS, fft_size: int = FFT_SIZE, sample_rate: int = SAMPLE_RATE,
                   low_hz: float = MEL_LOW_HZ, high_hz: float = MEL_HIGH_HZ) -> np.ndarray:
    """(fft_size // 2 + 1, bands) weights from FFT magnitudes to mel bands: triangles on the mel scale between
    ``bands + 2`` equally spaced edges, peaking at 1 (VGGish's ``spectrogram_to_mel_matrix``; the DC bin is 0)."""
    bins_mel = hertz_to_mel(np.linspace(0.0, sample_rate / 2, fft_size // 2 + 1))[:, None]
    edges = np.linspace(hertz_to_mel(low_hz), hertz_to_mel(high_hz), bands + 2)
    lower, centre, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    rising = (bins_mel - lower) / (centre - lower)
    falling = (upper - bins_mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def periodic_hann(length: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)


_FILTERBANK = mel_filterbank().astype(np.float32)
_HANN = periodic_hann(WINDOW_SAMPLES).astype(np.float32)


def frame_count(samples: int) -> int:
    """Whole 25 ms windows in ``samples`` (VGGish frames without padding)."""
    return max(0, 1 + (samples - WINDOW_SAMPLES) // HOP_SAMPLES) if samples >= WINDOW_SAMPLES else 0


def log_mel(signal: np.ndarray) -> np.ndarray:
    """(frames, 64) float32 log-mel of a mono 16 kHz signal."""
    signal = np.ascontiguousarray(signal, dtype=np.float32)
    frames = frame_count(len(signal))
    out = np.empty((frames, MEL_BANDS), np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(signal, WINDOW_SAMPLES)[::HOP_SAMPLES] if frames else None
    for begin in range(0, frames, DECODE_CHUNK_FRAMES):
        chunk = windows[begin : begin + DECODE_CHUNK_FRAMES] * _HANN
        magnitude = np.abs(np.fft.rfft(chunk, FFT_SIZE)).astype(np.float32)
        out[begin : begin + len(chunk)] = np.log(magnitude @ _FILTERBANK + LOG_OFFSET)
    return out


def _time_zero(container, stream) -> float:
    """The time (seconds, in the file's own timestamps) that is 0 on the video's clock."""
    reference = container.streams.video[0] if container.streams.video else stream
    if reference.start_time is None:
        return 0.0
    return float(reference.start_time * reference.time_base)


def decode_audio(path: str | Path, start: float = 0.0, end: float | None = None,
                 timeout_s: float | None = DEFAULT_TIMEOUT_S) -> np.ndarray:
    """Mono float32 samples at 16 kHz of [start, end) seconds on the video's clock (``end`` None: to the end);
    sample 0 lies at ``start`` (the file's audio starting later leaves zeros before it). Raises
    ``AudioMissingError`` (no file, no audio stream, nothing decoded) or ``AudioDecodeError``, naming the file."""
    from tal_core.data.video import within

    path = Path(path)
    if not path.is_file():
        raise AudioMissingError(f"{path}: audio file not found")
    try:
        signal = within(timeout_s, path, "decoding its audio", _decode, path, float(start), end)
    except UserError:
        raise
    except Exception as error:  # av.error.* for broken files
        raise AudioDecodeError(f"{path}: cannot decode its audio ({str(error).splitlines()[0][:200]})") from None
    _decodes["files"] += 1
    return signal


def _decode(path: Path, start: float, end: float | None) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise AudioMissingError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        zero = _time_zero(container, stream)
        if start > CONTEXT_S and stream.time_base:  # a clip deep in a recording: skip the part before it
            try:  # a second early: a decoder (AAC) needs a frame or two to settle after a seek
                container.seek(max(0, int((zero + start - CONTEXT_S) / stream.time_base)), stream=stream)
            except av.error.FFmpegError:  # not seekable: decode from the start (times come from the frames)
                pass
        resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)
        pieces: list[np.ndarray] = []
        first_time, wanted, have = None, None, 0
        for frame in itertools.chain(container.decode(stream), [None]):
            if frame is not None and first_time is None:  # where decoding starts, on the video's clock
                first_time = float(frame.time) - zero if frame.time is not None else 0.0
                wanted = None if end is None else max(0.0, end - first_time) * SAMPLE_RATE
            new = [_mono(out) for out in resampler.resample(frame)]
            pieces += new
            have += sum(len(p) for p in new)
            if frame is not None and wanted is not None and have >= wanted:  # the rest is not needed
                pieces += [_mono(out) for out in resampler.resample(None)]
                break
    signal = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if not len(signal):
        raise AudioMissingError(f"{path}: its audio stream holds no samples")
    lead = int(round(((first_time or 0.0) - start) * SAMPLE_RATE))  # where the decoded samples start
    signal = np.concatenate([np.zeros(lead, np.float32), signal]) if lead > 0 else signal[-lead:]
    if end is not None:
        signal = signal[: max(0, int(round((end - start) * SAMPLE_RATE)))]
    return signal


def _mono(frame) -> np.ndarray:
    """A planar float frame's channels averaged."""
    return frame.to_ndarray().reshape(len(frame.layout.channels), -1).mean(axis=0).astype(np.float32)


def audio_range(offset: float, duration: float) -> tuple[float, float]:
    """The stretch of a file a video entry hears: its clip with ``CONTEXT_S`` either side (from 0 at most)."""
    return max(0.0, offset - CONTEXT_S), offset + duration + CONTEXT_S


def cache_key(path: Path, start: float, end: float) -> str:
    stat = path.stat()
    ident = {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
             "rate": SAMPLE_RATE, "window": WINDOW_SAMPLES, "hop": HOP_SAMPLES, "fft": FFT_SIZE,
             "bands": MEL_BANDS, "low": MEL_LOW_HZ, "high": MEL_HIGH_HZ, "log_offset": LOG_OFFSET,
             "start": round(float(start), 6), "end": round(float(end), 6), "version": CACHE_VERSION}
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
    return f"{path.stem}-logmel-{start:g}-{end:g}s-{digest}"


class AudioCache:
    """Log-mel of audio files, decoded once into ``cache_dir`` (the frame cache's folder by default) and
    memory-mapped from there."""

    def __init__(self, cache_dir: str | Path | None = None, timeout_s: float | None = DEFAULT_TIMEOUT_S):
        from tal_core.data.video import default_cache_dir

        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.timeout_s = timeout_s
        self.decoded = 0  # decodes this cache ran (entries it found are not counted)

    def path_for(self, audio: Path, start: float, end: float) -> Path:
        if not audio.is_file():
            raise AudioMissingError(f"{audio}: audio file not found")
        return self.cache_dir / f"{cache_key(audio, start, end)}.npy"

    def ensure(self, audio: str | Path, start: float, end: float) -> Path:
        """Decode [start, end) of ``audio`` into the cache unless a complete entry exists; return its path."""
        from tal_core.data.video import _file_lock

        audio = Path(audio)
        target = self.path_for(audio, start, end)
        if target.exists():
            return target
        with _file_lock(target.with_suffix(".lock")):
            if not target.exists():  # another process may have finished it meanwhile
                values = self._decode(audio, start, end)
                self.decoded += 1
                with atomic_file(target, "wb") as handle:
                    np.save(handle, values)
        return target

    def _decode(self, audio: Path, start: float, end: float) -> np.ndarray:
        return log_mel(decode_audio(audio, start, end, self.timeout_s))

    def load(self, audio: str | Path, start: float, end: float) -> np.ndarray:
        """Memory-mapped (frames, 64) float32 log-mel of [start, end) of ``audio``; frame j centres on
        ``start + j / 100 + 0.0125`` s."""
        return np.load(self.ensure(audio, start, end), mmap_mode="r")


def window_frames(window_seconds: float) -> int:
    """Log-mel frames in a window of ``window_seconds`` (96 for VGGish's 0.96 s)."""
    return max(1, int(round(window_seconds * FRAMES_PER_SECOND)))


def windows_at(values: np.ndarray | None, start: float, centres, window_seconds: float) -> np.ndarray:
    """(len(centres), W, 64) float32: for each centre time c (seconds, on the clock of ``values``, whose frame 0
    begins at ``start``) the W frames centred on it; frames outside ``values`` (or all, for None) are silence."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1)
    width = window_frames(window_seconds)
    if values is None or not len(values):
        return np.full((len(centres), width, MEL_BANDS), SILENCE, np.float32)
    first = np.ceil((centres - start - FRAME_CENTRE_S) * FRAMES_PER_SECOND - width / 2 - 1e-6).astype(np.int64)
    rows = first[:, None] + np.arange(width)[None]
    inside = (rows >= 0) & (rows < len(values))
    out = np.asarray(values)[np.clip(rows, 0, len(values) - 1)]
    out[~inside] = SILENCE
    return out.astype(np.float32, copy=False)


def cell_windows(values: np.ndarray | None, start: float, cell_starts, cell_ends, window_seconds: float) -> np.ndarray:
    """The window of each cell [cell_start, cell_end), centred on the cell's centre (see ``windows_at``)."""
    centres = (np.asarray(cell_starts, dtype=np.float64) + np.asarray(cell_ends, dtype=np.float64)) / 2
    return windows_at(values, start, centres, window_seconds)
