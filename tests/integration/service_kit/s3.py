"""An S3-compatible store for tests: the pinned s3rver (npm; scripts/services.sh installs it)
on a loopback port, behind a SigV4-verifying proxy (sigv4_proxy.py) on another. Clients,
Kennel and boto3 alike, talk to the proxy, so every signed request is checked by botocore.
"""
import json
import os
import secrets
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (Cleanup, ServiceUnavailable, private_dir, remove_tree, require_binaries,
                     stop_process, tail)

if TYPE_CHECKING:  # sigv4_proxy needs botocore: imported only when a store starts
    from .sigv4_proxy import SigV4Proxy

ROOT = Path(__file__).resolve().parents[3]
SERVICE = "S3 (s3rver)"
SERVICES_SCRIPT = ROOT / "scripts" / "services.sh"


@dataclass
class S3:
    """A running store. `endpoint` is the verifying proxy (path-style: endpoint/bucket/key;
    virtual-hosted style: http://<bucket>.s3.localhost:<port> where names resolve)."""
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    directory: Path
    proxy: "SigV4Proxy"

    @property
    def port(self) -> int:
        return self.proxy.port

    def env(self) -> dict:
        """AWS_* variables that point a Kennel process (or the AWS CLI) at this store."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def boto3_client(self, secret_key: str = None, **config):
        """boto3 pointed at the proxy, path-style; its requests are verified like anyone's.
        `secret_key` overrides the secret (to provoke SignatureDoesNotMatch); `config` goes to
        botocore's Config (e.g. retries={'total_max_attempts': 1}: no retries)."""
        import boto3
        import botocore.config
        session = boto3.session.Session(aws_access_key_id=self.access_key,
                                        aws_secret_access_key=secret_key or self.secret_key,
                                        region_name=self.region)
        options = {"s3": {"addressing_style": "path"}, "connect_timeout": 10, "read_timeout": 60,
                   **config}
        return session.client("s3", endpoint_url=self.endpoint,
                              config=botocore.config.Config(**options))

    def make_bucket(self, name: str, public: bool = False) -> str:
        """Creates a bucket; a public one can be read (GET/HEAD) without signing, as with a
        public-read bucket policy. Unsigned requests to other buckets get 403 AccessDenied."""
        self.boto3_client().create_bucket(Bucket=name)
        if public:
            with self.proxy.rules.lock:
                self.proxy.rules.public_buckets.add(name)
        return name

    # --- test hooks -------------------------------------------------------------------------
    def drop_next_gets(self, bucket: str, key: str, times: int = 1, after_bytes: int = -1,
                       how: str = "reset"):
        """The next `times` GETs of bucket/key that succeed upstream (ranged ones included) are
        cut off after `after_bytes` bytes of body (-1: half of it). `how`: "reset" (TCP RST,
        as from a crashed peer or a middlebox) or "close" (a clean FIN, as from a server that
        gives up mid-response: only Content-Length tells the client the body is short)."""
        if how not in ("reset", "close"):
            raise ValueError(f"how={how!r}: use 'reset' or 'close'")
        with self.proxy.rules.lock:
            self.proxy.rules.drops[(bucket, key)] = [times, after_bytes, how]

    def pause_next_gets(self, bucket: str, key: str, times: int = 1, after_bytes: int = -1):
        """The next `times` GETs of bucket/key that succeed upstream send `after_bytes` bytes of
        body (-1: half of it) and then hold the rest until release_paused(): a client is then
        known to be mid-download (kill it, look at its files). Arming a pause ends an earlier
        release."""
        with self.proxy.rules.lock:
            self.proxy.rules.pauses[(bucket, key)] = [times, after_bytes]
            self.proxy.rules.resume.clear()

    @property
    def paused(self) -> list:
        """(bucket, key) of the responses held mid-body right now."""
        with self.proxy.rules.lock:
            return list(self.proxy.rules.paused)

    def release_paused(self):
        """Held responses go on (to clients still there) and pauses not yet taken are dropped."""
        with self.proxy.rules.lock:
            self.proxy.rules.pauses.clear()
            self.proxy.rules.resume.set()

    def fail_next(self, times: int = 1, method: str = None, bucket: str = None, key: str = None,
                  status: int = 503, code: str = "SlowDown"):
        """The next `times` requests matching method/bucket/key (None: any) are answered with an
        S3 error (default 503 SlowDown, what S3 answers when throttling)."""
        with self.proxy.rules.lock:
            self.proxy.rules.failures.append([method, bucket, key, times, status, code])

    @property
    def requests(self) -> list:
        """Every request the proxy saw, oldest first (RequestRecord: method, bucket, key, query,
        signed, status, error, bytes_in, bytes_out, forwarded, range, if_match, started, finished)."""
        with self.proxy.rules.lock:
            return list(self.proxy.rules.records)

    def clear_requests(self):
        with self.proxy.rules.lock:
            self.proxy.rules.records.clear()


