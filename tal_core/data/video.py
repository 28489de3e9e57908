"""Video decoding (decord) and the decoded-frame cache.

Each (video file, decode fps, image size) is decoded once, sequentially, into a
``.npy`` file of uint8 frames (N, H, W, 3) that is memory-mapped by every reader
(dataloader workers, trials, later sweeps). Files are written under a temporary
name and renamed when complete, so a crash never leaves a half file that is later
trusted; the key holds the file's size and modification time, so a changed video
or size is never served stale. A lock file keeps two processes from decoding the
same video at once. Every decoder call runs under a watchdog: a decoder that makes
no progress for ``decode_timeout_s`` (decord can hang on a broken container) gives a
``VideoDecodeError`` naming the file instead of a hang. With ``data.cache_format: jpeg`` an entry holds every
frame JPEG-encoded instead (5-23% of the raw bytes in docs/performance.md's measures; ``jpeg_frames.py``), and readers decode only the frames
they sample.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tal_core.data import jpeg_frames
from tal_core.errors import VideoDecodeError  # noqa: F401  (re-exported: raised by every reader)
from tal_core.io import atomic_file

CACHE_VERSION = 2  # 2: cached frame i shows the source frame at the centre of its cell
DECODE_CHUNK = 64
DEFAULT_DECODE_TIMEOUT_S = 120.0
LOCK_TIMEOUT_S = 3600.0  # how long to wait for another process building the same cache entry
CACHE_FORMATS = ("raw", "jpeg")  # data.cache_format: uint8 frames, or each frame JPEG-encoded (jpeg_frames.py)


def default_cache_dir() -> Path:
    return Path(os.environ.get("TALSEARCH_CACHE", Path.home() / ".cache" / "talsearch" / "frames"))


def source_frame_indices(num_frames: int, source_fps: float, decode_fps: float) -> np.ndarray:
    """Source frame index of each cached frame.

    Cached frame i owns the cell [i / decode_fps, (i + 1) / decode_fps) and shows the source frame on screen at
    the cell's centre (source frame k is on screen over [k / source_fps, (k + 1) / source_fps)). With equal
    rates cached frame i is source frame i; below the source rate the frame nearest each centre is kept.
    """
    if num_frames <= 0 or source_fps <= 0:
        raise ValueError(f"video reports {num_frames} frames at {source_fps} fps")
    count = max(1, int(np.floor(num_frames / source_fps * decode_fps + 1e-6)))
    times = (np.arange(count) + 0.5) / decode_fps
    return np.minimum(np.floor(times * source_fps + 1e-6).astype(np.int64), num_frames - 1)


def decode_side(size: int) -> int:
    """decord returns corrupt buffers for output widths that are not a multiple of 32, so frames are
    decoded (and scaled by ffmpeg) at the next multiple of 32 and resized to ``size`` afterwards."""
    return max(32, -(-size // 32) * 32)


def within(seconds: float | None, path: Path, doing: str, call, *args):
    """``call(*args)`` in a helper thread; a ``VideoDecodeError`` naming ``path`` if it does not return within
    ``seconds`` (None or 0: no limit). A hung decoder thread cannot be killed: it is left behind as a daemon."""
    if not seconds:
        return call(*args)
    box: dict = {}
    finished = threading.Event()

    def run():
        try:
            box["value"] = call(*args)
        except BaseException as error:  # handed to the caller below
            box["error"] = error
        finally:
            finished.set()

    threading.Thread(target=run, daemon=True, name=f"decode {path.name}").start()
    if not finished.wait(seconds):
        raise VideoDecodeError(f"{path}: the decoder made no progress for {seconds:g} s while {doing} "
                               "(a broken or over-long container; data.decode_timeout_s sets the limit)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _open_reader(path: Path, size: int, timeout_s: float | None):
    import decord

    if not path.is_file():
        raise VideoDecodeError(f"{path}: video file not found")
    try:
        side = decode_side(size)
        return within(timeout_s, path, "opening it", decord.VideoReader, str(path), decord.cpu(0), side, side, 1)
    except VideoDecodeError:
        raise
    except Exception as error:  # decord raises its own DECORDError and RuntimeErrors
        raise VideoDecodeError(f"{path}: cannot open video ({str(error).splitlines()[0][:200]})") from None


DECODERS = ("decord", "pyav")


def resolve_decoder(name: str = "auto") -> str:
    """``data.decoder``: auto = decord where it imports (it has no wheels for some platforms), else PyAV."""
    if name != "auto":
        if name not in DECODERS:
            raise ValueError(f"unknown decoder {name!r}")
        return name
    try:
        import decord  # noqa: F401
    except ImportError:
        _say_pyav_once()
        return "pyav"
    return "decord"


@functools.cache
def _say_pyav_once() -> None:
    logging.getLogger(__name__).warning(
        "data.decoder=auto: decord is not installed (pip install 'tal-search[decord]'), decoding with PyAV")


def cached_frames(end_s: float | None, decode_fps: float) -> int | None:
    """How many cached frames a decode that stops at ``end_s`` seconds keeps (None: the whole file)."""
    return None if end_s is None else max(1, int(np.ceil(end_s * decode_fps - 1e-6)))


def iter_decoded(path: Path, decode_fps: float, size: int, timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S,
                 decoder: str = "auto", end_s: float | None = None):
    """Yield (first index, total, uint8 frames) chunks, decoding the file once from its start to ``end_s``
    seconds (None: its end)."""
    if resolve_decoder(decoder) == "pyav":
        yield from _iter_pyav(path, decode_fps, size, timeout_s, end_s)
        return
    reader = _open_reader(path, size, timeout_s)
    try:
        indices = source_frame_indices(len(reader), reader.get_avg_fps(), decode_fps)[:cached_frames(end_s, decode_fps)]
    except ValueError as error:
        raise VideoDecodeError(f"{path}: {error}") from None
    for begin in range(0, len(indices), DECODE_CHUNK):
        chunk = indices[begin : begin + DECODE_CHUNK]
        try:
            frames = within(timeout_s, path, f"decoding frame {int(chunk[0])}",
                            lambda c=chunk: reader.get_batch(c.tolist()).asnumpy())
        except VideoDecodeError:
            raise
        except Exception as error:
            raise VideoDecodeError(
                f"{path}: decoding failed at frame {int(chunk[0])} ({str(error).splitlines()[0][:200]})"
            ) from None
        yield begin, len(indices), resize_frames(frames, size)


@contextlib.contextmanager
def _named_errors(path: Path, failed: str):
    """Any error of the decoder inside becomes a ``VideoDecodeError`` naming ``path`` (and the decoder's first
    line); our own ``VideoDecodeError`` passes through."""
    try:
        yield
    except VideoDecodeError:
        raise
    except Exception as error:  # av.error.* for broken containers
        raise VideoDecodeError(f"{path}: {failed} ({str(error).splitlines()[0][:200]})") from None


def _open_container(path: Path, timeout_s: float | None):
    import av

    if not path.is_file():
        raise VideoDecodeError(f"{path}: video file not found")
    with _named_errors(path, "cannot open video"):
        return within(timeout_s, path, "opening it", av.open, str(path))


def _pyav_frame_count(path: Path, timeout_s: float | None) -> int:
    """The video stream's frames, counted from its packets (demuxing only: nothing is decoded)."""
    container = _open_container(path, timeout_s)
    try:
        with _named_errors(path, "cannot read its packets"):
            stream = container.streams.video[0]
            return within(timeout_s, path, "counting its frames",
                          lambda: sum(1 for packet in container.demux(stream) if packet.size))
    finally:
        container.close()


