"""The ensemble's scoring pool: forks only where that is safe, and scores the same either way."""

import json
import subprocess
import sys

from helpers import ROOT

PROBE = """
import json, os, threading
from ensemble import parallel

parallel.MIN_ITEMS, parallel.MIN_PARALLEL_S = 1, 0
os.environ["TALSEARCH_ENSEMBLE_WORKERS"] = "2"
alone = parallel.fork_is_safe()
pids_alone = set(parallel.map_scores(lambda i: os.getpid(), range(8)))
squares_alone = parallel.map_scores(lambda i: i * i, range(8))
stop = threading.Event()
monitor = threading.Thread(target=stop.wait, name="tqdm_monitor")  # tqdm's: idle, holds no lock workers take
monitor.start()
with_monitor = parallel.fork_is_safe()
other = threading.Thread(target=stop.wait, name="a client library's thread")
other.start()
threaded = parallel.fork_is_safe()
pids_threaded = set(parallel.map_scores(lambda i: os.getpid(), range(8)))
squares_threaded = parallel.map_scores(lambda i: i * i, range(8))
stop.set()
other.join()
monitor.join()
print(json.dumps({"alone": alone, "with_monitor": with_monitor, "forked": bool(pids_alone - {os.getpid()}), "threaded": threaded,
                  "in_process": pids_threaded == {os.getpid()}, "same": squares_alone == squares_threaded,
                  "after": parallel.fork_is_safe()}))
"""


def test_the_pool_forks_only_from_a_process_without_other_threads():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found == {"alone": True, "with_monitor": True, "forked": True, "threaded": False, "in_process": True, "same": True,
                     "after": True}


def test_one_worker_scores_in_this_process(monkeypatch):
    import os

    from ensemble import parallel

    monkeypatch.setenv("TALSEARCH_ENSEMBLE_WORKERS", "1")
    assert parallel.workers() == 1
    assert set(parallel.map_scores(lambda i: os.getpid(), range(20))) == {os.getpid()}



def test_the_pool_ends_where_the_parent_only_notes_sigterm():
    """A SIGTERM handler that does not exit (a server's, a test runner's) is not the workers': the pool's exit
    terminates them with SIGTERM (a worker waiting for the queue's lock gets nothing else), so they must die of it."""
    probe = ("import os, signal\nfrom ensemble import parallel\nparallel.MIN_ITEMS, parallel.MIN_PARALLEL_S = 1, 0\n"
             "os.environ['TALSEARCH_ENSEMBLE_WORKERS'] = '2'\n"
             "signal.signal(signal.SIGTERM, lambda *_: None)\n"
             "pids = parallel.map_scores(lambda i: os.getpid(), range(16))\n"
             "default = parallel.map_scores(lambda i: signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, range(16))\n"
             "print(bool(set(pids) - {os.getpid()}), all(default[1:]))\n")  # the first item is scored here
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["True", "True"], done.stdout + done.stderr[-2000:]


def test_work_too_small_to_pay_for_a_fork_stays_in_this_process(monkeypatch):
    """Items of microseconds are scored here even where forking is safe; items the first of which predicts
    enough work go to the pool (the first is scored here, in order)."""
    probe = ("import os, time\nfrom ensemble import parallel\nos.environ['TALSEARCH_ENSEMBLE_WORKERS'] = '2'\n"
             "parallel.MIN_PARALLEL_S = 0.2\n"
             "quick = parallel.map_scores(lambda i: os.getpid(), range(16))\n"
             "slow = parallel.map_scores(lambda i: (time.sleep(0.05), os.getpid(), i)[1:], range(16))\n"
             "print(set(quick) == {os.getpid()}, slow[0][0] == os.getpid(),\n"
             "      {pid for pid, _ in slow[1:]} - {os.getpid()} != set(), [i for _, i in slow] == list(range(16)))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["True"] * 4, done.stdout + done.stderr[-2000:]
