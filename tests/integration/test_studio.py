"""`kennel studio` in a real browser (Debian's Chromium through Selenium, offline) over a real
home: a completed job (debugger and profiler on), a job killed mid-run (Failed), a damaged job
folder, a finished tuning study of external-command trials, a running job, and an endpoint.
Checks the DOM, live updates, the Stop button with its CSRF token, the web-security rules,
no console error and no request leaving 127.0.0.1. Screenshots go to
$KENNEL_BUILD_DIR/test-artifacts/studio/."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import Kennel, build_dir

TOOLS = Path(__file__).resolve().parent / "tune_tools"
FAKE = f"{sys.executable} {TOOLS / 'fake_trainer.py'}"
FAST = ["--arch", "resnet18", "--pretrained", "none", "--freeze", "none", "--input-size", 32,
        "--resize", 36, "--batch-size", 8, "--threads", 1, "--quiet"]
ARTIFACTS = build_dir() / "test-artifacts" / "studio"


def env_for(kennel):
    return dict(os.environ, KENNEL_HOME=str(kennel.home))


def start(kennel, *args):
    return subprocess.Popen([str(kennel.binary), *map(str, args)], env=env_for(kennel),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition, timeout, what):
    """The condition's first truthy value; exceptions (an element gone during a reload) count as not yet."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - selenium's and ours alike: retry until the deadline
            last_error = error
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def read_until(process, pattern, timeout=120):
    """The first match of `pattern` in the process's stdout lines (log lines before it are skipped)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match.group(1)
    process.kill()
    raise AssertionError(f"no line matching {pattern!r}: {''.join(seen)}{process.stderr.read()}")


def step_records(kennel, name):
    path = kennel.home / "jobs" / name / "metrics.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"type":"step"' in line.replace(" ", ""))


@pytest.fixture(scope="module")
def home(kennel_bin, tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    kennel = Kennel(kennel_bin, root / "home")
    data = root / "data"
    kennel.run("data", "synth", "--out", data, "--classes", 3, "--per-class", 16, "--size", "40x40",
               "--seed", 2, check=0)
    kennel.run("train", "--data", data, "--name", "done", *FAST, "--epochs", 2,
               "--debugger", "default", "--profiler", "default", check=0)
    # A job whose process is killed mid-run: the registry row says InProgress, its pid is dead.
    crashed = start(kennel, "train", "--data", data, "--name", "crashed", *FAST, "--epochs", 100)
    wait_until(lambda: step_records(kennel, "crashed") >= 2, 120, "the job to be killed to start")
    crashed.kill()
    crashed.communicate()
    kennel.run("train", "--data", data, "--name", "damaged", *FAST, "--max-steps", 2, check=0)
    damaged = kennel.home / "jobs" / "damaged"
    (damaged / "spec.json").unlink()
    with open(damaged / "metrics.jsonl", "a") as metrics:
        metrics.write("this is not json\n{\"half\": ")
    kennel.run("tune", "--name", "study", "--command", f"{FAKE} --lr {{lr}} --x {{x}}",
               "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)",
               "--param", "lr=1e-4..1:log", "--param", "x=1,2,3", "--strategy", "random",
               "--max-jobs", 8, "--max-parallel-jobs", 2, "--seed", 4, "--quiet", check=0)
    return kennel, data


@pytest.fixture(scope="module")
def studio(home):
    kennel, _ = home
    process = start(kennel, "studio", "--port", 0)
    yield read_until(process, r"open (http://127\.0\.0\.1:\d+)", timeout=30)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def http(url, method="GET", headers=None):
    """(status, headers, body) of a request, errors included."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def open_page(chromium, url, timeout=30):
    from selenium.webdriver.common.by import By
    chromium.get(url)
    wait_until(lambda: chromium.driver.find_element(By.TAG_NAME, "body").get_attribute("data-rendered"),
               timeout, f"{url} to render")
    return chromium.driver


def assert_clean(chromium, allowed=()):
    """No console error (but the `allowed` substrings) and nothing left 127.0.0.1."""
    errors = [m["message"] for m in chromium.console_messages("SEVERE")
              if not any(a in m["message"] for a in allowed)]
    assert errors == []
    assert chromium.outside_requests() == []


