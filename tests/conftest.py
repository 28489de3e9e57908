import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="session", autouse=True)
def _frame_cache(tmp_path_factory):
    os.environ["TALSEARCH_CACHE"] = str(tmp_path_factory.mktemp("frame_cache"))
    yield


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small real synthetic data set: 8 videos of 6-8 s, 32 px, 3 views."""
    from tal_core.data.synth import SynthSpec, synthesize

    out = tmp_path_factory.mktemp("tiny_data")
    synthesize(out, SynthSpec(videos=8, seed=3, duration=(7.0, 9.0), size=32))
    return out


TINY_OVERRIDES = {"data.image_size": 32, "data.frames_per_interval": 2, "model.tiny_width": 8,
                  "train.epochs": 1, "train.batch_size": 8}