_install_lock = threading.Lock()


def s3rver_entry() -> Path:
    """Installs the pinned s3rver when missing (scripts/services.sh); returns its package dir."""
    require_binaries(SERVICE, "node", "npm")
    with _install_lock:
        result = subprocess.run(["bash", str(SERVICES_SCRIPT)], capture_output=True, text=True,
                                timeout=600)
    if result.returncode != 0:
        raise ServiceUnavailable(SERVICE, f"scripts/services.sh failed ({result.returncode}):\n"
                                 f"{result.stderr[-2000:]}",
                                 "bash scripts/services.sh (needs the npm registry once)")
    return Path(result.stdout.strip().splitlines()[-1])


@contextmanager
def s3_server(region: str = "us-east-1", access_key: str = None, secret_key: str = None,
              buckets=()):
    """Starts s3rver and the verifying proxy; yields an S3. Teardown stops both and deletes the
    data."""
    try:
        from .sigv4_proxy import SigV4Proxy
    except ImportError as error:
        raise ServiceUnavailable(SERVICE, f"botocore is missing ({error}); run the tests with "
                                 "Debian's /usr/bin/python3", "apt-get install python3-botocore")
    entry = s3rver_entry()
    modules = entry.parents[2]  # .../node_modules/s3rver/bin/s3rver.js -> node_modules
    access_key = access_key or "KENNELTEST" + secrets.token_hex(5).upper()
    secret_key = secret_key or secrets.token_urlsafe(30)
    cleanup = Cleanup()
    root = private_dir("s3")
    cleanup.add(remove_tree, root)
    try:
        (root / "data").mkdir()
        (root / "spool").mkdir()
        log = open(root / "s3rver.log", "ab")
        cleanup.add(log.close)
        server = subprocess.Popen(
            ["node", str(ROOT / "scripts" / "s3rver" / "serve.js"), str(modules),
             str(root / "data"), "127.0.0.1", "0"],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
            env={**os.environ, "S3RVER_ACCESS_KEY": access_key, "S3RVER_SECRET_KEY": secret_key,
                 # s3rver 3.7 makes continuation tokens with a hash OpenSSL 3 keeps in its
                 # legacy provider: without it every truncated listing is a 500.
                 "NODE_OPTIONS": (os.environ.get("NODE_OPTIONS", "") +
                                  " --openssl-legacy-provider").strip()})
        cleanup.add(stop_process, server)
        line = server.stdout.readline()  # s3rver prints its port once it listens
        try:
            upstream_port = json.loads(line)["port"]
        except (ValueError, KeyError):
            server.wait(timeout=10)
            raise ServiceUnavailable(SERVICE, f"s3rver did not start (exit {server.returncode}):\n"
                                     f"{line!r}\n{tail(root / 's3rver.log')}",
                                     "bash scripts/services.sh, then see the log above")
        server.stdout.close()
        proxy = SigV4Proxy(upstream_port, access_key, secret_key, region, str(root / "spool"))
        proxy.start()
        cleanup.add(proxy.stop)
        s3 = S3(f"http://127.0.0.1:{proxy.port}", access_key, secret_key, region, root, proxy)
        for bucket in buckets:
            s3.make_bucket(bucket)
        yield s3
    finally:
        cleanup.run()


__all__ = ["S3", "s3_server", "s3rver_entry"]