def rows(driver, table_id):
    from selenium.webdriver.common.by import By
    return {row.get_attribute("data-name"): row.text
            for row in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")}


def test_jobs_page_lists_every_job_with_its_status(chromium, studio):
    driver = open_page(chromium, f"{studio}/jobs")
    # The shell preloads the page's data: it leaves before the scripts, once (the page uses it).
    sent = [urlsplit(r["url"]).path for r in chromium.network_requests()]
    assert sent.count("/api/jobs") == 1 and sent.index("/api/jobs") < sent.index("/assets/main.js"), sent
    table = rows(driver, "jobs")
    assert {"done", "crashed", "damaged", "study"} <= set(table)
    assert {f"study-{i:03d}" for i in range(1, 9)} <= set(table)
    assert "Completed" in table["done"] and "resnet18" in table["done"]
    assert "Failed" in table["crashed"] and "died" in table["crashed"]
    assert "spec.json" in table["damaged"] and "\u26A0" in table["damaged"]
    assert "tuning" in table["study"] and "trial" in table["study-001"]
    # Filtering and sorting happen in the page.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    Select(driver.find_element(By.ID, "status-filter")).select_by_value("Failed")
    assert set(rows(driver, "jobs")) == {"crashed"}
    Select(driver.find_element(By.ID, "status-filter")).select_by_value("")
    driver.find_element(By.ID, "filter").send_keys("study-00")
    assert set(rows(driver, "jobs")) == {f"study-{i:03d}" for i in range(1, 9)}
    chromium.screenshot(ARTIFACTS / "jobs.png")
    assert_clean(chromium)


def test_job_page_shows_curves_spec_log_debugger_profiler_and_model(chromium, studio):
    from selenium.webdriver.common.by import By
    driver = open_page(chromium, f"{studio}/jobs/done")
    groups = {e.get_attribute("data-group") for e in driver.find_elements(By.CSS_SELECTOR, "#curves .chart")}
    assert {"Loss", "Accuracy", "Learning rate", "Images per second"} <= groups
    assert int(driver.find_element(By.ID, "curves").get_attribute("data-points")) > 4
    assert '"arch": "resnet18"' in driver.find_element(By.CSS_SELECTOR, "#spec pre").text
    assert "epoch=" in driver.find_element(By.ID, "log-tail").text
    assert driver.find_elements(By.CSS_SELECTOR, "#rules tbody tr"), "no debugger rule rows"
    report = driver.find_element(By.LINK_TEXT, "full report").get_attribute("href")
    status, headers, body = http(report)
    assert status == 200 and "sandbox" in headers["Content-Security-Policy"] and b"<svg" in body
    assert "model.safetensors" in driver.find_element(By.ID, "model-files").text
    chromium.screenshot(ARTIFACTS / "job-done.png")
    assert_clean(chromium)


def test_study_page_shows_every_trial_and_the_best(chromium, studio, home):
    from selenium.webdriver.common.by import By
    kennel, _ = home
    best = json.loads(kennel.run("tune", "best", "study", check=0).stdout)["name"]
    driver = open_page(chromium, f"{studio}/studies")
    assert "Completed" in rows(driver, "studies")["study"]
    driver = open_page(chromium, f"{studio}/studies/study")
    trials = rows(driver, "trials")
    assert set(trials) == {f"study-{i:03d}" for i in range(1, 9)}
    assert driver.find_element(By.CSS_SELECTOR, "#trials tr.best").get_attribute("data-name") == best
    assert best in driver.find_element(By.ID, "best").text
    assert "fake_trainer.py" in driver.find_element(By.ID, "retrain").text
    for chart in ("objective-over-time", "importance", "parallel", "param-lr", "param-x"):
        assert driver.find_elements(By.CSS_SELECTOR, f"#{chart} canvas"), chart
    study = json.loads(http(f"{studio}/api/studies/study")[2])
    importance = {p["name"]: p["importance"] for p in study["importance"]["parameters"]}
    assert set(importance) == {"lr", "x"} and all(0 <= v <= 1 for v in importance.values())
    chromium.screenshot(ARTIFACTS / "study.png")
    assert_clean(chromium)


def test_unknown_and_damaged_jobs_never_break_a_page(chromium, studio):
    from selenium.webdriver.common.by import By
    assert http(f"{studio}/jobs/no-such-job")[0] == 404
    assert http(f"{studio}/api/jobs/no-such-job")[0] == 404
    driver = open_page(chromium, f"{studio}/jobs/no-such-job")
    assert "not found" in driver.find_element(By.ID, "error").text
    driver = open_page(chromium, f"{studio}/jobs/damaged")
    problems = driver.find_element(By.ID, "problems").text
    assert "spec.json" in problems and "not JSON" in problems
    assert int(driver.find_element(By.ID, "curves").get_attribute("data-points")) >= 2
    assert_clean(chromium, allowed=["no-such-job"])


def test_a_running_job_updates_live_and_the_stop_button_stops_it(chromium, studio, home):
    from selenium.webdriver.common.by import By
    kennel, data = home
    process = start(kennel, "train", "--data", data, "--name", "running", *FAST, "--epochs", 400)
    try:
        wait_until(lambda: step_records(kennel, "running") >= 3, 120, "the running job's first steps")
        driver = open_page(chromium, f"{studio}/jobs/running")
        assert driver.find_element(By.ID, "live")
        driver.execute_script("window.kennelMarker = 'no reload'")
        points = lambda: int(driver.find_element(By.ID, "curves").get_attribute("data-points"))
        first = points()
        wait_until(lambda: points() > first + 3, 60, "the curve to gain points")
        assert driver.execute_script("return window.kennelMarker") == "no reload"
        chromium.screenshot(ARTIFACTS / "job-running.png")

        # A POST without the page's token, or from another origin, is refused; the job runs on.
        token = driver.find_element(By.CSS_SELECTOR, 'meta[name="kennel-csrf"]').get_attribute("content")
        stop_url = f"{studio}/api/jobs/running/stop"
        assert http(stop_url, "POST", {"Origin": studio})[0] == 403
        assert http(stop_url, "POST", {"Origin": "http://evil.example", "X-Kennel-CSRF": token})[0] == 403
        assert http(stop_url, "POST", {"X-Kennel-CSRF": token})[0] == 403  # no Origin at all
        assert kennel.json("jobs", "describe", "running")["status"] == "InProgress"

        driver.find_element(By.ID, "stop").click()
        wait_until(lambda: "SIGTERM" in driver.find_element(By.ID, "stop-message").text, 10, "the stop answer")
        process.communicate(timeout=120)
        assert kennel.json("jobs", "describe", "running")["status"] == "Stopped"
        # The page notices the end by itself and shows the final state.
        wait_until(lambda: "Stopped" in driver.find_element(By.CSS_SELECTOR, "#summary h1").text, 30,
                   "the page to show Stopped")
        assert_clean(chromium)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_endpoints_are_listed_while_alive(chromium, studio, home):
    from selenium.webdriver.common.by import By
    kennel, _ = home
    server = start(kennel, "serve", "done", "--port", 0, "--no-access-log")
    try:
        url = read_until(server, r"ready on (http://\S+)")
        urllib.request.urlopen(f"{url}/ping", timeout=10).read()
        driver = open_page(chromium, f"{studio}/endpoints")
        table = rows(driver, "endpoints")
        assert list(table) == [url] and "done" in table[url] and "ready" in table[url]
        assert "resnet18" in table[url]
        chromium.screenshot(ARTIFACTS / "endpoints.png")
        server.kill()  # SIGKILL: no chance to unregister
        server.communicate()
        driver = open_page(chromium, f"{studio}/endpoints")
        assert rows(driver, "endpoints") == {}
        assert driver.find_element(By.ID, "empty").is_displayed()
        assert_clean(chromium)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_web_security_rules(studio, home):
    kennel, _ = home
    port = studio.rsplit(":", 1)[1]
    # DNS rebinding: a foreign Host on the right address is refused; so is a foreign Origin.
    assert http(f"{studio}/api/jobs", headers={"Host": f"evil.example:{port}"})[0] == 403
    assert http(f"{studio}/jobs", headers={"Host": f"evil.example:{port}"})[0] == 403
    assert http(f"{studio}/api/jobs", headers={"Origin": "http://evil.example"})[0] == 403
    assert http(f"{studio}/api/jobs", headers={"Host": f"localhost:{port}"})[0] == 200
    # Files stay inside their job's folder: no "..", no symbolic link out of it.
    assert http(f"{studio}/files/jobs/done/log.txt")[0] == 200
    for escape in ("../../kennel.db", "%2e%2e/%2e%2e/kennel.db", "..%2f..%2fkennel.db", "/etc/passwd"):
        status, _, body = http(f"{studio}/files/jobs/done/{escape}")
        assert status in (400, 403, 404) and b"SQLite" not in body, escape
    (kennel.home / "jobs" / "done" / "escape").symlink_to(kennel.home / "kennel.db")
    status, _, body = http(f"{studio}/files/jobs/done/escape")
    assert status == 403 and b"SQLite" not in body
    # Pages are strict; assets are cached by ETag.
    status, headers, _ = http(f"{studio}/jobs")
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
    status, headers, _ = http(f"{studio}/assets/echarts.min.js")
    assert status == 200 and headers["ETag"]
    assert http(f"{studio}/assets/echarts.min.js", headers={"If-None-Match": headers["ETag"]})[0] == 304
    # Bad parameters are 400s with a reason, never a crash.
    status, _, body = http(f"{studio}/api/jobs/done/metrics?since=abc")
    assert status == 400 and b"since" in body
    assert http(f"{studio}/api/jobs/done/tensors?match=(")[0] == 400
    assert http(f"{studio}/api/jobs")[0] == 200


def test_the_dashboard_never_writes_the_registry(studio, home):
    """The registry is opened read-only: reading through Studio never changes kennel.db."""
    kennel, _ = home
    db = kennel.home / "kennel.db"
    before = (db.stat().st_mtime_ns, db.stat().st_size)
    wal = kennel.home / "kennel.db-wal"
    wal_before = wal.stat().st_size if wal.exists() else None
    for path in ("/api/jobs", "/api/jobs/crashed", "/api/studies", "/api/studies/study"):
        assert http(f"{studio}{path}")[0] == 200
    assert (db.stat().st_mtime_ns, db.stat().st_size) == before
    assert (wal.stat().st_size if wal.exists() else None) == wal_before


def test_studio_reads_a_postgresql_store_read_only(kennel_bin, tmp_path, postgres):
    """--store postgresql://...: the jobs and the study come from the shared store, through a
    read-only session that changes none of its rows."""
    kennel = Kennel(kennel_bin, tmp_path / "home")
    kennel.run("--store", postgres.url, "tune", "--name", "shared", "--command", f"{FAKE} --lr {{lr}}",
               "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)", "--param", "lr=1e-4..1:log",
               "--strategy", "random", "--max-jobs", 3, "--max-parallel-jobs", 3, "--quiet", check=0)

    def snapshot():
        return postgres.psql("SELECT md5(string_agg(j::text, ',' ORDER BY j.name)) FROM kennel_jobs j; "
                             "SELECT md5(string_agg(t::text, ',' ORDER BY t.idx)) FROM kennel_trials t; "
                             "SELECT md5(string_agg(s::text, ',')) FROM kennel_studies s")

    before = snapshot()
    process = start(kennel, "--store", postgres.url, "studio", "--port", 0)
    try:
        url = read_until(process, r"open (http://127\.0\.0\.1:\d+)", timeout=30)
        status, _, body = http(f"{url}/api/jobs")
        assert status == 200, body
        listed = json.loads(body)
        assert "read-only" in listed["source"] and "postgresql://" in listed["source"]
        assert {job["name"] for job in listed["jobs"]} >= {"shared"}
        status, _, body = http(f"{url}/api/studies/shared")
        assert status == 200, body
        study = json.loads(body)
        assert len(study["trials"]) == 3 and study["best"]["name"].startswith("shared-")
        assert http(f"{url}/api/jobs/nope")[0] == 404
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert snapshot() == before
