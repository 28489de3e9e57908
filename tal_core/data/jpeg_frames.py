"""JPEG frame-cache entries (``data.cache_format: jpeg``): every cached frame JPEG-encoded, in one file.

An entry is a 1-D uint8 ``.npy`` file, so that ``np.load(path, mmap_mode="r")`` maps it, laid out as ``MAGIC``
(8 bytes), the frame count N (int64), N + 1 int64 offsets (frame i is bytes ``offsets[i]:offsets[i + 1]`` of
what follows), then the frames' JPEG bytes. The builder streams it (``JpegWriter``: header and room for the
offsets first, each decoded chunk encoded and appended, then the header's length and the offsets filled in),
through the same atomic writer as raw entries. A reader (``JpegFrames``) maps the file once and decodes only the
frames asked for; it pickles without its map, so each DataLoader worker maps the file once for itself.
"""

from __future__ import annotations

import io
import os

import numpy as np

MAGIC = b"TALJPEG1"
QUALITY = 90  # part of the cache key (with SUBSAMPLING): another quality is another entry
SUBSAMPLING = 0  # Pillow's code for 4:4:4 (no chroma subsampling)
_HEADER = {"descr": "|u1", "fortran_order": False}


def _npy_header(length: int) -> bytes:
    """The .npy header of a 1-D uint8 array of ``length`` bytes; numpy pads it to the same size whatever the
    length (room for the shape to grow), so it can be rewritten in place once the length is known."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {**_HEADER, "shape": (length,)})
    return buffer.getvalue()


def encode(frames: np.ndarray, quality: int = QUALITY) -> list[bytes]:
    """(N, H, W, 3) uint8 -> N JPEG byte strings (Pillow's libjpeg-turbo; torchvision's encoder is about 30x
    slower here), without chroma subsampling (4:4:4: at 24-64 px 4:2:0 blurs colour edges to a mean error of
    2-6 grey levels)."""
    from PIL import Image

    out = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(frame)).save(buffer, "JPEG", quality=quality, subsampling=SUBSAMPLING)
        out.append(buffer.getvalue())
    return out


def decode(blobs: list) -> np.ndarray:
    """JPEG byte strings or uint8 arrays -> (N, H, W, 3) uint8 (Pillow; torchvision's decoder, a little faster,
    is deprecated since torchvision 0.29)."""
    from PIL import Image

    if not blobs:
        raise ValueError("no frame to decode")
    frames = None
    for i, blob in enumerate(blobs):
        with Image.open(io.BytesIO(blob)) as image:
            image = image if image.mode == "RGB" else image.convert("RGB")
            if frames is None:
                frames = np.empty((len(blobs), image.height, image.width, 3), dtype=np.uint8)
            frames[i] = np.asarray(image)
    return frames


class JpegWriter:
    """Writes one JPEG entry of ``total`` frames into the open binary ``handle`` (at its start)."""

    def __init__(self, handle, total: int, quality: int = QUALITY):
        self.handle, self.total, self.quality = handle, total, quality
        self.header = _npy_header(0)
        self.offsets = [0]
        handle.write(self.header + MAGIC + np.int64(total).tobytes() + bytes(8 * (total + 1)))

    def add(self, frames: np.ndarray) -> None:
        """Encodes and appends a chunk of frames, and flushes it to disk (the final fsync then has little left)."""
        for blob in encode(frames, self.quality):
            self.handle.write(blob)
            self.offsets.append(self.offsets[-1] + len(blob))
        self.handle.flush()
        os.fdatasync(self.handle.fileno())

    def finish(self) -> None:
        """Fills in the header's length and the offsets; every frame must have been added."""
        if len(self.offsets) != self.total + 1:
            raise RuntimeError(f"a JPEG cache entry got {len(self.offsets) - 1} of its {self.total} frames")
        length = len(MAGIC) + 8 * (self.total + 2) + self.offsets[-1]
        header = _npy_header(length)
        assert len(header) == len(self.header), "the .npy header changed size"
        self.handle.seek(0)
        self.handle.write(header)
        self.handle.seek(len(header) + len(MAGIC) + 8)
        self.handle.write(np.asarray(self.offsets, dtype="<i8").tobytes())
        self.handle.seek(0, os.SEEK_END)


class JpegFrames:
    """The frames of a JPEG entry, read like the raw entry's (N, H, W, 3) uint8 memory map: ``len()`` and
    indexing with an int, a slice or an index array decode only the frames asked for."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._data: np.ndarray | None = None
        self._offsets: np.ndarray | None = None

    def _open(self) -> None:
        blob = np.load(self.path, mmap_mode="r")
        if bytes(blob[: len(MAGIC)]) != MAGIC:
            raise ValueError(f"{self.path}: not a JPEG frame-cache entry")
        count = int(np.frombuffer(blob[len(MAGIC): len(MAGIC) + 8], dtype="<i8")[0])
        start = len(MAGIC) + 8
        self._offsets = np.frombuffer(bytes(blob[start: start + 8 * (count + 1)]), dtype="<i8")
        self._data = blob[start + 8 * (count + 1):]

    @property
    def offsets(self) -> np.ndarray:
        if self._offsets is None:
            self._open()
        return self._offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def nbytes_per_frame(self) -> float:
        return float(self.offsets[-1]) / max(1, len(self))

    def __getitem__(self, index) -> np.ndarray:
        count = len(self)
        if isinstance(index, slice):
            positions = np.arange(count)[index]
        else:
            positions = np.asarray(index, dtype=np.int64)
            if positions.ndim == 0:
                return self[positions[None]][0]
            if positions.size and not (-count <= positions.min() and positions.max() < count):
                raise IndexError(f"frame index out of range for {count} frames")
            positions = positions % max(count, 1)
        offsets = self.offsets
        return decode([self._data[offsets[p]: offsets[p + 1]].tobytes() for p in positions.tolist()])

    def __array__(self, dtype=None, copy=None):
        frames = self[:]
        return frames if dtype is None else frames.astype(dtype)

    def __getstate__(self):  # the map is reopened where it is unpickled (a DataLoader worker)
        return {"path": self.path, "_data": None, "_offsets": None}
