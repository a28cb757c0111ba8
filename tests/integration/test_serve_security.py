"""`kennel serve` safe by default: URL fetches, authentication, TLS, slow clients, budgets.

Black-box like test_serve.py (whose fixtures and helpers this module reuses):
real `kennel serve` processes on 127.0.0.1, every request with a timeout.
Every listener a test needs is on loopback; a test that proves the server
did NOT connect somewhere holds a listening socket there that nobody
accepts on and checks that nothing is waiting in its backlog.
"""
import http.client
import http.server
import io
import json
import os
import re
import select
import socket
import ssl
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_serve import (ALLOW_LOOPBACK, REQUEST_TIMEOUT, Response, Server, assert_alive,  # noqa: F401
                        assert_json_error, invoke, logits_rows, request, serving, setup)

TOKEN = "kennel-test-token-0123456789abcdef"


# ---- helpers --------------------------------------------------------------------------------

class QuietListener:
    """A listening socket nobody accepts on: a connection to it would wait in its backlog."""

    def __init__(self, host="127.0.0.1", port=0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def saw_connection(self):
        readable, _, _ = select.select([self.sock], [], [], 0.2)
        return bool(readable)

    def close(self):
        self.sock.close()


def error_reasons(port, headers=None):
    """{(route, status, reason): count} from GET /metrics."""
    text = request(port, "GET", "/metrics", headers=headers).body.decode()
    return {(route, int(status), reason): int(count) for route, status, reason, count in re.findall(
        r'^kennel_request_errors_total\{route="([^"]*)",status="(\d+)",reason="([^"]*)"\} (\d+)$', text, re.M)}


def wait_for_reason(port, key, at_least=1, headers=None, timeout=3):
    """The access-log hook that counts a request may run just after the answer is sent."""
    deadline = time.time() + timeout
    while True:
        counts = error_reasons(port, headers)
        if counts.get(key, 0) >= at_least or time.time() > deadline:
            return counts
        time.sleep(0.05)


def write_token(path, text=TOKEN, mode=0o600):
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with `openssl req` now."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return cert, key


def https_request(port, cafile, method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT):
    context = ssl.create_default_context(cafile=str(cafile))
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


@contextmanager
def upstream_server(setup, tls=None):
    """An HTTP(S) server on 127.0.0.1: /a.jpg, /slow1 (1 s), /slow3 (3 s), /to?url=U (302 to U)."""
    image = setup.image_a.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            try:
                if self.path.startswith("/to?url="):
                    self.send_response(302)
                    self.send_header("Location", self.path[len("/to?url="):])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.startswith("/slow"):
                    time.sleep(int(self.path[len("/slow"):]))
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)
            except OSError:
                pass  # the fetcher gave up

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


# ---- 1. URL fetches reach only public addresses by default ----------------------------------

@pytest.fixture(scope="module")
def default_server(setup):
    """Nothing opened: no --allow-network."""
    with serving(setup, name="defaults") as server:
        yield server


def test_loopback_in_every_spelling_is_refused_without_a_connection(default_server):
    port = default_server.port
    quiet = QuietListener()
    try:
        target = quiet.port
        for host in ("127.0.0.1", "localhost", "127.1", "2130706433", "0x7f000001", "0177.0.0.1",
                     "[::ffff:127.0.0.1]", "0.0.0.0", "0"):
            url = f"http://{host}:{target}/x.jpg"
            response = invoke(port, {"url": url}, "application/json")
            body = assert_json_error(response, 400, "denied", "--allow-network")
            assert "input 0" in body["detail"], body
        assert not quiet.saw_connection(), "a refused URL reached the listener on 127.0.0.1"
    finally:
        quiet.close()
    counts = wait_for_reason(port, ("/invocations", 400, "url_denied"), 9)
    assert counts.get(("/invocations", 400, "url_denied"), 0) >= 9, counts
    assert_alive(port)


def test_private_and_metadata_addresses_are_refused_at_once(default_server):
    for url in ("http://10.0.0.1/x.jpg", "http://192.168.1.1/x.jpg", "http://172.16.0.1/x.jpg",
                "http://100.64.0.1/x.jpg", "http://100.100.100.200/latest/meta-data/",
                "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/meta-data/",
                "http://[fe80::1]/x.jpg", "http://[64:ff9b::a9fe:a9fe]/", "http://224.0.0.1/x.jpg",
                "http://198.18.0.1/x.jpg", "http://192.0.2.1/x.jpg"):
        started = time.time()
        response = invoke(default_server.port, {"url": url}, "application/json", timeout=10)
        assert_json_error(response, 400, "denied", "--allow-network")
        assert time.time() - started < 1, f"{url}: refused only after {time.time() - started:.1f}s"


