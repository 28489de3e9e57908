import os
import time

import numpy as np
import pytest

from tal_core.data.video import FrameCache, VideoDecodeError, decode_frames, open_frames, source_frame_indices


@pytest.fixture()
def video(tiny_data):
    return tiny_data / "videos" / "vid0000" / "front.mp4"


def test_cache_matches_direct_decode_and_is_reused(tmp_path, video):
    cache = FrameCache(tmp_path)
    first = cache.ensure(video, 8, 24)
    inode = first.stat().st_ino
    frames = np.load(first, mmap_mode="r")
    assert np.array_equal(frames, decode_frames(video, 8, 24))
    assert cache.ensure(video, 8, 24) == first and first.stat().st_ino == inode  # a hit (it only marks it used)
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]


def test_changed_size_or_video_is_never_served_stale(tmp_path, video):
    cache = FrameCache(tmp_path)
    a = cache.ensure(video, 8, 24)
    assert cache.ensure(video, 8, 16) != a
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(video.read_bytes())
    before = cache.ensure(copy, 8, 24)
    os.utime(copy, ns=(1, 1))
    assert cache.ensure(copy, 8, 24) != before


def test_corrupt_video_error_names_the_file(tmp_path, video):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        FrameCache(tmp_path / "c").ensure(broken, 8, 24)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    for decoder in ("decord", "pyav"):  # the writer puts the index (moov) last: a cut file has none
        with pytest.raises(VideoDecodeError, match="truncated.mp4"):
            FrameCache(tmp_path / "c", decoder=decoder).load(truncated, 8, 24)
    assert not list((tmp_path / "c").glob(".*.tmp"))  # nothing half-written left behind


def test_stalled_decoder_is_an_error_naming_the_file_not_a_hang(tmp_path, video):
    """The watchdog: a decoder call over data.decode_timeout_s is an unreadable video (here the real decoder
    on a real file against a limit it cannot meet)."""
    started = time.perf_counter()
    with pytest.raises(VideoDecodeError, match=r"front.mp4: the decoder made no progress for 1e-05 s"):
        FrameCache(tmp_path / "c", decode_timeout_s=1e-5).ensure(video, 8, 24)
    assert time.perf_counter() - started < 5
    assert not list((tmp_path / "c").glob("*.npy"))  # neither a cache entry nor a temporary file
    assert len(FrameCache(tmp_path / "c").load(video, 8, 24)) > 0  # within the default limit it decodes


def test_ensure_many_builds_in_parallel_and_reports_bad_videos(tmp_path, tiny_data):
    videos = sorted(tiny_data.glob("videos/*/front.mp4"))[:3]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    jobs = [(v, 8, 24) for v in videos] + [(broken, 8, 24)]
    cache, failed = FrameCache(tmp_path / "c"), []
    built = cache.ensure_many(jobs, workers=2, on_error=lambda job, error: failed.append((job, str(error))))
    assert [job[0] for job, _ in failed] == [broken] and "broken.mp4" in failed[0][1]
    assert sorted(built) == sorted(jobs[:3])
    for (video, fps, size), path in built.items():
        assert np.array_equal(np.load(path), decode_frames(video, fps, size))
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        FrameCache(tmp_path / "d").ensure_many(jobs, workers=2)


def test_missing_video_error(tmp_path):
    with pytest.raises(VideoDecodeError, match="nothere.mp4"):
        FrameCache(tmp_path).ensure(tmp_path / "nothere.mp4", 8, 24)


