"""A plain (not editable) install serves the page: the wheel carries `web/` as package data.

Built and installed for real (`pip wheel`, then `pip install --target`; and `pipx install`,
as a listener would), then started from another directory, so nothing can be found through
the checkout by accident.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a source tree holds that a build must not see: caches, a venv, earlier builds.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*cache",
    ".hypothesis",
    "artifacts",
)


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True, timeout=300)


def _started_port(log: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else []:
            event = json.loads(line)
            if event["event"] == "server.started":
                return int(event["port"])
        assert process.poll() is None, "radiod serve exited"
        time.sleep(0.1)
    raise AssertionError("radiod serve did not start")


def test_a_plain_install_serves_the_page_from_another_directory(tmp_path: Path) -> None:
    _pip("wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT))
    (wheel,) = (tmp_path / "dist").glob("radiod-*.whl")
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(site), str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = elsewhere / "radiod.log"
    (elsewhere / "config.toml").write_text(
        f'[server]\nport = 0\n[log]\nfile = "{log}"\n[library]\nrescan_seconds = 0\n'
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import radiod.app; print(radiod.app.WEB_ROOT)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site)  # the installed copy, not the checkout

    process = subprocess.Popen(
        [sys.executable, "-m", "radiod", "serve", "--config", "config.toml"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = _started_port(log, process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200
            assert b'src="/static/app.js"' in page.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/app.js", timeout=10) as js:
            assert js.status == 200 and b"import" in js.read()
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_version_is_the_installed_distributions() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "radiod", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version == f"radiod {importlib.metadata.version('radiod')}\n"
    assert importlib.metadata.version("radiod") == declared


def test_pipx_install_gives_a_working_radiod_serve(tmp_path: Path) -> None:
    """`pipx install .`: a wheel built from the tree, in a venv of its own, dependencies
    from the package index; the `radiod` it puts on PATH serves the page and a stream."""
    pipx = shutil.which("pipx")
    if pipx is None:
        pytest.skip("pipx not installed (apt-get install pipx)")
    source = tmp_path / "source"  # a copy: the build leaves nothing in the checkout
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    subprocess.run([pipx, "install", str(source)], env=env, check=True, timeout=900)
    radiod = tmp_path / "bin" / "radiod"
    version = subprocess.run(
        [radiod, "--version"], env=env, capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"radiod {importlib.metadata.version('radiod')}"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = elsewhere / "radiod.log"
    (elsewhere / "config.toml").write_text(
        f'[server]\nport = 0\n[log]\nfile = "{log}"\n[library]\nrescan_seconds = 0\n'
    )
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # the demo library, made on first start
    process = subprocess.Popen(
        [radiod, "serve"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{_started_port(log, process, timeout=180)}"
        with urllib.request.urlopen(f"{base}/static/share.js", timeout=10) as js:
            assert js.status == 200
        create = urllib.request.Request(f"{base}/create-session", method="POST", data=b"")
        with urllib.request.urlopen(create, timeout=10) as answer:
            session_id = json.loads(answer.read())["sessionId"]
        with urllib.request.urlopen(f"{base}/stream?session={session_id}", timeout=30) as audio:
            assert audio.headers["Content-Type"] == "audio/mpeg"
            assert len(audio.read(32_000)) == 32_000
    finally:
        process.terminate()
        process.wait(timeout=15)