def test_redirect_from_an_allowed_host_to_a_denied_one_is_refused(setup):
    quiet = QuietListener("127.0.0.2")  # loopback too, but not the one address the server opens
    try:
        with upstream_server(setup) as upstream, serving(setup, *ALLOW_LOOPBACK, name="redirects") as server:
            fetched = invoke(server.port, {"url": upstream + "/a.jpg"}, "application/json")
            logits_rows(fetched, 1)  # the allowed host itself is fine
            for target in (f"http://127.0.0.2:{quiet.port}/x.jpg", f"http://2130706434:{quiet.port}/x.jpg",
                           "http://169.254.169.254/latest/meta-data/"):
                response = invoke(server.port, {"url": f"{upstream}/to?url={target}"}, "application/json")
                assert_json_error(response, 400, "denied", "redirected to", "--allow-network")
        assert not quiet.saw_connection(), "a redirect reached the listener on 127.0.0.2"
    finally:
        quiet.close()


def test_allow_network_opens_exactly_what_it_names(setup):
    with upstream_server(setup) as upstream, serving(setup, *ALLOW_LOOPBACK, "--allow-network", "10.0.0.0/8",
                                                     name="allow") as server:
        logits_rows(invoke(server.port, {"url": upstream + "/a.jpg"}, "application/json"), 1)
        port = upstream.rsplit(":", 1)[1]
        # Opened: 127.0.0.1 only, not the rest of loopback.
        assert_json_error(invoke(server.port, {"url": f"http://127.0.0.2:{port}/a.jpg"}, "application/json"),
                          400, "denied", "127.0.0.2")
        assert_json_error(invoke(server.port, {"url": f"http://[::1]:{port}/a.jpg"}, "application/json"),
                          400, "denied")
        assert_json_error(invoke(server.port, {"url": "http://192.168.0.1/x.jpg"}, "application/json"), 400,
                          "denied")


def test_predict_and_transform_fetch_by_the_same_rules(setup, tmp_path):
    with upstream_server(setup) as upstream:
        url = upstream + "/a.jpg"
        refused = setup.kennel.run("predict", "--model", "m", "--url", url, "--json")
        assert refused.returncode == 1, refused
        assert "denied" in refused.stdout and "--allow-network" in refused.stdout, refused.stdout
        allowed = setup.kennel.run("predict", "--model", "m", "--url", url, *ALLOW_LOOPBACK, "--json", check=0)
        assert len(json.loads(allowed.stdout)["logits"]) == 3
        manifest = tmp_path / "manifest.txt"
        manifest.write_text(url + "\n")
        out = tmp_path / "refused.jsonl"
        setup.kennel.run("transform", "m", manifest, "--out", out, "--quiet", check=1)
        assert "denied" in json.loads(out.read_text())["error"]
        out = tmp_path / "allowed.jsonl"
        setup.kennel.run("transform", "m", manifest, "--out", out, "--quiet", *ALLOW_LOOPBACK, check=0)
        assert "label" in json.loads(out.read_text())


# ---- 2. authentication and transport ----------------------------------------------------------

