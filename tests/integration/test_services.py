"""Each real-service fixture (services.py) does one real operation, so a broken service set-up
shows up here rather than as a puzzling failure in a Kennel test."""
import http.server
import os
import socket
import threading
import time

import pytest


def test_postgres_runs_sql(postgres):
    postgres.psql("CREATE TABLE trials (id serial PRIMARY KEY, state text NOT NULL)")
    postgres.psql("INSERT INTO trials (state) VALUES ('done'), ('running')")
    assert postgres.query("SELECT id, state FROM trials ORDER BY id") == [("1", "done"),
                                                                          ("2", "running")]
    assert postgres.url.startswith("postgresql://postgres@127.0.0.1:")
    assert postgres.query("SELECT current_database()") == [(postgres.database,)]


def test_postgres_reachable_from_a_namespace(make_postgres, netns_hosts):
    net = netns_hosts(1)
    pg = make_postgres(listen=[net.host_address], trust=[net.cidr])
    url = pg.url_for(pg.database, host=net.host_address)
    result = net.run(0, ["/usr/lib/postgresql/15/bin/psql", "-X", "-A", "-t", "-d", url, "-c",
                         "SELECT inet_client_addr()"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == net.addresses[0]


def test_slurm_job_completes_and_another_is_cancelled(slurm):
    done = slurm.sbatch('echo "job $SLURM_JOB_ID on $SLURMD_NODENAME"')
    assert slurm.wait_state(done, "COMPLETED", timeout=30) == "COMPLETED"
    assert slurm.output(done).strip() == f"job {done} on {slurm.node}"

    long = slurm.sbatch("sleep 300", "--time=5")
    slurm.wait_state(long, "RUNNING", timeout=30)
    slurm.scancel(long)
    assert slurm.wait_state(long, "CANCELLED", timeout=30) == "CANCELLED"
    assert slurm.job_info(long)["TimeLimit"] == "00:05:00"


def test_s3_round_trip_multipart_and_signature_checks(s3, tmp_path):
    import boto3.s3.transfer
    from botocore.exceptions import ClientError

    s3.make_bucket("kennel-data")
    client = s3.boto3_client()
    data = os.urandom(10 * 1024 * 1024)
    source = tmp_path / "object.bin"
    source.write_bytes(data)
    # multipart (S3's 5 MB minimum part): 2 parts, uploaded concurrently
    config = boto3.s3.transfer.TransferConfig(multipart_threshold=5 << 20,
                                              multipart_chunksize=5 << 20)
    client.upload_file(str(source), "kennel-data", "images/object 1.bin", Config=config)
    uploads = [r for r in s3.requests if r.method == "PUT" and "partNumber" in r.query]
    assert len(uploads) == 2 and all(r.status == 200 and r.signed == "header" for r in uploads)
    body = client.get_object(Bucket="kennel-data", Key="images/object 1.bin")["Body"].read()
    assert body == data
    ranged = client.get_object(Bucket="kennel-data", Key="images/object 1.bin",
                               Range="bytes=100-199")["Body"].read()
    assert ranged == data[100:200]

    wrong = s3.boto3_client(secret_key=s3.secret_key + "x", retries={"total_max_attempts": 1})
    with pytest.raises(ClientError) as refused:
        wrong.head_object(Bucket="kennel-data", Key="images/object 1.bin")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as refused:
        wrong.get_object(Bucket="kennel-data", Key="images/object 1.bin")
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert "GET\n/kennel-data/images/object%201.bin" in \
        refused.value.response["Error"]["CanonicalRequest"]


def test_s3_hooks_drop_connections_and_inject_errors(s3):
    from botocore.exceptions import ClientError, ResponseStreamingError

    s3.make_bucket("kennel-hooks")
    client = s3.boto3_client(retries={"total_max_attempts": 1})
    data = os.urandom(3 * 1024 * 1024)
    client.put_object(Bucket="kennel-hooks", Key="a.jpg", Body=data)

    s3.drop_next_gets("kennel-hooks", "a.jpg", times=1, after_bytes=1000)
    response = client.get_object(Bucket="kennel-hooks", Key="a.jpg")
    with pytest.raises(ResponseStreamingError):
        response["Body"].read()
    assert client.get_object(Bucket="kennel-hooks", Key="a.jpg")["Body"].read() == data
    gets = [r for r in s3.requests if r.method == "GET" and r.key == "a.jpg"]
    assert [(r.error, r.bytes_out) for r in gets] == [("dropped", 1000), ("", len(data))]

    # A clean close (FIN) mid-body: only Content-Length shows the body is short.
    from botocore.exceptions import IncompleteReadError
    s3.drop_next_gets("kennel-hooks", "a.jpg", times=1, after_bytes=1000, how="close")
    response = client.get_object(Bucket="kennel-hooks", Key="a.jpg")
    with pytest.raises((ResponseStreamingError, IncompleteReadError)):
        response["Body"].read()

    # A paused response holds its body halfway until released; ranges and If-Match are recorded.
    s3.clear_requests()
    s3.pause_next_gets("kennel-hooks", "a.jpg", after_bytes=1000)
    got = {}
    reader = threading.Thread(target=lambda: got.update(body=client.get_object(
        Bucket="kennel-hooks", Key="a.jpg", Range="bytes=10-", IfMatch=etag)["Body"].read()))
    etag = client.head_object(Bucket="kennel-hooks", Key="a.jpg")["ETag"]
    reader.start()
    deadline = time.time() + 10
    while s3.paused != [("kennel-hooks", "a.jpg")]:
        assert time.time() < deadline, "the GET was not held"
        time.sleep(0.02)
    time.sleep(0.2)
    assert reader.is_alive() and "body" not in got
    s3.release_paused()
    reader.join(timeout=30)
    assert got["body"] == data[10:] and s3.paused == []
    held = [r for r in s3.requests if r.method == "GET"][-1]
    assert (held.range, held.if_match, held.status, held.bytes_out) == \
        ("bytes=10-", etag, 206, len(data) - 10)

    s3.fail_next(times=1, method="GET", key="a.jpg")
    with pytest.raises(ClientError) as throttled:
        client.get_object(Bucket="kennel-hooks", Key="a.jpg")
    assert throttled.value.response["Error"]["Code"] == "SlowDown"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert client.get_object(Bucket="kennel-hooks", Key="a.jpg")["Body"].read() == data


def test_s3_unsigned_requests_reach_public_buckets_only(s3):
    import urllib.error
    import urllib.request

    s3.make_bucket("kennel-public", public=True)
    s3.make_bucket("kennel-private")
    client = s3.boto3_client()
    for bucket in ("kennel-public", "kennel-private"):
        client.put_object(Bucket=bucket, Key="k", Body=b"payload")
    with urllib.request.urlopen(f"{s3.endpoint}/kennel-public/k", timeout=10) as response:
        assert response.read() == b"payload"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{s3.endpoint}/kennel-private/k", timeout=10)
    assert refused.value.code == 403 and b"AccessDenied" in refused.value.read()
    assert set(s3.env()) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                             "AWS_ENDPOINT_URL"}


def test_namespaces_reach_each_other_and_the_host(netns_hosts):
    net = netns_hosts(2)
    for source, target in ((0, net.addresses[1]), (1, net.addresses[0]), (0, net.host_address)):
        ping = net.run(source, ["ping", "-c", "1", "-W", "3", target], capture_output=True,
                       text=True, timeout=30)
        assert ping.returncode == 0, f"ns {source} -> {target}: {ping.stdout}{ping.stderr}"
    # TCP from a namespace to a server on the bridge address of the root namespace
    with socket.create_server((net.host_address, 0)) as server:
        port = server.getsockname()[1]
        client = net.popen(1, ["python3", "-c", "import socket,sys; s=socket.create_connection("
                               f"('{net.host_address}', {port}), timeout=10); s.sendall(b'hi')"])
        server.settimeout(10)
        connection, (peer, _) = server.accept()
        with connection:
            assert connection.recv(2) == b"hi" and peer == net.addresses[1]
        assert client.wait(timeout=10) == 0
    sleeper = net.popen(0, ["sleep", "300"])  # left running: teardown must end it
    assert sleeper.poll() is None


class _Pages(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_site(tmp_path):
    (tmp_path / "index.html").write_text(
        "<html><body><h1 id='title'>Kennel</h1></body></html>")
    (tmp_path / "leaky.html").write_text(
        "<html><body><p id='state'>waiting</p>"
        "<img src='http://203.0.113.9/pixel.png'>"
        "<script>fetch('http://kennel-outside.example.com/track').then("
        "() => document.getElementById('state').textContent = 'reached',"
        "() => document.getElementById('state').textContent = 'blocked');</script>"
        "</body></html>")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Pages(*a, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_chromium_loads_loopback_and_nothing_leaves(chromium, local_site):
    from selenium.webdriver.common.by import By

    chromium.get(f"{local_site}/index.html")
    assert chromium.driver.find_element(By.ID, "title").text == "Kennel"
    assert any(r["url"] == f"{local_site}/index.html" and r["status"] == 200
               for r in chromium.network_requests())

    chromium.get(f"{local_site}/leaky.html")
    deadline = time.monotonic() + 10
    while chromium.driver.find_element(By.ID, "state").text == "waiting":
        assert time.monotonic() < deadline, "the page's fetch never settled"
        time.sleep(0.1)
    assert chromium.driver.find_element(By.ID, "state").text == "blocked"
    outside = chromium.outside_requests()
    assert {r["url"] for r in outside} == {"http://203.0.113.9/pixel.png",
                                           "http://kennel-outside.example.com/track"}
    assert all(r["status"] is None and r["error"] for r in outside), outside
    assert any("kennel-outside.example.com" in m["message"]
               for m in chromium.console_messages("SEVERE"))
