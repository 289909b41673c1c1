"""The part of Playwright's `Page` the e2e `Player` uses, over a Selenium WebDriver session.

So one `Player` (tests/e2e/conftest.py) drives Chromium through Playwright and WebKit
through WebDriver alike. Expressions are the Player's: a JS expression, or a function
(`arg => …`) called with `arg`, exactly as `page.evaluate` / `wait_for_function` take them.
"""

from __future__ import annotations

import time
from typing import Any

# Around `expression`: a function is called with the argument. WebDriver hands the script
# `arguments`; the result must be JSON-able, as Playwright's `json_value()` is.
_EVALUATE_HEAD = "const value = ("
_EVALUATE_TAIL = "); return typeof value === 'function' ? value(arguments[0]) : value;"


class JsonValue:
    """What `wait_for_function` returns: the truthy value, as `json_value()`."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def json_value(self) -> Any:
        return self._value


class WebDriverPage:
    """`goto`, `reload`, `url`, `evaluate`, `wait_for_function`, `click`, `text_content`,
    `get_attribute`, `inner_text`, `screenshot` over a WebDriver."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    @property
    def url(self) -> str:
        return self.driver.current_url

    def goto(self, url: str) -> None:
        self.driver.get(url)

    def reload(self) -> None:
        self.driver.refresh()

    def evaluate(self, expression: str, arg: Any = None) -> Any:
        return self.driver.execute_script(_EVALUATE_HEAD + expression + _EVALUATE_TAIL, arg)

    def wait_for_function(
        self, expression: str, arg: Any = None, timeout: float = 30_000, polling: int = 100
    ) -> JsonValue:
        """Poll `expression` until truthy (`timeout` in ms, as Playwright takes it)."""
        deadline = time.monotonic() + timeout / 1000
        while not (value := self.evaluate(expression, arg)):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout / 1000}s waiting for {expression}")
            time.sleep(polling / 1000)
        return JsonValue(value)

    def _element(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def click(self, selector: str) -> None:
        self._element(selector).click()

    def text_content(self, selector: str) -> str:
        return self._element(selector).get_property("textContent")

    def inner_text(self, selector: str) -> str:
        return self._element(selector).text

    def get_attribute(self, selector: str, name: str) -> str | None:
        return self._element(selector).get_dom_attribute(name)

    def screenshot(self, path: str) -> None:
        self.driver.save_screenshot(path)