def test_a_token_guards_every_route_but_ping(setup, tmp_path):
    token_file = write_token(tmp_path / "token")
    with serving(setup, "--auth-token-file", token_file, name="auth") as server:
        port = server.port
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert request(port, "GET", "/ping").status == 200
        for method, path, body in (("GET", "/models", None), ("GET", "/metrics", None),
                                   ("POST", "/invocations", setup.image_a.read_bytes()),
                                   ("GET", "/no/such/route", None)):
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token-wrong"},
                            {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
                response = request(port, method, path, body, {"Content-Type": "image/jpeg", **headers})
                assert_json_error(response, 401, "token")
                assert response.headers.get("www-authenticate", "").startswith("Bearer"), response.headers
        assert request(port, "GET", "/models", headers=good).status == 200
        logits_rows(invoke(port, setup.image_a.read_bytes(), "image/jpeg", headers=good), 1)
        counts = wait_for_reason(port, ("/models", 401, "unauthenticated"), headers=good)
        assert counts.get(("/models", 401, "unauthenticated"), 0) == 4, counts
        assert counts.get(("/invocations", 401, "unauthenticated"), 0) == 4, counts

        # kennel predict sends the token from the same flag, or from the environment.
        predicted = setup.kennel.run("predict", "--endpoint", server.url, "--image", setup.image_a,
                                     "--auth-token-file", token_file, "--json", check=0)
        assert "logits" in json.loads(predicted.stdout)
        env = dict(os.environ, KENNEL_HOME=str(setup.kennel.home), KENNEL_AUTH_TOKEN=TOKEN)
        from_env = subprocess.run([str(setup.kennel.binary), "predict", "--endpoint", server.url, "--image",
                                   str(setup.image_a), "--json"], capture_output=True, text=True, env=env,
                                  timeout=120)
        assert from_env.returncode == 0, from_env.stderr
        refused = setup.kennel.run("predict", "--endpoint", server.url, "--image", setup.image_a)
        assert refused.returncode != 0
        assert "401" in refused.stderr and "token" in refused.stderr, refused.stderr


def test_the_token_comes_from_the_environment_too(setup):
    env_server = Server(setup.kennel.binary, setup.kennel.home, "m", setup.root / "auth-env",
                        env={"KENNEL_AUTH_TOKEN": TOKEN})
    try:
        assert_json_error(request(env_server.port, "GET", "/models"), 401, "token")
        assert request(env_server.port, "GET", "/models",
                       headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    finally:
        env_server.stop()


def test_a_token_file_others_can_read_is_refused(setup, tmp_path):
    token_file = write_token(tmp_path / "token", mode=0o644)
    result = setup.kennel.run("serve", "m", "--port", 0, "--auth-token-file", token_file, timeout=60)
    assert result.returncode != 0
    assert f"chmod 600 {token_file}" in result.stderr, result.stderr
    weak = write_token(tmp_path / "weak", text="abc")
    result = setup.kennel.run("serve", "m", "--port", 0, "--auth-token-file", weak, timeout=60)
    assert result.returncode == 2 and "openssl rand" in result.stderr, result.stderr


def test_a_host_beyond_loopback_needs_a_token_and_tls(setup, tmp_path, tls_files):
    token_file = write_token(tmp_path / "token")
    cert, key = tls_files
    for extra, missing in (((), "without a token or TLS"),
                           (("--auth-token-file", token_file), "without TLS"),
                           (("--tls-cert", cert, "--tls-key", key), "without a token")):
        result = setup.kennel.run("serve", "m", "--host", "0.0.0.0", "--port", 0, *extra, timeout=60)
        assert result.returncode == 2, result
        for words in (missing, "--auth-token-file", "--tls-cert", "--insecure-no-auth", "0.0.0.0"):
            assert words in result.stderr, (words, result.stderr)
        assert "ready on" not in result.stdout


def test_tls_endpoint_with_a_self_signed_certificate(setup, tmp_path, tls_files):
    cert, key = tls_files
    token_file = write_token(tmp_path / "token")
    with serving(setup, "--tls-cert", cert, "--tls-key", key, "--auth-token-file", token_file,
                 name="tls") as server:
        assert server.url.startswith("https://")
        port = server.port
        good = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
        assert https_request(port, cert, "GET", "/ping").status == 200
        plain = logits_rows(https_request(port, cert, "POST", "/invocations", setup.image_a.read_bytes(), good), 1)
        assert https_request(port, cert, "POST", "/invocations", setup.image_a.read_bytes(),
                             {"Content-Type": "image/jpeg"}).status == 401
        # Plain HTTP to the TLS port gets no HTTP answer.
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            request(port, "GET", "/ping", timeout=5)
        # kennel predict speaks https, trusting the certificate given with --ca-bundle.
        predicted = setup.kennel.run("predict", "--endpoint", server.url, "--ca-bundle", cert, "--image",
                                     setup.image_a, "--auth-token-file", token_file, "--json", check=0)
        np.testing.assert_allclose(json.loads(predicted.stdout)["logits"], plain[0], atol=1e-5)
        untrusted = setup.kennel.run("predict", "--endpoint", server.url, "--image", setup.image_a,
                                     "--auth-token-file", token_file)
        assert untrusted.returncode != 0 and "--ca-bundle" in untrusted.stderr, untrusted.stderr
        assert https_request(port, cert, "GET", "/ping").status == 200


def test_https_urls_are_verified_against_ca_bundle(setup, tls_files):
    cert, key = tls_files
    with upstream_server(setup, tls=tls_files) as upstream:
        with serving(setup, *ALLOW_LOOPBACK, "--ca-bundle", cert, name="ca-bundle") as server:
            logits_rows(invoke(server.port, {"url": upstream + "/a.jpg"}, "application/json"), 1)
        with serving(setup, *ALLOW_LOOPBACK, name="no-ca-bundle") as server:
            assert_json_error(invoke(server.port, {"url": upstream + "/a.jpg"}, "application/json"), 502)


# ---- 3. a request cannot hold the server ------------------------------------------------------

def test_slow_and_idle_clients_hold_no_handler_thread(setup):
    with serving(setup, "--http-threads", 2, "--header-timeout", 1, "--body-timeout", 1,
                 name="slow-clients") as server:
        port = server.port
        idle, slow_heads, slow_bodies = [], [], []
        try:
            for _ in range(20):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            for _ in range(8):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Ty")
                slow_heads.append(sock)
            for _ in range(8):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                             b"Content-Length: 5000\r\n\r\n\xff\xd8")
                slow_bodies.append(sock)
            # Two handler threads, 36 connections holding on: a well-behaved client is answered at once.
            body = setup.image_a.read_bytes()
            for _ in range(5):
                started = time.time()
                logits_rows(invoke(port, body, "image/jpeg", timeout=10), 1)
                assert time.time() - started < 1.0, f"answered after {time.time() - started:.1f}s"
            # The slow ones are answered 408 at their deadline.
            for sock, flag in [(s, "--header-timeout") for s in slow_heads] + [(s, "--body-timeout")
                                                                              for s in slow_bodies]:
                answer = sock.recv(65536).decode(errors="replace")
                assert answer.startswith("HTTP/1.1 408"), answer
                assert flag in answer, answer
        finally:
            for sock in idle + slow_heads + slow_bodies:
                sock.close()
        counts = wait_for_reason(port, ("none", 408, "body_timeout"), 8)
        assert counts.get(("none", 408, "header_timeout")) == 8, counts
        assert counts.get(("none", 408, "body_timeout")) == 8, counts
        assert_alive(port)


def test_open_connections_are_capped(setup):
    with serving(setup, "--max-connections", 4, name="max-connections") as server:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(4)]
        try:
            time.sleep(0.2)
            extra = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            extra.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = extra.recv(65536).decode(errors="replace")
            extra.close()
            assert answer.startswith("HTTP/1.1 503"), answer
            assert "Retry-After: 1" in answer and "--max-connections" in answer, answer
        finally:
            for sock in held:
                sock.close()
        deadline = time.time() + 5
        while True:  # room again once they are closed
            try:
                assert_alive(server.port)
                break
            except AssertionError:
                assert time.time() < deadline
                time.sleep(0.1)
        assert error_reasons(server.port).get(("none", 503, "too_many_connections"), 0) >= 1


