"""`radiod proxy-config`: the nginx config it prints is one Debian's nginx accepts, with a
route for every node, and a bad [cluster] is one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from radiod.cluster.supervisor import ClusterError, find_nginx


def _proxy_config(tmp_path: Path, nodes: list[str]) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "proxy.toml"
    listed = ", ".join(f'"{n}"' for n in nodes)
    config.write_text(f"[cluster]\nproxy_port = 8080\nnodes = [{listed}]\n")
    argv = [sys.executable, "-m", "radiod", "proxy-config", "--config", str(config)]
    return subprocess.run(
        [*argv, "--runtime", str(tmp_path), "--listen", "127.0.0.1:8080"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_generated_config_passes_nginx_t_and_maps_every_node(tmp_path: Path) -> None:
    try:
        nginx = find_nginx()
    except ClusterError as exc:
        pytest.skip(f"{exc} (`make test` installs it)")
    nodes = ["radio-a=10.0.0.11:8000", "radio-b=10.0.0.12:8000", "radio-c=[fd00::13]:8000"]
    result = _proxy_config(tmp_path, nodes)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for name, address in (("radio-a", "10.0.0.11:8000"), ("radio-c", "[fd00::13]:8000")):
        assert f"{name} radiod_node_{name};" in text
        assert f"server {address} max_fails=1" in text
    conf = tmp_path / "nginx.conf"
    # The error log path needs /var/log/nginx; a test checks the config, not the machine.
    conf.write_text(text.replace("/var/log/nginx/radiod-error.log", str(tmp_path / "e.log")))
    check = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr


def test_repeated_node_names_are_one_line_naming_the_key(tmp_path: Path) -> None:
    result = _proxy_config(tmp_path, ["a=10.0.0.1:8000", "a=10.0.0.2:8000"])
    assert result.returncode == 2
    assert result.stderr.startswith("radiod: error: cluster.nodes = ")
    assert "node names repeat" in result.stderr and "Traceback" not in result.stderr
