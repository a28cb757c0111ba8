"""Debian's headless chromium driven by Selenium through Debian's chromedriver, offline.

The driver path is given explicitly (Selenium must never fetch a driver). Nothing a page asks
for can leave the machine: --host-resolver-rules maps every name but localhost to NOTFOUND,
and every non-loopback URL (IP literals too, which skip the resolver) goes to a proxy address
where nothing listens (127.0.0.1:9), so it fails before a packet leaves: chromium bypasses
proxies for loopback only. The performance log (DevTools Network events) and the browser log
are on, so a test can list every request a page made and every console error.
"""
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .common import (SETUP_FIX, TAG_VARIABLE, Cleanup, ServiceUnavailable, kill_tagged, new_tag,
                     private_dir, remove_tree, require_binaries)

SERVICE = "Chromium"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
DEAD_PROXY = "127.0.0.1:9"  # the discard port: nothing listens there


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in LOOPBACK_HOSTS or host.startswith("127.") or host.endswith(".localhost")


@dataclass
class Browser:
    """A live browser. `driver` is the Selenium webdriver; the helpers read its logs."""
    driver: object
    user_data_dir: Path
    _performance: list = field(default_factory=list)
    _console: list = field(default_factory=list)

    def get(self, url: str):
        self.driver.get(url)

    def _drain_logs(self):
        self._performance.extend(self.driver.get_log("performance"))
        self._console.extend(self.driver.get_log("browser"))

    def network_requests(self) -> list:
        """Every network request since the browser started, in order: dicts with url, method, status
        (None until answered), error (chromium's errorText when it failed, e.g.
        net::ERR_NAME_NOT_RESOLVED, net::ERR_PROXY_CONNECTION_FAILED) and remote_ip."""
        self._drain_logs()
        requests = {}
        for entry in self._performance:
            message = json.loads(entry["message"])["message"]
            method, params = message.get("method"), message.get("params", {})
            request_id = params.get("requestId")
            if method == "Network.requestWillBeSent":
                request = params["request"]
                requests.setdefault(request_id, {"url": request["url"], "method": request["method"],
                                                 "status": None, "error": None, "remote_ip": None})
                if params.get("redirectResponse"):  # same id, next hop of a redirect
                    requests[f"{request_id}@{len(requests)}"] = requests.pop(request_id)
                    requests[request_id] = {"url": request["url"], "method": request["method"],
                                            "status": None, "error": None, "remote_ip": None}
            elif method == "Network.responseReceived" and request_id in requests:
                requests[request_id]["status"] = params["response"]["status"]
                requests[request_id]["remote_ip"] = params["response"].get("remoteIPAddress")
            elif method == "Network.loadingFailed" and request_id in requests:
                requests[request_id]["error"] = params.get("errorText")
        # chrome://, data:, blob: and the like never touch the network.
        return [r for r in requests.values()
                if urlsplit(r["url"]).scheme in ("http", "https", "ws", "wss", "ftp")]

    def outside_requests(self) -> list:
        """Requests to anything but loopback (attempted, whatever their fate)."""
        return [r for r in self.network_requests() if not is_loopback(r["url"])]

    def console_messages(self, level: str = None) -> list:
        """Browser log entries since the start (console.* calls, failed loads, JS errors);
        level e.g. 'SEVERE' keeps only those."""
        self._drain_logs()
        return [e for e in self._console if level is None or e["level"] == level]

    def screenshot(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise RuntimeError(f"screenshot to {path} failed")
        return path


def chromium_arguments(user_data_dir: Path, allow_hosts=()) -> list:
    excluded = ", ".join(f"EXCLUDE {host}" for host in ("localhost", "127.0.0.1", *allow_hosts))
    bypass = ";".join(allow_hosts)
    return [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--no-default-browser-check",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
        "--disable-client-side-phishing-detection", "--metrics-recording-only",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        f"--user-data-dir={user_data_dir}", "--window-size=1280,900",
        f"--host-resolver-rules=MAP * ~NOTFOUND, {excluded}",
        f"--proxy-server=http://{DEAD_PROXY}",
        *([f"--proxy-bypass-list={bypass}"] if bypass else []),
    ]


@contextmanager
def chromium_browser(allow_hosts=(), page_load_timeout: float = 30):
    """Starts chromium + chromedriver with a fresh profile; yields a Browser.
    allow_hosts: extra hosts/addresses (e.g. a namespace's) the page may reach."""
    require_binaries(SERVICE, CHROMIUM, CHROMEDRIVER, fix=SETUP_FIX + " (chromium, chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        raise ServiceUnavailable(SERVICE, f"python3-selenium is missing ({error}); run the tests "
                                 "with Debian's /usr/bin/python3", SETUP_FIX)
    cleanup = Cleanup()
    tag = new_tag()
    root = private_dir("chromium")
    cleanup.add(remove_tree, root)
    cleanup.add(kill_tagged, tag)
    try:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in chromium_arguments(root / "profile", allow_hosts):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        service = Service(executable_path=CHROMEDRIVER, log_path=str(root / "chromedriver.log"),
                          env={**os.environ, TAG_VARIABLE: tag})
        try:
            driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as error:
            raise ServiceUnavailable(SERVICE, f"chromedriver could not start chromium: {error.msg}",
                                     f"see {root}/chromedriver.log; {SETUP_FIX}")
        cleanup.add(driver.quit)
        driver.set_page_load_timeout(page_load_timeout)
        yield Browser(driver, root / "profile")
    finally:
        cleanup.run()
