"""Headless Chromium for the console tests and benchmark: Debian's `chromium` driven through its
`chromedriver` by selenium, with the driver's path given so that selenium never tries to fetch a
browser or a driver (nothing is downloaded at run time)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"  # git-ignored


def missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "needs Debian's chromium and chromium-driver (.ci/run installs them)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (the test extra)"
    return None


def chromium(profile: Path, width: int = 1440, height: int = 1800) -> Any:
    """A headless Chromium with a fresh profile that keeps the page's console messages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def problems(driver: Any) -> list[dict[str, Any]]:
    """Console errors and warnings logged by the page since the last call (CSP violations,
    failed loads, uncaught exceptions)."""
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def wait_js(driver: Any, script: str, timeout: float, what: str,
            check: Callable[[Any], bool] = bool) -> Any:
    """Poll `script` (a JS function body that returns a value) until `check` accepts its value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if check(value):
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {value!r}")


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path
