"""contrib/: the systemd unit verifies and is hardened; the nginx TLS front is valid nginx and,
run for real in front of radiod, serves the page and the stream with https share URLs.

Each test runs the real tool when it is installed (`make system-deps`) and says which one
is missing otherwise.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import create_session, free_ports, read_bytes

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "contrib" / "radiod.service"
NGINX_SITE = ROOT / "contrib" / "nginx-radiod.conf"
# systemd-analyze's exposure score: 0 (locked down) to 10 (nothing restricted); "OK" < 4.
MAX_EXPOSURE = 2.5
PUBLIC_NAME = "radio.example.org"


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (apt-get install {package})")
    return path


def _unit_with_exec(tmp_path: Path) -> Path:
    """The unit, starting the radiod of this test run (verify checks ExecStart exists)."""
    radiod = Path(sys.executable).with_name("radiod")
    if not radiod.exists():
        pytest.skip(f"no radiod script beside {sys.executable} (pip install -e .)")
    unit = tmp_path / "radiod.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/radiod", str(radiod)))
    return unit


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = _require("systemd-analyze", "systemd")
    unit = _unit_with_exec(tmp_path)
    verify = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr
    assert "radiod.service" not in verify.stderr, verify.stderr  # no warning about our unit
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for radiod\.service: ([0-9.]+)", security.stdout)
    assert match, security.stdout + security.stderr
    assert float(match[1]) <= MAX_EXPOSURE, security.stdout


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    openssl = _require("openssl", "openssl")
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", f"/CN={PUBLIC_NAME}", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _nginx_config(tmp_path: Path, upstream: int, http: int, https: int) -> Path:
    """A main nginx.conf around the example site: our cert, our ports, files under tmp."""
    cert, key = _self_signed(tmp_path)
    site = NGINX_SITE.read_text()
    site = site.replace("/etc/ssl/radiod/fullchain.pem", str(cert))
    site = site.replace("/etc/ssl/radiod/privkey.pem", str(key))
    site = site.replace("127.0.0.1:8000", f"127.0.0.1:{upstream}")
    site = re.sub(r"listen \[::\]:\d+[^;]*;\n", "", site)  # loopback IPv4 only in tests
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http};")
    site = site.replace("listen 443 ssl", f"listen 127.0.0.1:{https} ssl")
    (tmp_path / "radiod.conf").write_text(site)
    temp = "".join(
        f"    {kind}_temp_path {tmp_path / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        "events {}\n"
        f"http {{\n    access_log off;\n{temp}    include {tmp_path / 'radiod.conf'};\n}}\n"
    )
    return main


def test_the_nginx_example_is_valid_nginx(tmp_path: Path) -> None:
    nginx = _require("nginx", "nginx")
    config = _nginx_config(tmp_path, 8000, free_ports(), free_ports())
    check = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr


async def test_radiod_behind_the_nginx_example_serves_https_urls_and_an_unbuffered_stream(
    tmp_path: Path, radiod_client
) -> None:
    nginx = _require("nginx", "nginx")
    client = await radiod_client(
        server={"allowed_hosts": [PUBLIC_NAME], "allowed_origins": [f"https://{PUBLIC_NAME}"]}
    )
    https = free_ports()
    config = _nginx_config(tmp_path, client.port, free_ports(), https)
    process = await asyncio.create_subprocess_exec(
        *(nginx, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"),
        stderr=asyncio.subprocess.PIPE,
    )
    tls = ssl.create_default_context(cafile=str(tmp_path / "fullchain.pem"))
    tls.check_hostname = False  # the certificate names radio.example.org, we dial 127.0.0.1
    base, host = f"https://127.0.0.1:{https}", {"Host": PUBLIC_NAME}
    try:
        page = await _when_up(client, f"{base}/", tls, host)
        assert 'src="/static/app.js"' in await page.text()
        session_id = await create_session(client)
        playlist = await client.session.get(
            f"{base}/sessions/{session_id}/listen.m3u", ssl=tls, headers=host
        )
        assert f"https://{PUBLIC_NAME}/stream?session={session_id}" in await playlist.text()
        # Through the proxy, the endless stream flows (burst first) and carries ICY titles.
        stream = await client.session.get(
            f"{base}/stream?session={session_id}",
            ssl=tls,
            headers={**host, "Icy-MetaData": "1"},
        )
        assert stream.status == 200 and stream.headers["icy-metaint"] == "16000"
        data = await read_bytes(stream, 16_000 + 1 + 16 * 16, timeout=20)
        assert b"StreamTitle='" in data[16_000:]
        stream.close()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)


async def _when_up(client, url: str, tls: ssl.SSLContext, headers: dict[str, str]):
    """The first answer from nginx once it listens (it starts in well under a second)."""
    async with asyncio.timeout(20):
        while True:
            try:
                response = await client.session.get(url, ssl=tls, headers=headers)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            assert response.status == 200, await response.text()
            return response
