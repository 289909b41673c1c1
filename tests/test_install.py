"""A plain (not editable) install serves the page: the wheel carries `web/` as package data.

Built and installed for real (`pip wheel`, then `pip install --target`), then started from
another directory, so nothing can be found through the checkout by accident.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
