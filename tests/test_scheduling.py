"""The test scheduler (tests/conftest.py): every test that starts Ray is found from its module's source, so the Ray
units hold all of them and nothing else starts a cluster beside them."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import RAY_FIXTURES, ray_tests

from helpers import ROOT

# A plugin for a collection-only pytest run: every collected test's id, file, name and whether it starts Ray
# (marked ray, or asking for a fixture that starts Ray), written to OUT.
PROBE = """
import json

def pytest_collection_finish(session):
    rows = [[item.nodeid, str(item.fspath), item.originalname,
             bool(item.get_closest_marker("ray") or set(FIXTURES) & set(item.fixturenames))]
            for item in session.items]
    with open(OUT, "w") as f:
        json.dump(rows, f)
"""


def _collected_items(request, tmp_path) -> list:
    """[nodeid, file, name, starts Ray] of every test in tests/: this session's own collection where it holds every
    test module and none was deselected (``make test``: each xdist process collects them all), else a
    collection-only pytest run."""
    modules = {str(path) for path in (ROOT / "tests").glob("test_*.py")}
    items = request.session.items
    deselecting = request.config.getoption("markexpr") or request.config.getoption("keyword")
    if not deselecting and modules <= {str(item.fspath) for item in items}:
        return [[item.nodeid, str(item.fspath), item.originalname,
                 bool(item.get_closest_marker("ray") or set(RAY_FIXTURES) & set(item.fixturenames))]
                for item in items]
    out = tmp_path / "items.json"
    probe = PROBE.replace("FIXTURES", repr(sorted(RAY_FIXTURES))).replace("OUT", repr(str(out)))
    (tmp_path / "scheduling_probe.py").write_text(probe)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "scheduling_probe",
                           "-p", "no:cacheprovider", "tests"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


def test_every_test_marked_ray_or_using_a_ray_fixture_is_scheduled_as_a_ray_test(request, tmp_path):
    items = _collected_items(request, tmp_path)
    starts_ray = {nodeid for nodeid, _, _, ray in items if ray}
    assert len(starts_ray) > 20, starts_ray
    scheduled = set()
    for nodeid, path, name, _ in items:
        names, _ = ray_tests(Path(path))
        if names is None or name in names:
            scheduled.add(nodeid)
    assert starts_ray == scheduled, {"missed": sorted(starts_ray - scheduled),
                                     "start no Ray": sorted(scheduled - starts_ray)}


def test_a_module_wide_mark_and_a_fixture_chain_are_found(tmp_path):
    module = tmp_path / "test_example.py"
    module.write_text("import pytest\n\n@pytest.fixture\ndef sweep_result(tiny_sweep):\n    return tiny_sweep\n\n"
                      "def test_reads(sweep_result):\n    pass\n\n@pytest.mark.ray\ndef test_marked():\n    pass\n\n"
                      "def test_plain(tmp_path):\n    pass\n")
    assert ray_tests(module) == ({"test_reads", "test_marked"}, True)
    module.write_text("import pytest\n\npytestmark = [pytest.mark.slow, pytest.mark.ray]\n\ndef test_a():\n    pass\n")
    assert ray_tests(module) == (None, False)
