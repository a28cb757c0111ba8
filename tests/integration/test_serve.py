"""`kennel serve`, `kennel predict` and `kennel transform`, black-box.

One tiny ResNet-18 (32 px, 3 classes, one epoch) is trained once for the
module; servers are real `kennel serve` processes on free ports, spoken to
with the standard library's http.client. Every server started here is
stopped (SIGTERM, then SIGKILL after a timeout) before its fixture or test
returns, and every request has a timeout.
"""
import base64
import gzip
import http.client
import http.server
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

READY = re.compile(r"ready on (https?)://127\.0\.0\.1:(\d+)")
REQUEST_TIMEOUT = 30  # seconds, for every HTTP request


# ---- helpers --------------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"HTTP {self.status} {self.body[:300]!r}"


def request(port, method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT, **request_args):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {}, **request_args)
        response = connection.getresponse()
        data = response.read()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


def invoke(port, body, content_type, path="/invocations", headers=None, timeout=REQUEST_TIMEOUT):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    return request(port, "POST", path, body, {"Content-Type": content_type, **(headers or {})}, timeout=timeout)


def assert_json_error(response, status, *words):
    """A JSON {"error", "detail"} body with `status`, whose detail names every word."""
    assert response.status == status, response
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] and body["detail"], body
    for word in words:
        assert word.lower() in body["detail"].lower(), (word, body)
    return body


def assert_alive(port):
    response = request(port, "GET", "/ping", timeout=10)
    assert response.status == 200, response
    assert response.json() == {"status": "ok"}