def test_one_requests_urls_are_fetched_concurrently_within_its_deadline(setup):
    with upstream_server(setup) as upstream:
        with serving(setup, *ALLOW_LOOPBACK, "--fetch-concurrency", 4, "--request-timeout", 2,
                     "--fetch-timeout", 20, name="request-timeout") as server:
            started = time.time()
            logits_rows(invoke(server.port, {"urls": [upstream + "/slow1"] * 4}, "application/json"), 4)
            concurrent = time.time() - started
            assert concurrent < 2.5, f"4 URLs of 1 s each took {concurrent:.1f}s"
            # Three 3-second URLs against a 2-second request deadline: 504 at the deadline.
            started = time.time()
            response = invoke(server.port, {"urls": [upstream + "/slow3"] * 3}, "application/json")
            assert_json_error(response, 504, "deadline")
            assert time.time() - started < 3.0, f"504 only after {time.time() - started:.1f}s"
            assert_alive(server.port)


def test_pixels_decoded_at_once_are_budgeted(setup):
    """16 Mpx PNGs sent at once: with room for one at a time, the rest are 503, not memory."""
    out = io.BytesIO()
    Image.new("RGB", (4000, 4000), (90, 140, 200)).save(out, format="PNG")
    big = out.getvalue()
    with serving(setup, "--max-pixels", 20_000_000, "--decode-pixel-budget", 20_000_000, "--http-threads", 8,
                 name="pixel-budget") as server:
        responses = [None] * 8
        barrier = threading.Barrier(8)

        def send(i):
            barrier.wait(10)
            responses[i] = invoke(server.port, big, "image/png", timeout=60)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        statuses = sorted(r.status for r in responses)
        print(f"pixel budget statuses: {statuses}")
        assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
        for response in responses:
            if response.status == 503:
                assert_json_error(response, 503, "--decode-pixel-budget")
                assert response.headers.get("retry-after") == "1"
        counts = wait_for_reason(server.port, ("/invocations", 503, "decode_budget"))
        assert counts.get(("/invocations", 503, "decode_budget"), 0) >= 1, counts
        assert_alive(server.port)


# ---- 8. limits users expect -------------------------------------------------------------------

def test_max_body_defaults_to_6_mb_and_errors_are_counted_by_reason(default_server):
    port = default_server.port
    limit = 6 * 1024 * 1024
    assert_json_error(invoke(port, b"\x00" * (limit + 1), "image/jpeg"), 413, str(limit))
    assert_json_error(invoke(port, b"\x00" * (limit - 1), "image/jpeg"), 400)  # read whole, then not an image
    assert_json_error(invoke(port, b"x", "text/plain"), 415)
    assert_json_error(request(port, "GET", "/nowhere"), 404)
    counts = wait_for_reason(port, ("other", 404, "no_route"))
    assert counts.get(("none", 413, "payload_too_large"), 0) >= 1, counts
    assert counts.get(("/invocations", 400, "bad_image"), 0) >= 1, counts
    assert counts.get(("/invocations", 415, "unsupported_media_type"), 0) >= 1, counts
    assert counts.get(("other", 404, "no_route"), 0) >= 1, counts
