import os
import re
import subprocess
import sys

import pytest

from search import private_network

# What an unprivileged user namespace answers when it may not have a mount namespace of its own (unshare), or
# may not bind-mount over /etc/hosts in it (mount): the only failures the hosts-file test skips on.
NO_MOUNT_IN_NAMESPACE = re.compile(
    r"^(unshare: unshare failed: Operation not permitted"
    r"|mount: (/etc/hosts: )?(permission denied|.*Operation not permitted|must be superuser to use mount"
    r"|only root can (use|do that)).*)$", re.M | re.I)


def skip_outside_ci(reason: str) -> None:
    """Skip saying why; under CI (CI=true) fail instead: CI's machines must run the private-network checks."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.mark.parametrize(("uri", "remote"), [
    ("sqlite:///tmp/mlflow.db", False), ("file:///tmp/mlruns", False), ("/tmp/mlruns", False), ("", False),
    ("http://127.0.0.1:5000", True), ("https://mlflow.example.org", True), ("databricks://profile", True)])
def test_only_a_tracking_server_needs_the_network(uri, remote):
    assert private_network.needs_network(uri) is remote


def test_marker_says_whether_inside(monkeypatch):
    monkeypatch.delenv(private_network.MARKER, raising=False)
    assert not private_network.inside()
    monkeypatch.setenv(private_network.MARKER, "1")
    assert private_network.inside()


def test_namespace_has_only_loopback_and_it_is_up():
    prefix = private_network.unshare_prefix()
    if prefix is None:
        skip_outside_ci("network namespaces are unavailable on this machine")
    probe = ("import socket\nfrom search.private_network import bring_loopback_up\nbring_loopback_up()\n"
             "server = socket.create_server(('127.0.0.1', 0))\n"
             "socket.create_connection(server.getsockname(), timeout=5).close()\n"
             "print(sorted(line.split(':')[0].strip() for line in open('/proc/net/dev').readlines()[2:]))\n")
    done = subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=os.getcwd())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['lo']"


@pytest.mark.ray
@pytest.mark.slow
def test_ray_starts_in_the_namespace_even_where_the_host_name_resolves_elsewhere(tmp_path, own_ray_temp_dir):
    """In a container /etc/hosts maps the host name to its outside address, which the namespace lacks: Ray
    must still start there and run a task (it takes 127.0.0.1 as the node address)."""
    prefix = private_network.unshare_prefix()
    if prefix is None:
        skip_outside_ci("network namespaces are unavailable on this machine")
    import socket

    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n10.251.0.7 {socket.gethostname()}\n")
    probe = ("import socket, ray\nfrom search.private_network import bring_loopback_up\nbring_loopback_up()\n"
             "assert socket.gethostbyname(socket.gethostname()) == '10.251.0.7'\n"
             "ray.init(num_cpus=1, include_dashboard=False)\n"
             "print(ray.get(ray.remote(lambda: 'ran').remote(), timeout=120))\nray.shutdown()\n")
    script = f"mount --bind {hosts} /etc/hosts && exec {sys.executable} -c \"$0\""
    done = subprocess.run([*prefix[:-1], "--mount", "--net", "sh", "-c", script, probe], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **private_network.NAMESPACE_ENV})
    refused = NO_MOUNT_IN_NAMESPACE.search(done.stderr)
    if done.returncode != 0 and refused and "Traceback" not in done.stderr:  # Python never ran: only the mount failed
        skip_outside_ci(f"an unprivileged namespace may not bind-mount a hosts file here: {refused.group(0)}")
    assert done.stdout.strip().splitlines()[-1] == "ran", done.stderr[-3000:]