class Server:
    """A `kennel serve` process; stdout and stderr go to files (no pipe can fill up)."""

    def __init__(self, binary, home, model, workdir, *args, port=0, ready_timeout=90, wait_ready=True, env=None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / "serve.stdout"
        self.stderr_path = workdir / "serve.stderr"
        env = dict(os.environ, KENNEL_HOME=str(home), **(env or {}))
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [str(binary), "serve", str(model), "--port", str(port), *map(str, args)],
                env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.pid = self.process.pid
        if not wait_ready:
            return
        deadline = time.time() + ready_timeout
        while True:
            match = READY.search(self.stdout())
            if match:
                self.scheme, self.port = match.group(1), int(match.group(2))
                break
            if self.process.poll() is not None or time.time() > deadline:
                self.stop()
                raise AssertionError(f"kennel serve did not get ready (exit {self.process.returncode})\n"
                                     f"stdout:\n{self.stdout()}\nstderr:\n{self.stderr()[-3000:]}")
            time.sleep(0.05)
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"

    def stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def rss_kb(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@contextmanager
def serving(setup, *args, name="server"):
    server = Server(setup.kennel.binary, setup.kennel.home, "m", setup.root / name, *args)
    try:
        yield server
    finally:
        server.stop()


def metric_requests(port):
    """{(route, status): count} from GET /metrics."""
    text = request(port, "GET", "/metrics").body.decode()
    counts = {}
    for route, status, count in re.findall(
            r'^kennel_requests_total\{route="([^"]*)",status="(\d+)"\} (\d+)$', text, re.M):
        counts[(route, int(status))] = int(count)
    return counts


def png_claiming(width, height):
    """A well-formed PNG whose IHDR claims width x height (CRCs right, pixels absent)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# ---- fixtures -------------------------------------------------------------------------------

class Setup:
    def __init__(self, kennel, root, data):
        self.kennel = kennel
        self.root = root
        self.data = data
        self.classes = sorted(p.name for p in (data / "train").iterdir())
        test_images = sorted((data / "test").rglob("*.jpg"))
        self.image_a = test_images[0]
        self.image_b = test_images[-1]  # another class
        self.png = root / "image_b.png"
        Image.open(self.image_b).convert("RGB").save(self.png)


@pytest.fixture(scope="module")
def setup(kennel_bin, tmp_path_factory):
    """A 3-class synthetic dataset and a model `m` trained on it for one epoch."""
    from conftest import Kennel
    root = tmp_path_factory.mktemp("serve")
    data = root / "data"
    kennel = Kennel(kennel_bin, root / "home")
    kennel.run("data", "synth", "--out", data, "--classes", 3, "--per-class", 12, "--size", "40x40",
               "--seed", 7, check=0)
    kennel.run("train", "--data", data, "--name", "m", "--arch", "resnet18", "--pretrained", "none",
               "--freeze", "none", "--input-size", 32, "--epochs", 1, "--batch-size", 8, "--quiet", check=0)
    return Setup(kennel, root, data)


# Every upstream a test fetches from listens on 127.0.0.1, which a server
# refuses by default (not a public address); URL-fetching servers open it.
ALLOW_LOOPBACK = ("--allow-network", "127.0.0.1/32")


@pytest.fixture(scope="module")
def server(setup):
    with serving(setup, "--allow-file-root", setup.data, *ALLOW_LOOPBACK, name="main") as server:
        yield server


def file_url(path):
    return "file://" + str(Path(path).resolve())


# ---- 1. the plain routes --------------------------------------------------------------------

def test_ping_models_and_metrics_count_requests(setup, server):
    port = server.port
    assert_alive(port)
    model = request(port, "GET", "/models").json()
    assert model["arch"] == "resnet18"
    assert model["classes"] == setup.classes and model["num_classes"] == 3
    assert model["input_size"] == 32
    assert model["source_job"] == "m"

    before = metric_requests(port)
    for _ in range(3):
        assert request(port, "GET", "/ping").status == 200
    assert request(port, "GET", "/models").status == 200
    assert invoke(port, setup.image_a.read_bytes(), "image/jpeg").status == 200
    assert invoke(port, b"hello", "text/plain").status == 415
    assert request(port, "GET", "/no/such/route").status == 404
    expected = {("/ping", 200): 3, ("/models", 200): 1, ("/invocations", 200): 1,
                ("/invocations", 415): 1, ("other", 404): 1}
    # The access-log hook that counts a request may run just after the response is sent.
    deadline = time.time() + 3
    while True:
        after = metric_requests(port)
        delta = {key: after.get(key, 0) - before.get(key, 0) for key in expected}
        if delta == expected or time.time() > deadline:
            break
        time.sleep(0.05)
    assert delta == expected, (before, after)

    response = request(port, "GET", "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.body.decode()
    assert "# TYPE kennel_requests_total counter" in text
    assert "# TYPE kennel_batch_size histogram" in text
    buckets = re.findall(r'^kennel_batch_size_bucket\{le="([^"]+)"\} (\d+)$', text, re.M)
    assert [le for le, _ in buckets][:2] == ["1", "2"] and buckets[-1][0] == "+Inf", buckets
    counts = [int(c) for _, c in buckets]
    assert counts == sorted(counts), "histogram buckets must be cumulative"
    total = int(re.search(r"^kennel_batch_size_count (\d+)$", text, re.M).group(1))
    assert total == counts[-1] >= 1
    for name in ("kennel_request_seconds_count", "kennel_images_total", "kennel_queue_depth",
                 "kennel_model_load_seconds", "kennel_batch_seconds_count"):
        assert re.search(rf"^{name} [0-9.e+-]+$", text, re.M), name
    # Every sample line parses as `name{labels} value`.
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? ([0-9.e+-]+|\+Inf|NaN)', line), line


# ---- 2. every accepted input kind -----------------------------------------------------------

def logits_rows(response, count):
    assert response.status == 200, response
    rows = response.json()
    assert isinstance(rows, list) and len(rows) == count, rows
    for row in rows:
        assert len(row) == 3 and all(isinstance(v, float) for v in row), row
    return np.array(rows, dtype=np.float64)


def test_every_accepted_input_kind(setup, server):
    port = server.port
    a_bytes, b_bytes = setup.image_a.read_bytes(), setup.image_b.read_bytes()
    a_url, b_url = file_url(setup.image_a), file_url(setup.image_b)
    b64 = base64.b64encode(a_bytes).decode()

    a = logits_rows(invoke(port, a_bytes, "image/jpeg"), 1)[0]
    b = logits_rows(invoke(port, b_bytes, "image/jpeg"), 1)[0]
    same_as_a = {
        "application/x-image": invoke(port, a_bytes, "application/x-image"),
        "image/jpeg; charset ignored": invoke(port, a_bytes, "image/jpeg; charset=binary"),
        "url": invoke(port, {"url": a_url}, "application/json"),
        "image base64": invoke(port, {"image": b64}, "application/json"),
        "image data: URL": invoke(port, {"image": "data:image/jpeg;base64," + b64}, "application/json"),
    }
    for kind, response in same_as_a.items():
        np.testing.assert_allclose(logits_rows(response, 1)[0], a, atol=1e-5, err_msg=kind)

    two = logits_rows(invoke(port, {"urls": [a_url, b_url]}, "application/json"), 2)
    np.testing.assert_allclose(two, [a, b], atol=1e-5)
    instances = {"instances": [{"url": a_url}, {"image": base64.b64encode(b_bytes).decode()}, a_url]}
    three = logits_rows(invoke(port, instances, "application/json"), 3)
    np.testing.assert_allclose(three, [a, b, a], atol=1e-5)

    png = logits_rows(invoke(port, setup.png.read_bytes(), "image/png"), 1)[0]
    assert np.all(np.isfinite(png))

    # top_k from the query or the SageMaker header: 2 entries per row, best first, argmax first.
    logits = np.array([a, b])
    for response in (invoke(port, {"urls": [a_url, b_url]}, "application/json", path="/invocations?top_k=2"),
                     invoke(port, {"urls": [a_url, b_url]}, "application/json",
                            headers={"X-Amzn-SageMaker-Custom-Attributes": "top_k=2"})):
        assert response.status == 200, response
        rows = response.json()
        assert len(rows) == 2
        for row, row_logits in zip(rows, logits):
            assert len(row) == 2
            assert all(set(entry) == {"label", "index", "probability"} for entry in row), row
            assert row[0]["probability"] >= row[1]["probability"]
            assert all(setup.classes[entry["index"]] == entry["label"] for entry in row)
            softmax = np.exp(row_logits - row_logits.max()) / np.exp(row_logits - row_logits.max()).sum()
            assert row[0]["probability"] == pytest.approx(softmax.max(), abs=1e-5)
        assert [row[0]["index"] for row in rows] == list(np.argmax(logits, 1))


# ---- 3. the same numbers from kennel predict ------------------------------------------------

def test_logits_match_kennel_predict_local_and_via_endpoint(setup, server):
    images = [setup.image_a, setup.image_b, setup.png]
    served = [logits_rows(invoke(server.port, p.read_bytes(), "image/png" if p.suffix == ".png" else "image/jpeg"),
                          1)[0] for p in images]

    image_args = [arg for p in images for arg in ("--image", p)]
    local = [json.loads(line) for line in setup.kennel.run(
        "predict", "--model", "m", *image_args, "--json", check=0).stdout.splitlines()]
    assert [line["input"] for line in local] == [str(p) for p in images]
    for line, row in zip(local, served):
        np.testing.assert_allclose(line["logits"], row, atol=1e-5, err_msg=line["input"])
        assert line["top_k"][0]["index"] == int(np.argmax(row))

    remote = [json.loads(line) for line in setup.kennel.run(
        "predict", "--endpoint", server.url, *image_args, "--url", file_url(setup.image_a), "--json",
        check=0).stdout.splitlines()]
    # URLs are answered first, then images.
    assert remote[0]["input"] == file_url(setup.image_a)
    np.testing.assert_allclose(remote[0]["logits"], served[0], atol=1e-5)
    for line, row in zip(remote[1:], served):
        np.testing.assert_allclose(line["logits"], row, atol=1e-5, err_msg=line["input"])

    # A failing input via the endpoint is an error line and exit code 1, not a crash.
    failed = setup.kennel.run("predict", "--endpoint", server.url, "--url", "file:///etc/passwd", "--json")
    assert failed.returncode == 1, failed
    line = json.loads(failed.stdout)
    assert "file root" in line["error"], line


# ---- 4. bad inputs --------------------------------------------------------------------------

def big_jpeg():
    noise = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="JPEG", quality=95)
    return out.getvalue()


BAD_REQUESTS = {
    # id: (method, path, body(setup), headers, status, words the detail must contain)
    "text-plain": ("POST", "/invocations", lambda s: b"hello", {"Content-Type": "text/plain"}, 415,
                   ["text/plain", "application/json"]),
    "no-content-type": ("POST", "/invocations", lambda s: b"\xff\xd8", {}, 415, ["content-type"]),
    "malformed-json": ("POST", "/invocations", lambda s: b'{"url": ', {"Content-Type": "application/json"}, 400,
                       ["not valid JSON"]),
    "json-not-object": ("POST", "/invocations", lambda s: b'["a"]', {"Content-Type": "application/json"}, 400,
                        ["object"]),
    "json-no-usable-key": ("POST", "/invocations", lambda s: b'{"picture": "x", "link": 1}',
                           {"Content-Type": "application/json"}, 400,
                           ["picture", "link", '"url"', '"urls"', '"image"', '"instances"']),
    "urls-not-a-list": ("POST", "/invocations", lambda s: b'{"urls": "file:///x.jpg"}',
                        {"Content-Type": "application/json"}, 400, ['"urls"', "list"]),
    "bad-base64": ("POST", "/invocations", lambda s: b'{"image": "not*base64!"}',
                   {"Content-Type": "application/json"}, 400, ["base64"]),
    "empty-body": ("POST", "/invocations", lambda s: b"", {"Content-Type": "image/jpeg"}, 400, ["empty"]),
    "garbage-jpeg": ("POST", "/invocations", lambda s: b"this is not a jpeg at all" * 20,
                     {"Content-Type": "image/jpeg"}, 400, ["input 0", "not an image"]),
    "truncated-jpeg": ("POST", "/invocations", lambda s: s.image_a.read_bytes()[:300],
                       {"Content-Type": "image/jpeg"}, 400, ["input 0", "truncated"]),
    "pixel-bomb-png": ("POST", "/invocations", lambda s: png_claiming(50000, 50000), {"Content-Type": "image/png"},
                       400, ["pixel"]),
    "bad-top-k": ("POST", "/invocations?top_k=zero", lambda s: s.image_a.read_bytes(),
                  {"Content-Type": "image/jpeg"}, 400, ["top_k"]),
    "too-many-images": ("POST", "/invocations",
                        lambda s: json.dumps({"urls": [file_url(s.image_a)] * 65}).encode(),
                        {"Content-Type": "application/json"}, 400, ["65", "64"]),
    "metadata-url": ("POST", "/invocations", lambda s: b'{"url": "http://169.254.169.254/latest/meta-data"}',
                     {"Content-Type": "application/json"}, 400, ["denied", "169.254.169.254"]),
    "connection-refused": ("POST", "/invocations", lambda s: b'{"url": "http://127.0.0.1:1/x.jpg"}',
                           {"Content-Type": "application/json"}, 502, ["127.0.0.1:1"]),
    "file-outside-root": ("POST", "/invocations", lambda s: b'{"url": "file:///etc/passwd"}',
                          {"Content-Type": "application/json"}, 400, ["/etc/passwd", "outside the file root"]),
    "file-dotdot-escape": ("POST", "/invocations",
                           lambda s: json.dumps({"url": file_url(s.data) + "/../../../../etc/passwd"}).encode(),
                           {"Content-Type": "application/json"}, 400, ["outside the file root"]),
    "file-missing": ("POST", "/invocations",
                     lambda s: json.dumps({"url": file_url(s.data) + "/no-such.jpg"}).encode(),
                     {"Content-Type": "application/json"}, 400, ["no-such.jpg", "no such file"]),
    "unsupported-scheme": ("POST", "/invocations", lambda s: b'{"url": "ftp://example.com/x.jpg"}',
                           {"Content-Type": "application/json"}, 400, ["ftp"]),
    "second-input-bad": ("POST", "/invocations",
                         lambda s: json.dumps({"urls": [file_url(s.image_a), "file:///etc/passwd"]}).encode(),
                         {"Content-Type": "application/json"}, 400, ["input 1"]),
    "unknown-route": ("GET", "/predict", lambda s: None, {}, 404, ["/predict"]),
    "post-unknown-route": ("POST", "/v1/models/m:predict", lambda s: b"{}", {"Content-Type": "application/json"},
                           404, []),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_requests_get_json_errors_and_the_server_lives_on(setup, server, case):
    method, path, body, headers, status, words = BAD_REQUESTS[case]
    response = request(server.port, method, path, body(setup), headers)
    assert_json_error(response, status, *words)
    assert_alive(server.port)


def test_get_invocations_is_a_json_404_or_405(server):
    response = request(server.port, "GET", "/invocations")
    assert response.status in (404, 405), response
    assert_json_error(response, response.status, "/invocations")
    assert_alive(server.port)


@pytest.fixture(scope="module")
def small_body_server(setup):
    """Tight limits: 2000-byte bodies, 1 s and 10 kB per fetched URL."""
    with serving(setup, "--max-body", 2000, "--fetch-timeout", 1, "--max-fetch-bytes", 10000,
                 "--allow-file-root", setup.data, *ALLOW_LOOPBACK, name="small-body") as server:
        yield server


def test_body_over_max_body_is_413(setup, small_body_server):
    port = small_body_server.port
    big = big_jpeg()
    assert len(big) > 4000
    assert_json_error(invoke(port, big, "image/jpeg"), 413, "max-body")
    assert_alive(port)
    # A small request naming the image by URL is still fine.
    logits_rows(invoke(port, {"url": file_url(setup.image_a)}, "application/json"), 1)


def test_chunked_body_over_max_body_is_413(small_body_server):
    """Without a Content-Length (Transfer-Encoding: chunked) the limit must hold too."""
    port = small_body_server.port
    chunk = b"\x00" * 65536
    response = request(port, "POST", "/invocations", (chunk for _ in range(16)), {"Content-Type": "image/jpeg"},
                       encode_chunked=True)
    assert_json_error(response, 413, "max-body")
    assert_alive(port)


def test_gzip_body_inflating_over_max_body_is_413(small_body_server):
    """A 1 KB gzip body that inflates to 1 MiB is a body over the limit, not a way around it."""
    port = small_body_server.port
    gz = gzip.compress(b"\x00" * (1 << 20), 9)
    assert len(gz) < 2000
    response = invoke(port, gz, "image/jpeg", headers={"Content-Encoding": "gzip"})
    assert_json_error(response, 413, "max-body")
    assert_alive(port)


# ---- URLs over http: a local upstream ------------------------------------------------------

@pytest.fixture(scope="module")
def upstream(setup):
    """A local HTTP server the endpoint fetches from: an image, a redirect to the metadata address, errors."""
    image = setup.image_a.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            if self.path == "/a.jpg":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)
            elif self.path in ("/slow", "/huge"):
                body = b"\xff" * 50000 if self.path == "/huge" else image
                if self.path == "/slow":
                    time.sleep(3)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the fetcher gave up
            elif self.path == "/to-metadata":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                status = 500 if self.path == "/error" else 404
                self.send_response(status)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"oops")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_http_urls_are_fetched_and_checked(setup, server, upstream):
    port = server.port
    direct = logits_rows(invoke(port, setup.image_a.read_bytes(), "image/jpeg"), 1)
    fetched = logits_rows(invoke(port, {"url": upstream + "/a.jpg"}, "application/json"), 1)
    np.testing.assert_allclose(fetched, direct, atol=1e-5)
    # A redirect into the denied network is refused at the hop.
    assert_json_error(invoke(port, {"url": upstream + "/to-metadata"}, "application/json"), 400,
                      "denied", "169.254.169.254")
    # Upstream 404: the client named a missing image; upstream 500: a bad gateway.
    assert_json_error(invoke(port, {"url": upstream + "/missing.jpg"}, "application/json"), 400, "404")
    assert_json_error(invoke(port, {"url": upstream + "/error"}, "application/json"), 502, "500")
    # The metadata address spelt as a number or as an IPv4-mapped IPv6 address is denied too.
    for url in ("http://2852039166/latest/meta-data", "http://[::ffff:169.254.169.254]/latest/meta-data"):
        assert_json_error(invoke(port, {"url": url}, "application/json"), 400, "denied")
    assert_alive(port)


def test_fetch_limits_time_and_size(setup, small_body_server, upstream):
    port = small_body_server.port
    started = time.time()
    assert_json_error(invoke(port, {"url": upstream + "/slow"}, "application/json"), 504, "timed out")
    assert time.time() - started < 2.5
    response = invoke(port, {"url": upstream + "/huge"}, "application/json")
    assert response.status in (400, 413), response
    assert_json_error(response, response.status, "larger than the limit", "10000")
    logits_rows(invoke(port, {"url": upstream + "/a.jpg"}, "application/json"), 1)
    assert_alive(port)


def test_serve_refuses_a_port_in_use(setup, server, tmp_path):
    """A second `kennel serve` on a busy port must fail, not share the port with the first."""
    second = Server(setup.kennel.binary, setup.kennel.home, "m", tmp_path, port=server.port, wait_ready=False)
    try:
        deadline = time.time() + 30
        while second.process.poll() is None and "ready on" not in second.stdout() and time.time() < deadline:
            time.sleep(0.05)
        assert "ready on" not in second.stdout(), \
            f"a second server got ready on the busy port {server.port}: {second.stdout()}"
        assert second.process.wait(10) == 1
        assert f"127.0.0.1:{server.port}" in second.stderr(), second.stderr()
    finally:
        second.stop()
    assert_alive(server.port)


def test_serve_unknown_model_is_a_usage_error(setup):
    missing = setup.kennel.run("serve", "no-such-model", "--port", 0, timeout=60)
    assert missing.returncode == 2, missing
    assert "no-such-model" in missing.stderr + missing.stdout


# ---- 5. backpressure ------------------------------------------------------------------------

def test_full_queue_answers_503_with_retry_after(setup):
    body = setup.image_a.read_bytes()
    with serving(setup, "--max-queue", 1, "--max-batch-size", 1, "--max-batch-delay-ms", 200,
                 "--workers", 1, name="backpressure") as server:
        responses = [None] * 16
        start = threading.Barrier(16)

        def send(i):
            start.wait(10)
            try:
                responses[i] = invoke(server.port, body, "image/jpeg")
            except Exception as error:  # noqa: BLE001 - reported below
                responses[i] = error

        threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert all(isinstance(r, Response) for r in responses), responses
        statuses = [r.status for r in responses]
        print(f"backpressure statuses: {sorted(statuses)}")
        assert set(statuses) <= {200, 503}, statuses
        assert 503 in statuses and 200 in statuses, statuses
        for response in responses:
            if response.status == 503:
                assert response.headers.get("retry-after") == "1", response.headers
                assert_json_error(response, 503, "queue")
            else:
                logits_rows(response, 1)
        assert_alive(server.port)
        assert metric_requests(server.port).get(("/invocations", 503), 0) >= 1
        assert server.process.poll() is None


# ---- 6. graceful shutdown -------------------------------------------------------------------

def test_sigterm_finishes_in_flight_requests_and_exits_0(setup):
    body = setup.image_a.read_bytes()
    server = Server(setup.kennel.binary, setup.kennel.home, "m", setup.root / "shutdown",
                    "--max-batch-size", 8, "--max-batch-delay-ms", 1500)
    try:
        responses = [None] * 3

        def send(i):
            try:
                responses[i] = invoke(server.port, body, "image/jpeg", timeout=20)
            except Exception as error:  # noqa: BLE001 - reported below
                responses[i] = error

        threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        # Wait until all three images sit in the batcher's queue (waiting for a fuller batch).
        deadline = time.time() + 10
        while True:
            text = request(server.port, "GET", "/metrics", timeout=5).body.decode()
            depth = int(re.search(r"^kennel_queue_depth (\d+)$", text, re.M).group(1))
            if depth >= 3:
                break
            assert time.time() < deadline, f"the requests never queued (depth {depth})"
            time.sleep(0.02)
        assert all(r is None for r in responses), "answered before the batch delay"
        # An idle keep-alive connection must not hold the shutdown up either.
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        idle.request("GET", "/ping")
        assert idle.getresponse().read()
        signalled = time.time()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(15)
        exit_seconds = time.time() - signalled
        idle.close()
        for thread in threads:
            thread.join(20)
        print(f"shutdown: exit {code} {exit_seconds:.2f}s after SIGTERM")
        assert all(isinstance(r, Response) for r in responses), responses
        for response in responses:
            logits_rows(response, 1)
        assert code == 0, server.stderr()[-3000:]
        assert exit_seconds < 5
        assert "stopped by SIGTERM" in server.stdout()
    finally:
        server.stop()


# ---- 7. kennel transform --------------------------------------------------------------------

def run_transform(setup, *args):
    return setup.kennel.run("transform", "m", *args, "--quiet", timeout=120)


def assert_prediction_line(line, classes):
    assert set(line) == {"input", "label", "index", "probability", "top_k"}, line
    assert line["label"] == classes[line["index"]]
    assert line["top_k"][0]["label"] == line["label"]
    assert line["top_k"][0]["probability"] == pytest.approx(line["probability"])
    probabilities = [p["probability"] for p in line["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True)


@pytest.fixture(scope="module")
def folder(setup):
    """Every training image of the dataset, nested by class (36 images)."""
    return setup.data / "train"


@pytest.fixture(scope="module")
def full_run(setup, folder):
    out = setup.root / "transform" / "full.jsonl"
    result = run_transform(setup, folder, "--out", out, "--top-k", 2)
    assert result.returncode == 0, result.stderr
    return out, result


def test_transform_folder_one_line_per_image(setup, folder, full_run):
    out, result = full_run
    images = sorted(str(p) for p in folder.rglob("*.jpg"))
    lines = read_jsonl(out)
    assert [line["input"] for line in lines] == images
    for line in lines:
        assert_prediction_line(line, setup.classes)
        assert len(line["top_k"]) == 2
    assert f"{len(images)} inputs: {len(images)} predicted, 0 failed, 0 already done" in result.stdout
    # The same top class as the endpoint's local predictor gives.
    local = json.loads(setup.kennel.run("predict", "--model", "m", "--image", images[0], "--json",
                                        check=0).stdout)
    assert local["top_k"][0]["index"] == lines[0]["index"]
    assert local["top_k"][0]["probability"] == pytest.approx(lines[0]["probability"], abs=1e-5)


def test_transform_failures_are_error_lines_and_exit_1(setup, folder, tmp_path):
    copy = tmp_path / "images"
    shutil.copytree(folder, copy)
    (copy / "000.circle_red" / "zz_garbage.jpg").write_bytes(b"not an image" * 10)
    (copy / "empty.png").write_bytes(b"")
    out = tmp_path / "preds.jsonl"
    result = run_transform(setup, copy, "--out", out)
    assert result.returncode == 1, result
    lines = read_jsonl(out)
    assert len(lines) == 38
    errors = {Path(line["input"]).name: line for line in lines if "error" in line}
    assert set(errors) == {"zz_garbage.jpg", "empty.png"}, errors
    for line in errors.values():
        assert set(line) == {"input", "error"} and line["error"], line
    for line in lines:
        if "error" not in line:
            assert_prediction_line(line, setup.classes)
    assert "36 predicted, 2 failed" in result.stdout


def test_transform_resume_drops_a_partial_line(setup, folder, full_run, tmp_path):
    full = Path(full_run[0]).read_text().splitlines(keepends=True)
    out = tmp_path / "preds.jsonl"
    out.write_text("".join(full[:3]) + full[3][:len(full[3]) // 2])
    result = run_transform(setup, folder, "--out", out, "--top-k", 2)
    assert result.returncode == 0, result
    assert "36 inputs: 33 predicted, 0 failed, 3 already done" in result.stdout, result.stdout
    text = out.read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]  # every line parses: the partial one is gone
    inputs = [line["input"] for line in lines]
    assert sorted(inputs) == sorted(str(p) for p in folder.rglob("*.jpg"))
    assert len(inputs) == len(set(inputs)) == 36
    expected = {json.loads(line)["input"]: json.loads(line) for line in full}
    for line in lines:
        assert line["index"] == expected[line["input"]]["index"]
        assert line["probability"] == pytest.approx(expected[line["input"]]["probability"], abs=1e-6)
    # A third run has nothing left to do.
    again = run_transform(setup, folder, "--out", out)
    assert "0 predicted, 0 failed, 36 already done" in again.stdout
    assert len(out.read_text().splitlines()) == 36


def test_transform_manifest_with_paths_and_file_urls(setup, full_run, tmp_path):
    images = sorted((setup.data / "train").rglob("*.jpg"))[:4]
    manifest_dir = tmp_path / "lists"
    manifest_dir.mkdir()
    relative = [os.path.relpath(p, manifest_dir) for p in images[:2]]
    manifest = manifest_dir / "manifest.txt"
    manifest.write_text(f"# a comment\n{relative[0]}\n\n{relative[1]}\r\n{images[2]}\n{file_url(images[3])}\n")
    out = tmp_path / "preds.jsonl"
    result = run_transform(setup, manifest, "--out", out, "--allow-file-root", setup.data, "--top-k", 2)
    assert result.returncode == 0, result
    lines = read_jsonl(out)
    assert [line["input"] for line in lines] == [
        str(manifest_dir / relative[0]), str(manifest_dir / relative[1]), str(images[2]), file_url(images[3])]
    reference = {line["input"]: line for line in read_jsonl(full_run[0])}
    for line, image in zip(lines, images):
        assert_prediction_line(line, setup.classes)
        assert line["index"] == reference[str(image)]["index"]
        assert line["probability"] == pytest.approx(reference[str(image)]["probability"], abs=1e-6)

    # Without --allow-file-root the URL line is an error line.
    refused = tmp_path / "refused.jsonl"
    result = run_transform(setup, manifest, "--out", refused)
    assert result.returncode == 1
    errors = [line for line in read_jsonl(refused) if "error" in line]
    assert [line["input"] for line in errors] == [file_url(images[3])]
    assert "file" in errors[0]["error"]


def test_transform_killed_mid_run_resumes_without_duplicates(setup, folder, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    sources = sorted(folder.rglob("*.jpg"))
    for i in range(150):
        shutil.copy(sources[i % len(sources)], big / f"img_{i:03d}.jpg")
    out = tmp_path / "preds.jsonl"
    env = dict(os.environ, KENNEL_HOME=str(setup.kennel.home))
    process = subprocess.Popen([str(setup.kennel.binary), "transform", "m", str(big), "--out", str(out),
                                "--batch-size", "4", "--quiet"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (out.exists() and out.read_bytes().count(b"\n") >= 12):
            assert process.poll() is None, "transform finished before it could be killed"
            assert time.time() < deadline, "transform made no progress"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    text = out.read_text()
    complete = text.count("\n")
    print(f"killed with {complete} complete lines of 150 ({len(text)} bytes)")
    assert 12 <= complete < 150
    result = run_transform(setup, big, "--out", out, "--batch-size", 4)
    assert result.returncode == 0, result
    assert f"150 inputs: {150 - complete} predicted, 0 failed, {complete} already done" in result.stdout, \
        result.stdout
    inputs = [line["input"] for line in read_jsonl(out)]
    assert len(inputs) == len(set(inputs)) == 150
    assert sorted(inputs) == sorted(str(p) for p in big.iterdir())


# ---- 8. a bounded soak ----------------------------------------------------------------------

def test_soak_mixed_requests_keep_memory_flat(setup, server):
    port = server.port
    good = setup.image_a.read_bytes()
    cases = [
        (lambda: invoke(port, good, "image/jpeg"), 200),
        (lambda: invoke(port, {"url": file_url(setup.image_b)}, "application/json", path="/invocations?top_k=2"),
         200),
        (lambda: invoke(port, {"image": base64.b64encode(good).decode()}, "application/json"), 200),
        (lambda: invoke(port, b"garbage" * 100, "image/jpeg"), 400),
        (lambda: invoke(port, png_claiming(50000, 50000), "image/png"), 400),
        (lambda: invoke(port, b'{"url": ', "application/json"), 400),
        (lambda: invoke(port, b"x", "text/plain"), 415),
        (lambda: invoke(port, {"url": "file:///etc/passwd"}, "application/json"), 400),
        (lambda: invoke(port, {"url": "http://127.0.0.1:1/x.jpg"}, "application/json"), 502),
        (lambda: request(port, "GET", "/nope"), 404),
        (lambda: request(port, "GET", "/metrics"), 200),
    ]
    duration, warmup = 20.0, 3.0
    stop_at = time.time() + duration
    counts = {"ok": 0}
    failures = []
    lock = threading.Lock()

    def worker(seed):
        i = seed
        while time.time() < stop_at:
            send, status = cases[i % len(cases)]
            i += 1
            try:
                response = send()
                if response.status != status:
                    raise AssertionError(f"expected {status}, got {response}")
                with lock:
                    counts["ok"] += 1
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                with lock:
                    failures.append(repr(error))

    threads = [threading.Thread(target=worker, args=(seed * 3,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    rss_start = server.rss_kb()
    for thread in threads:
        thread.join(duration + 30)
    rss_end = server.rss_kb()
    growth_mb = (rss_end - rss_start) / 1024
    print(f"soak: {counts['ok']} requests ok, {len(failures)} failed; VmRSS {rss_start / 1024:.1f} MB after "
          f"{warmup:.0f}s -> {rss_end / 1024:.1f} MB at {duration:.0f}s (+{growth_mb:.1f} MB)")
    assert not failures, failures[:5]
    assert counts["ok"] > 40
    assert growth_mb < 30
    assert_alive(port)
