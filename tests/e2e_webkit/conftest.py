"""The browser scenarios in a second engine: WebKit (Safari's), through Debian's WebKitGTK.

`WebKitWebDriver` (package webkit2gtk-driver) drives WebKitGTK's MiniBrowser over classic
WebDriver, with `selenium` as the client. MiniBrowser needs a display: an `Xvfb` of our
own is started for the test session. MP3 plays through GStreamer (gstreamer1.0-plugins-good,
-ugly and -libav). Every piece that is missing skips these tests with its name.

The server side is the Chromium suite's own (`tests/e2e/conftest.py`: `radiod`, its log and
audit); so is the page driver: `WebKitPlayer` is the suite's `Player` with a WebDriver page
under it (`webdriver_page.py`), so `open`, `wait`, `wait_playing`, `state` and `reached` are
the same code in both engines. What WebDriver cannot give (the page's console, its network
log) is left empty; these scenarios check the server's log instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Console, Player, RadiodServer

# The Chromium suite's fixtures, shared (a redundant alias marks a re-export); Chromium
# itself too, for a station shared across the two engines.
from tests.e2e.conftest import browser as browser
from tests.e2e.conftest import e2e_library as e2e_library
from tests.e2e.conftest import metrics as metrics
from tests.e2e.conftest import open_player as open_player
from tests.e2e.conftest import pytest_runtest_makereport as pytest_runtest_makereport
from tests.e2e.conftest import radiod as radiod
from tests.e2e_webkit.webdriver_page import WebDriverPage

DRIVER = "WebKitWebDriver"
MINIBROWSER = Path("/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser")
XVFB_START_TIMEOUT = 30.0


def _missing() -> str | None:
    """Why WebKit cannot run here, or None."""
    if shutil.which(DRIVER) is None:
        return f"{DRIVER} not installed (apt-get install webkit2gtk-driver)"
    if not MINIBROWSER.exists():
        return f"{MINIBROWSER} not found (the webkit2gtk-driver package ships it)"
    if shutil.which("Xvfb") is None:
        return "Xvfb not installed (apt-get install xvfb): MiniBrowser needs a display"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install selenium)"
    return None


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """An Xvfb display of our own (`:N`), for the whole test session."""
    why = _missing()
    if why:
        pytest.skip(why)
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-screen", "0", "1280x1024x24"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()  # Xvfb writes the display number once it is ready
    if not number:
        xvfb.kill()
        pytest.fail("Xvfb did not start")
    yield f":{number}"
    xvfb.terminate()
    xvfb.wait(10)


class WebKitPlayer(Player):
    """The Chromium suite's `Player`, on a WebKit page (one WebDriver session = one device)."""

    def __init__(self, driver: Any, server: RadiodServer) -> None:
        self.driver = driver
        self.server = server
        self.page = WebDriverPage(driver)
        self.console = Console()  # WebDriver classic cannot read the console
        self.requests = []  # nor the network log
        self.loads = 0


@pytest.fixture
def open_webkit(display: str) -> Iterator[Callable[[RadiodServer], WebKitPlayer]]:
    """Factory: `open_webkit(server)` starts a fresh WebKit (empty storage) on the page."""
    from selenium import webdriver
    from selenium.webdriver.webkitgtk.options import Options
    from selenium.webdriver.webkitgtk.service import Service

    drivers: list[Any] = []

    def open_(server: RadiodServer) -> WebKitPlayer:
        options = Options()
        options.binary_location = str(MINIBROWSER)
        options.add_argument("--automation")  # without it the driver matches no browser
        service = Service(
            executable_path=shutil.which(DRIVER),
            env={**os.environ, "DISPLAY": display},
            log_output=str(server.workdir / "webkitwebdriver.log"),
        )
        driver = webdriver.WebKitGTK(options=options, service=service)
        drivers.append(driver)
        driver.set_window_size(1100, 820)
        return WebKitPlayer(driver, server)

    yield open_
    for driver in drivers:
        driver.quit()