def test_source_frame_indices_resample():
    # cached frame i shows the source frame on screen at the centre of its cell, (i + 0.5) / decode_fps
    assert source_frame_indices(10, 10.0, 5.0).tolist() == [1, 3, 5, 7, 9]
    assert source_frame_indices(4, 4.0, 8.0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert source_frame_indices(30, 30.0, 30.0).tolist() == list(range(30))


def test_pyav_and_decord_give_the_same_frames(video, tmp_path):
    by_decord = decode_frames(video, 8, 32, decoder="decord")
    by_pyav = decode_frames(video, 8, 32, decoder="pyav")
    assert by_decord.shape == by_pyav.shape
    difference = np.abs(by_decord.astype(np.int16) - by_pyav.astype(np.int16))
    assert difference.mean() < 3.0 and np.percentile(difference, 99) <= 24  # scaler rounding, not other frames
    cache = FrameCache(tmp_path / "c", decoder="pyav")
    assert np.array_equal(cache.load(video, 8, 32), by_pyav)
    assert cache.path_for(video, 8, 32) != FrameCache(tmp_path / "c").path_for(video, 8, 32, "decord")


def test_pyav_reports_a_broken_file_by_name(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        FrameCache(tmp_path / "c", decoder="pyav").ensure(broken, 8, 24)


def test_a_held_cache_lock_times_out_naming_the_lock_file(tmp_path):
    import fcntl

    from tal_core.data.video import _file_lock

    lock = tmp_path / "entry.lock"
    with open(lock, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(VideoDecodeError, match="entry.lock"), _file_lock(lock, timeout_s=0.5):
            pass
    with _file_lock(lock, timeout_s=0.5):  # released: taken at once
        pass


def test_auto_decoder_without_decord_uses_pyav_and_says_so_once(monkeypatch, caplog):
    import sys

    from tal_core.data import video

    monkeypatch.setitem(sys.modules, "decord", None)  # as where decord has no wheel: import fails
    video._say_pyav_once.cache_clear()
    with caplog.at_level("WARNING"):
        assert video.resolve_decoder("auto") == "pyav"
        assert video.resolve_decoder("auto") == "pyav"
    said = [r.getMessage() for r in caplog.records if "decord is not installed" in r.getMessage()]
    assert len(said) == 1 and "tal-search[decord]" in said[0]


class _CountingReader:
    """decord's reader, counting the source frames asked of it."""

    def __init__(self, reader, asked: list[int]):
        self.reader, self.asked = reader, asked

    def __len__(self):
        return len(self.reader)

    def __getattr__(self, name):
        return getattr(self.reader, name)

    def get_batch(self, indices):
        self.asked.extend(indices)
        return self.reader.get_batch(indices)


class _CountingContainer:
    """PyAV's container, counting the frames its decoder hands out."""

    def __init__(self, container, asked: list[int]):
        self.container, self.asked = container, asked

    def __getattr__(self, name):
        return getattr(self.container, name)

    def decode(self, *streams):
        for frame in self.container.decode(*streams):
            self.asked.append(len(self.asked))
            yield frame


def count_decoded(monkeypatch, decoder: str) -> list[int]:
    """The source frames the decoder is made to decode from here on (decord: the indices asked of it; PyAV:
    every frame its decoder yields, in chunks of 4 instead of 64 so that the count is fine-grained)."""
    import tal_core.data.video as video_module

    asked: list[int] = []
    if decoder == "decord":
        opened = video_module._open_reader
        monkeypatch.setattr(video_module, "_open_reader", lambda *a: _CountingReader(opened(*a), asked))
    else:
        opened = video_module._open_container
        monkeypatch.setattr(video_module, "_open_container", lambda *a: _CountingContainer(opened(*a), asked))
        monkeypatch.setattr(video_module, "DECODE_CHUNK", 4)
    return asked


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_a_cut_decodes_only_the_range_its_clips_use(tmp_path, video, decoder, monkeypatch):
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        source_fps, source_frames = float(stream.average_rate), stream.frames
    asked = count_decoded(monkeypatch, decoder)
    cache = FrameCache(tmp_path, decoder=decoder)
    whole = np.load(cache.ensure(video, 8, 24), mmap_mode="r")
    decoded_whole, asked[:] = len(asked), []
    part_path = cache.ensure(video, 8, 24, end_s=2.5)
    part = np.load(part_path, mmap_mode="r")
    assert part_path != cache.path_for(video, 8, 24)  # the range is part of the key
    assert len(part) == 20 < len(whole)  # ceil(2.5 s x 8 fps)
    assert np.array_equal(part, whole[:20])
    # the decoder itself stopped at the range: no source frame past 2.5 s (and a chunk of read-ahead) was decoded
    last_needed = int(np.ceil(2.5 * source_fps))
    assert asked and decoded_whole >= len(whole) and source_frames > last_needed + 4
    assert max(asked) < last_needed + (4 if decoder == "pyav" else 0), (max(asked), last_needed)
    assert len(asked) < decoded_whole


def test_a_clip_data_set_asks_for_the_range_its_clips_use(tmp_path):
    from tal_core.data.annotations import DatasetSpec, Taxonomy, Video

    clips = {f"r_{i}": Video(f"r_{i}", "train", 10.0, None, {"front": "r.mp4"}, offset=10.0 * i, recording="r")
             for i in range(3)}
    whole = Video("w", "val", 30.0, None, {"front": "w.mp4"})
    spec = DatasetSpec(tmp_path, Taxonomy(("a",), (), ("front",)), {**clips, "w": whole})
    assert spec.decode_end(clips["r_0"], "front") == 31.0  # the last clip's end and a second
    assert spec.decode_end(whole, "front") is None


def test_jpeg_entries_round_trip_close_to_raw_in_a_fraction_of_the_bytes(tmp_path, video):
    import pickle

    cache = FrameCache(tmp_path)
    raw_path = cache.ensure(video, 8, 64)
    raw = np.load(raw_path, mmap_mode="r")
    path = cache.ensure(video, 8, 64, cache_format="jpeg")
    assert path != raw_path and "-64px-8fps-jpeg-" in path.name  # the format is part of the key and the name
    assert FrameCache(tmp_path, cache_format="jpeg").path_for(video, 8, 64) == path
    frames = cache.load(video, 8, 64, cache_format="jpeg")
    decoded = np.asarray(frames)
    assert len(frames) == len(raw) and decoded.shape == raw.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - raw).mean() < 3  # grey levels
    assert path.stat().st_size < raw_path.stat().st_size / 4
    assert np.array_equal(frames[np.array([5, 2, 5])], decoded[[5, 2, 5]]) and np.array_equal(frames[3], decoded[3])
    again = pickle.loads(pickle.dumps(frames))  # a DataLoader worker maps the entry itself
    assert np.array_equal(again[[1, 0]], decoded[[1, 0]])
    assert cache.ensure(video, 8, 64, cache_format="jpeg") == path
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]


def test_jpeg_entries_of_a_cut_and_of_ensure_many(tmp_path, video, tiny_data):
    cache = FrameCache(tmp_path, cache_format="jpeg")
    whole = np.asarray(cache.load(video, 8, 24))
    part_path = cache.ensure(video, 8, 24, end_s=2.5)
    part = np.asarray(open_frames(part_path, "jpeg"))
    assert len(part) == 20 and np.array_equal(part, whole[:20])  # the range is decoded, then encoded alike
    jobs = [(v, 8, 24, None, "jpeg") for v in sorted(tiny_data.glob("videos/*/front.mp4"))[:2]]
    built = FrameCache(tmp_path / "many").ensure_many(jobs, workers=2)  # the jobs name their format
    assert all("-jpeg-" in built[job].name for job in jobs)
    with pytest.raises(ValueError, match="unknown frame cache format"):
        cache.ensure(video, 8, 24, cache_format="png")