def _iter_pyav(path: Path, decode_fps: float, size: int, timeout_s: float | None, end_s: float | None = None):
    """The same frames as decord's path (source frame at each cached cell's centre, scaled to ``decode_side`` by
    ffmpeg, then resized), read with PyAV as a stream: frames are counted from the packets first, then decoded
    in order, keeping only the wanted ones, so memory holds one chunk whatever the video's length. Decoding stops
    at the last frame wanted (``end_s``). Every call into the decoder runs under the watchdog."""
    import itertools

    count = _pyav_frame_count(path, timeout_s)
    container = _open_container(path, timeout_s)
    side = decode_side(size)
    try:
        stream = container.streams.video[0]
        source_fps = float(stream.average_rate or stream.guessed_rate or 0)
        try:
            wanted = source_frame_indices(count, source_fps, decode_fps)[:cached_frames(end_s, decode_fps)]
        except ValueError as error:
            raise VideoDecodeError(f"{path}: {error}") from None
        decoded, position, last, kept, begin = container.decode(stream), -1, None, [], 0
        pending: list = []
        for target in wanted.tolist():
            while position < target:
                if not pending:
                    pending = within(timeout_s, path, f"decoding frame {position + 1}",
                                     lambda: list(itertools.islice(decoded, DECODE_CHUNK)))
                    if not pending:  # fewer frames than packets: the last one stands for the rest
                        break
                last, position = pending.pop(0), position + 1
            if last is None:
                raise VideoDecodeError(f"{path}: no frame could be decoded")
            kept.append(last.to_ndarray(format="rgb24", width=side, height=side))
            if len(kept) == DECODE_CHUNK:
                yield begin, len(wanted), resize_frames(np.stack(kept), size)
                begin, kept = begin + len(kept), []
        if kept:
            yield begin, len(wanted), resize_frames(np.stack(kept), size)
    except VideoDecodeError:
        raise
    except Exception as error:
        raise VideoDecodeError(f"{path}: decoding failed ({str(error).splitlines()[0][:200]})") from None
    finally:
        container.close()


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8, bilinear with antialiasing.

    """
    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    import torch  # here, not at the top: a sweep's driver reads the cache without importing torch

    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    resized = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True,
                                              align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def decode_frames(path: str | Path, decode_fps: float, size: int,
                  timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S, decoder: str = "auto") -> np.ndarray:
    """All frames at ``decode_fps``, resized to size x size, as one uint8 array (no cache)."""
    parts = [frames for _, _, frames in iter_decoded(Path(path), decode_fps, size, timeout_s, decoder)]
    return np.concatenate(parts)


def _write_to_disk(handle, frames: np.ndarray) -> None:
    handle.write(frames.data)
    handle.flush()
    os.fdatasync(handle.fileno())


def cache_key(path: Path, decode_fps: float, size: int, decoder: str = "decord", end_s: float | None = None,
              cache_format: str = "raw") -> str:
    """The entry's name: the file (path, size, modification time), the rate, the frame size, the decoder, the
    time range decoded (``end_s``: clips use the file up to there; None: the whole file) and the format (a jpeg
    entry's name says ``-jpeg-`` and its digest holds the quality; a raw entry's key is what it always was)."""
    if cache_format not in CACHE_FORMATS:
        raise ValueError(f"unknown frame cache format {cache_format!r}")
    stat = path.stat()
    ident = {
        "path": str(path.resolve()),
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "fps": round(float(decode_fps), 6),
        "size": int(size),
        "version": CACHE_VERSION,
        **({"decoder": decoder} if decoder != "decord" else {}),
        **({"end_s": round(float(end_s), 3)} if end_s is not None else {}),
        **({"format": "jpeg", "quality": jpeg_frames.QUALITY, "subsampling": jpeg_frames.SUBSAMPLING}
           if cache_format == "jpeg" else {}),
    }
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
    tag = "-jpeg" if cache_format == "jpeg" else ""
    return f"{path.stem}-{size}px-{decode_fps:g}fps{tag}-{digest}"


def open_frames(path: str | Path, cache_format: str = "raw"):
    """An entry's frames, read as (N, H, W, 3) uint8: the raw entry's memory map, or a jpeg entry's
    ``JpegFrames`` (which decodes only the frames an index asks for)."""
    if cache_format == "jpeg":
        return jpeg_frames.JpegFrames(path)
    return np.load(path, mmap_mode="r")


@contextmanager
def _file_lock(path: Path, timeout_s: float = LOCK_TIMEOUT_S):
    """An exclusive lock on ``path`` (filelock: the kernel drops it when its holder dies, so a lock file left
    behind never blocks), waited for at most ``timeout_s``."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(path, timeout=timeout_s):
            yield
    except Timeout:
        raise VideoDecodeError(f"{path}: another process has held this frame-cache lock for over {timeout_s:g} s "
                               "(building the same entry); is it stuck?") from None


class FrameCache:
    """Decoded frames of videos, memory-mapped from ``cache_dir``."""

    def __init__(self, cache_dir: str | Path | None = None,
                 decode_timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S, decoder: str = "auto",
                 cache_format: str = "raw"):
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.decode_timeout_s = decode_timeout_s
        self.decoder = decoder  # data.decoder; ensure() may name another
        self.cache_format = cache_format  # data.cache_format; ensure() may name another

    def path_for(self, video: Path, decode_fps: float, size: int, decoder: str | None = None,
                 end_s: float | None = None, cache_format: str | None = None) -> Path:
        if not video.is_file():
            raise VideoDecodeError(f"{video}: video file not found")
        key = cache_key(video, decode_fps, size, resolve_decoder(decoder or self.decoder), end_s,
                        cache_format or self.cache_format)
        return self.cache_dir / f"{key}.npy"

    def ensure(self, video: str | Path, decode_fps: float, size: int, decoder: str | None = None,
               end_s: float | None = None, cache_format: str | None = None) -> Path:
        """Decode ``video`` (up to ``end_s`` seconds; None: all of it) into the cache, in ``cache_format`` (None:
        the cache's), unless a complete entry exists; return its path."""
        video = Path(video)
        decoder = resolve_decoder(decoder or self.decoder)
        cache_format = cache_format or self.cache_format
        target = self.path_for(video, decode_fps, size, decoder, end_s, cache_format)
        if target.exists():
            with contextlib.suppress(OSError):  # marks it used (talsearch cache prune --older-than)
                os.utime(target)
            return target
        with _file_lock(target.with_suffix(".lock")):
            if not target.exists():  # another process may have finished it meanwhile
                self._build(video, decode_fps, size, target, decoder, end_s, cache_format)
        return target

    def ensure_many(self, jobs: list[tuple[Path, float, int]], workers: int = 0,
                    on_error=None) -> dict[tuple[Path, float, int], Path]:
        """``ensure`` for many (video, fps, size[, end_s[, cache_format]]) jobs, decoding ``workers`` videos at once (0 = one per CPU;
        the decoder releases the GIL). A ``VideoDecodeError`` goes to ``on_error(job, error)`` when given
        (the job is then left out of the result), else it is raised once the running jobs have finished."""
        workers = workers or os.cpu_count() or 1
        done: dict[tuple[Path, float, int], Path] = {}
        with ThreadPoolExecutor(min(workers, max(1, len(jobs))), thread_name_prefix="cache-build") as pool:
            futures = {pool.submit(self.ensure, *job[:3], None, *job[3:]): job for job in jobs}
            first_error = None
            bar = tqdm(futures.items(), total=len(futures), desc="frame cache", unit="video", file=sys.stderr,
                       disable=None, leave=False)  # a bar on a terminal, silent in logs
            for future, job in bar:
                try:
                    done[job] = future.result()
                except VideoDecodeError as error:
                    if on_error is None:
                        first_error = first_error or error
                    else:
                        on_error(job, error)
        if first_error is not None:
            raise first_error
        return done

    def _build(self, video: Path, decode_fps: float, size: int, target: Path, decoder: str = "decord",
               end_s: float | None = None, cache_format: str = "raw") -> None:
        """Decode into a temporary .npy written sequentially (header, then chunks), then publish it (``atomic_file``).

        A writer thread writes and flushes each chunk to disk (a jpeg entry: encodes it first) while the next one
        decodes, so the final fsync before the rename (the data must be on disk before the name publishes it) has
        almost nothing left.
        """
        with atomic_file(target, "wb") as handle, ThreadPoolExecutor(1, thread_name_prefix="cache-writer") as writer:
            pending, write, jpeg = None, None, None
            for begin, total, frames in iter_decoded(video, decode_fps, size, self.decode_timeout_s, decoder,
                                                     end_s):
                if pending is not None:
                    pending.result()  # chunks land in order; at most one waits in memory
                if begin == 0 and cache_format == "jpeg":
                    jpeg = jpeg_frames.JpegWriter(handle, total)
                    write = jpeg.add
                elif begin == 0:
                    header = {"descr": "|u1", "fortran_order": False, "shape": (total, *frames.shape[1:])}
                    np.lib.format.write_array_header_1_0(handle, header)
                    write = functools.partial(_write_to_disk, handle)
                pending = writer.submit(write, np.ascontiguousarray(frames, dtype=np.uint8))
            if pending is not None:
                pending.result()
            if jpeg is not None:
                jpeg.finish()  # the length and the offsets, once every frame is in

    def load(self, video: str | Path, decode_fps: float, size: int, decoder: str | None = None,
             cache_format: str | None = None):
        """(N, H, W, 3) uint8 frames, decoding first if needed: memory-mapped (raw), or a ``JpegFrames`` that
        decodes the frames an index asks for (jpeg; ``np.asarray`` gives them all)."""
        cache_format = cache_format or self.cache_format
        return open_frames(self.ensure(video, decode_fps, size, decoder, None, cache_format), cache_format)
