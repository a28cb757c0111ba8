"""A loopback HTTP proxy that verifies every S3 request's AWS Signature Version 4 with botocore
(an independent signer) before it reaches the S3 server behind it (s3rver verifies only the
access key of a v4 request, not its signature).

Verification follows what S3 does: the canonical request is rebuilt from the request as
received (path and query URI-encoded once, the way S3 canonicalises them; exactly the headers
the client listed in SignedHeaders; the payload mode it declared in x-amz-content-sha256),
and botocore's S3SigV4Auth computes the signature with the known secret. A mismatch is
answered 403 SignatureDoesNotMatch with the CanonicalRequest and StringToSign S3 would show;
a declared payload hash that differs from the body received is 400
XAmzContentSHA256Mismatch. Presigned URLs (X-Amz-Algorithm in the query) are verified the
same way (S3SigV4QueryAuth), including expiry. Requests without any signature pass through
(anonymous access) only to buckets the test made public, for GET and HEAD; SigV2 ("AWS key:sig") passes to s3rver, which verifies v2 itself.
aws-chunked streaming payloads are refused with 501: s3rver would store the chunk framing.

Bodies are spooled (memory up to 8 MB, then a temp file) so the server only ever sees a
complete, verified upload; responses stream through as they arrive. Connections are
keep-alive and served concurrently, one thread each.

Each request reaches s3rver at most once. A request is sent again (on a fresh connection) only
when the reused keep-alive connection turned out closed by s3rver before any answer: resending
one that s3rver may have begun is not harmless (s3rver 3.7 truncates the object file when a
PUT starts, and one whose connection drops never writes it: the object stays empty).

Test hooks (thread-safe): drop_next_gets() cuts the connection in the middle of the body
of the next N GETs of a key, with a reset or a clean close; pause_next_gets() sends part of
the body of the next N GETs of a key and then holds the rest until release_paused() (so a
test can kill a client mid-download at a known point instead of racing a timer);
fail_next() answers the next N matching requests with an S3 error (503 SlowDown...);
`requests` records every request with its outcome.
"""
import datetime
import hashlib
import hmac
import http.client
import re
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade", "expect", "proxy-connection"}
AUTH_HEADER = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,"
    r"\s*Signature=([0-9a-f]{64})\s*$")
AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
MAX_SKEW = datetime.timedelta(minutes=15)
CHUNK = 256 * 1024
VHOST = re.compile(r"^(.+)\.s3\.localhost(?::\d+)?$")


class S3Failure(Exception):
    """An S3 error answer: status, code, message and extra XML fields."""

    def __init__(self, status: int, code: str, message: str, **fields):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.fields = status, code, message, fields


@dataclass
class RequestRecord:
    method: str
    bucket: str
    key: str
    query: str
    signed: str          # "header", "query", "v2", "anonymous"
    status: int = 0
    error: str = ""      # the S3 error code the proxy answered, or "dropped"
    bytes_in: int = 0
    bytes_out: int = 0
    forwarded: int = 0   # times sent to s3rver: 0 when answered here, 2 only when a kept-alive
                         # connection s3rver had closed was retried on a fresh one
    range: str = ""      # the Range header as received ("bytes=1000-": a resumed download)
    if_match: str = ""   # the If-Match header as received
    started: float = 0.0   # time.monotonic() when the request's headers had arrived
    finished: float = 0.0  # ... and when its answer had been sent (0: not yet, or it broke)


class _ExactHeaders:
    """botocore signs every header it is given except a few (user-agent, expect...); S3 signs
    exactly those the client listed. This mixin signs exactly the listed ones."""

    def headers_to_sign(self, request):
        headers = HTTPHeaders()
        for name in request.context["signed_headers"]:
            for value in request.context["header_values"].get(name, []):
                headers[name] = value
        return headers


class _HeaderSigner(_ExactHeaders, S3SigV4Auth):
    pass


class _QuerySigner(_ExactHeaders, S3SigV4QueryAuth):
    pass


def canonical_path(raw_path: str) -> str:
    """S3's canonical URI: the decoded path URI-encoded once, '/' kept, no normalisation."""
    return quote(unquote(raw_path), safe="/~")


def canonical_query(raw_query: str, drop=()) -> str:
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        name, _, value = part.partition("=")
        name, value = unquote(name), unquote(value)
        if name in drop:
            continue
        pairs.append((quote(name, safe="-_.~"), quote(value, safe="-_.~")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


class SigV4Verifier:
    """Checks one request's SigV4 signature; raises S3Failure when S3 would refuse it."""

    def __init__(self, access_key: str, secret_key: str, region: str):
        self.access_key, self.secret_key, self.region = access_key, secret_key, region

    def _scope(self, credential: str):
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise S3Failure(400, "AuthorizationHeaderMalformed",
                            f"the credential {credential!r} is not KEY/DATE/REGION/s3/aws4_request")
        key, date, region, service, _ = parts
        if key != self.access_key:
            raise S3Failure(403, "InvalidAccessKeyId",
                            "The AWS Access Key Id you provided does not exist in our records.",
                            AWSAccessKeyId=key)
        if region != self.region:
            raise S3Failure(400, "AuthorizationHeaderMalformed",
                            f"the region '{region}' is wrong; expecting '{self.region}'",
                            Region=self.region)
        if service != "s3":
            raise S3Failure(400, "AuthorizationHeaderMalformed",
                            f"the service '{service}' is wrong; expecting 's3'")
        return date

    @staticmethod
    def _check_date(amz_date: str, scope_date: str, now: datetime.datetime):
        if not amz_date or not AMZ_DATE.match(amz_date):
            raise S3Failure(403, "AccessDenied",
                            f"x-amz-date {amz_date!r} is missing or not YYYYMMDDTHHMMSSZ")
        if amz_date[:8] != scope_date:
            raise S3Failure(400, "AuthorizationHeaderMalformed",
                            f"the credential date {scope_date} is not the date of x-amz-date "
                            f"{amz_date}")
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        return when

    @staticmethod
    def mechanism(raw_target: str, headers) -> str:
        """How a request is signed: "header" (SigV4 Authorization), "query" (SigV4 presigned),
        "v2" (SigV2 header or query: s3rver verifies those), or "anonymous"."""
        names = {unquote(p.partition("=")[0]) for p in urlsplit(raw_target).query.split("&") if p}
        authorization = headers.get("Authorization")
        if authorization:
            return "v2" if authorization.startswith("AWS ") else "header"
        if "X-Amz-Algorithm" in names:
            return "query"
        return "v2" if "Signature" in names else "anonymous"

    def verify(self, method: str, raw_target: str, headers) -> str:
        """Verifies a request (an http.client.HTTPMessage for headers); returns its mechanism()."""
        split = urlsplit(raw_target)
        authorization = headers.get("Authorization")
        kind = self.mechanism(raw_target, headers)
        if kind in ("anonymous", "v2"):
            return kind
        if authorization and "X-Amz-Algorithm" in split.query:
            raise S3Failure(400, "InvalidArgument", "Only one auth mechanism allowed")
        now = datetime.datetime.utcnow()
        values = {}
        for name, value in headers.items():
            values.setdefault(name.lower(), []).append(value)

        if authorization:
            match = AUTH_HEADER.match(authorization)
            if not match:
                raise S3Failure(400, "AuthorizationHeaderMalformed",
                                f"cannot parse the Authorization header {authorization!r}")
            credential, signed_names, provided = match.groups()
            scope_date = self._scope(credential)
            amz_date = headers.get("x-amz-date", "")
            when = self._check_date(amz_date, scope_date, now)
            if abs(now - when) > MAX_SKEW:
                raise S3Failure(403, "RequestTimeTooSkewed", "The difference between the request "
                                "time and the current time is too large.",
                                RequestTime=amz_date, ServerTime=now.strftime("%Y%m%dT%H%M%SZ"))
            if "x-amz-content-sha256" not in values:
                raise S3Failure(400, "InvalidRequest",
                                "Missing required header for this request: x-amz-content-sha256")
            query = canonical_query(split.query)
            signer = _HeaderSigner(Credentials(self.access_key, self.secret_key), "s3", self.region)
        else:
            params = {}
            for part in split.query.split("&"):
                name, _, value = part.partition("=")
                params[unquote(name)] = unquote(value)
            if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
                raise S3Failure(400, "AuthorizationQueryParametersError",
                                "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
            missing = [p for p in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                                   "X-Amz-SignedHeaders", "X-Amz-Signature") if p not in params]
            if missing:
                raise S3Failure(400, "AuthorizationQueryParametersError",
                                f"the query lacks {', '.join(missing)}")
            credential, signed_names = params["X-Amz-Credential"], params["X-Amz-SignedHeaders"]
            provided, amz_date = params["X-Amz-Signature"], params["X-Amz-Date"]
            scope_date = self._scope(credential)
            when = self._check_date(amz_date, scope_date, now)
            try:
                expires = int(params["X-Amz-Expires"])
            except ValueError:
                raise S3Failure(400, "AuthorizationQueryParametersError",
                                "X-Amz-Expires must be a number of seconds")
            if now > when + datetime.timedelta(seconds=expires):
                raise S3Failure(403, "AccessDenied", "Request has expired",
                                XAmzExpires=str(expires), Expires=amz_date)
            query = canonical_query(split.query, drop=("X-Amz-Signature",))
            signer = _QuerySigner(Credentials(self.access_key, self.secret_key), "s3", self.region)

        names = signed_names.split(";")
        if "host" not in names:
            raise S3Failure(403, "SignatureDoesNotMatch", "SignedHeaders must include host")
        absent = [n for n in names if n not in values]
        if absent:
            raise S3Failure(403, "SignatureDoesNotMatch",
                            f"signed header(s) {', '.join(absent)} are not in the request")
        request = AWSRequest(method=method,
                             url=f"http://{headers.get('host')}{canonical_path(split.path)}"
                                 + (f"?{query}" if query else ""))
        request.context.update(timestamp=amz_date, signed_headers=names, header_values=values)
        if kind == "header":
            # canonical_request() reads the payload mode from this header, as S3 does.
            request.headers["X-Amz-Content-SHA256"] = values["x-amz-content-sha256"][0]
        canonical = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical)
        expected = signer.signature(string_to_sign, request)
        if not hmac.compare_digest(expected, provided):
            raise S3Failure(
                403, "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method.",
                AWSAccessKeyId=self.access_key, StringToSign=string_to_sign,
                SignatureProvided=provided, CanonicalRequest=canonical)
        return kind


class _Rules:
    """Test hooks shared by all handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.drops = {}      # (bucket, key) -> [remaining, after_bytes, how]
        self.pauses = {}     # (bucket, key) -> [remaining, after_bytes]
        self.paused = []     # (bucket, key) of responses now held mid-body
        self.resume = threading.Event()  # set: held responses go on (and no new ones hold)
        self.failures = []   # [method, bucket, key, remaining, status, code]
        self.records = []
        self.public_buckets = set()

    def anonymous_allowed(self, method, bucket):
        """Like a public-read bucket policy: anyone may GET/HEAD (objects and listings)."""
        with self.lock:
            return method in ("GET", "HEAD") and bucket in self.public_buckets

    def take_drop(self, bucket, key):
        """(after_bytes, how) for the next GET of bucket/key to cut off, or None."""
        with self.lock:
            rule = self.drops.get((bucket, key))
            if not rule or rule[0] <= 0:
                return None
            rule[0] -= 1
            return rule[1], rule[2]

    def take_pause(self, bucket, key):
        with self.lock:
            rule = self.pauses.get((bucket, key))
            if not rule or rule[0] <= 0 or self.resume.is_set():
                return None
            rule[0] -= 1
            return rule[1]

    def take_failure(self, method, bucket, key):
        with self.lock:
            for rule in self.failures:
                if rule[3] > 0 and rule[0] in (None, method) and rule[1] in (None, bucket) \
                        and rule[2] in (None, key):
                    rule[3] -= 1
                    return rule[4], rule[5]
        return None


def _error_body(failure: S3Failure, resource: str) -> bytes:
    fields = "".join(f"<{name}>{escape(str(value))}</{name}>"
                     for name, value in failure.fields.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{failure.code}</Code>'
            f"<Message>{escape(failure.message)}</Message>{fields}"
            f"<Resource>{escape(resource)}</Resource><RequestId>{uuid.uuid4().hex[:16]}"
            f"</RequestId></Error>").encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120            # an idle keep-alive connection is closed after this
    server_version = "KennelSigV4Proxy"
    _connection = None       # this client connection's keep-alive connection to s3rver

    def log_message(self, *args):
        pass

    # Verification needs only the headers: answer 100 Continue after it, not before, so a
    # client that waits for 100 never sends the body of a refused request.
    def handle_expect_100(self):
        return True

    def _target(self):
        split = urlsplit(self.path)
        path = unquote(split.path)
        vhost = VHOST.match(self.headers.get("host", ""))
        if vhost:
            return vhost.group(1), path.lstrip("/"), split.query
        bucket, _, key = path.lstrip("/").partition("/")
        return bucket, key, split.query

    def _dispatch(self):
        server = self.server
        bucket, key, query = self._target()
        record = RequestRecord(self.command, bucket, key, query, "",
                               range=self.headers.get("Range", ""),
                               if_match=self.headers.get("If-Match", ""), started=time.monotonic())
        with server.rules.lock:
            server.rules.records.append(record)
        self._body_consumed = self._response_started = False
        body = None
        try:
            record.signed = server.verifier.mechanism(self.path, self.headers)
            server.verifier.verify(self.command, self.path, self.headers)
            if record.signed == "anonymous" and not server.rules.anonymous_allowed(self.command,
                                                                                   bucket):
                raise S3Failure(403, "AccessDenied", "Access Denied (an unsigned request to a "
                                "bucket the test did not make public)")
            mode = self.headers.get("x-amz-content-sha256", "")
            if mode.startswith("STREAMING-"):
                raise S3Failure(501, "NotImplemented", f"x-amz-content-sha256 {mode} (aws-chunked "
                                "bodies) is not supported by the test S3 server; sign the payload "
                                "or send UNSIGNED-PAYLOAD")
            failure = server.rules.take_failure(self.command, bucket, key)
            if failure:
                raise S3Failure(failure[0], failure[1], "injected by the test (fail_next)")
            if self.headers.get("Expect", "").lower() == "100-continue":
                self.send_response_only(100)
                self.end_headers()
            body, length = self._read_body(record)
            try:
                self._forward(body, length, record, bucket, key)
            except (ConnectionError, http.client.HTTPException, OSError) as error:
                if self._response_started:
                    raise  # the client's side broke mid-response: nothing more to say
                raise S3Failure(502, "BadGateway", f"the S3 server behind the proxy: {error}")
        except S3Failure as failure:
            self._answer_error(failure, record)
        finally:
            if body is not None:
                body.close()
        record.finished = time.monotonic()

    def _answer_error(self, failure: S3Failure, record: RequestRecord):
        record.error, record.status = failure.code, failure.status
        waits_for_continue = self.headers.get("Expect", "").lower() == "100-continue"
        if not self._body_consumed:
            if waits_for_continue:
                self.close_connection = True  # the client never sent the body
            else:
                self._drain_body()
        payload = b"" if self.command == "HEAD" else _error_body(failure, self.path)
        self.send_response(failure.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = _dispatch

    def _body_chunks(self):
        """The request body as it arrives (Content-Length or chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, CHUNK))
                    if not data:
                        raise ConnectionError("client closed mid-body")
                    left -= len(data)
                    yield data
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                data = self.rfile.read(min(left, CHUNK))
                if not data:
                    raise ConnectionError("client closed mid-body")
                left -= len(data)
                yield data

    def _drain_body(self):
        self._body_consumed = True
        try:
            for _ in self._body_chunks():
                pass
        except (ConnectionError, ValueError, OSError):
            self.close_connection = True

    def _read_body(self, record):
        self._body_consumed = True
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20, dir=self.server.spool_dir)
        digest = hashlib.sha256()
        length = 0
        try:
            for data in self._body_chunks():
                digest.update(data)
                spool.write(data)
                length += len(data)
        except (ConnectionError, ValueError):
            spool.close()
            self.close_connection = True
            raise S3Failure(400, "IncompleteBody", "the request body ended before its length")
        record.bytes_in = length
        declared = self.headers.get("x-amz-content-sha256", "")
        if re.fullmatch(r"[0-9a-f]{64}", declared) and declared != digest.hexdigest():
            spool.close()
            raise S3Failure(400, "XAmzContentSHA256Mismatch",
                            "The provided 'x-amz-content-sha256' header does not match what was "
                            "computed.", ClientComputedContentSHA256=declared,
                            S3ComputedContentSHA256=digest.hexdigest())
        spool.seek(0)
        return spool, length

    def _upstream(self, fresh=False):
        if fresh or self._connection is None:
            if self._connection is not None:
                self._connection.close()
            self._connection = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port,
                                                          timeout=120)
        return self._connection

    def _send_upstream(self, body, length, record):
        for attempt in (0, 1):
            reused = attempt == 0 and self._connection is not None
            connection = self._upstream(fresh=attempt > 0)
            record.forwarded += 1
            try:
                connection.putrequest(self.command, self.path, skip_host=True,
                                      skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        connection.putheader(name, value)
                if length or self.command in ("PUT", "POST"):
                    connection.putheader("Content-Length", str(length))
                connection.endheaders()
                if length:
                    body.seek(0)
                    while data := body.read(CHUNK):
                        connection.send(data)
                return connection.getresponse()
            except (ConnectionError, http.client.HTTPException, OSError) as error:
                connection.close()
                self._connection = None  # the next request starts on a fresh connection
                # s3rver closes idle keep-alive connections (after 5 s): one that closed just
                # before this request was not read, so it is sent once more on a fresh one.
                # Anything else (a fresh connection, another error) is not retried: the request
                # may have reached s3rver.
                if not (reused and isinstance(error, ConnectionError)):
                    raise
        raise AssertionError("unreachable")

    def _forward(self, body, length, record, bucket, key):
        response = self._send_upstream(body, length, record)
        drop = pause_after = None
        if self.command == "GET" and response.status in (200, 206):
            pause_after = self.server.rules.take_pause(bucket, key)
            if pause_after is None:  # one hook per response: a held one is not also cut off
                drop = self.server.rules.take_drop(bucket, key)
        self._response_started = True
        record.status = response.status
        self.send_response_only(response.status, response.reason)
        self.send_header("Date", self.date_time_string())
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "date":
                self.send_header(name, value)
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304) or \
            100 <= response.status < 200
        chunked = not no_body and length is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        if response.will_close:
            self.close_connection = True
        self.end_headers()
        if no_body:
            response.read()
            return
        total = int(length) if length is not None else 2
        if pause_after is not None:
            self._relay(response, pause_after if pause_after >= 0 else max(1, total // 2),
                        chunked, record)
            self.wfile.flush()
            rules = self.server.rules
            with rules.lock:
                rules.paused.append((bucket, key))
            rules.resume.wait()
            with rules.lock:
                rules.paused.remove((bucket, key))
        if drop is None:
            self._relay(response, None, chunked, record)
            # read1() never marks a Content-Length response complete (CPython 3.11): without
            # this, the next getresponse() on the kept-alive connection raises
            # ResponseNotReady after its request went out.
            response.read()
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            return
        drop_after, how = drop
        self._relay(response, drop_after if drop_after >= 0 else max(1, total // 2), chunked,
                    record)
        record.error = "dropped"
        self._abort(reset=how == "reset")

    def _relay(self, response, limit, chunked, record):
        """Relays the upstream body to the client: all of it (limit None) or `limit` bytes."""
        left = limit
        while left is None or left > 0:
            data = response.read1(CHUNK if left is None else min(CHUNK, left))
            if not data:
                break
            # Counted before the write: the client may have read these bytes (and the test may
            # look at the record) before a write returns.
            record.bytes_out += len(data)
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            except OSError:
                record.bytes_out -= len(data)
                raise
            if left is not None:
                left -= len(data)

    def _abort(self, reset: bool):
        """Ends the client connection mid-response, with a reset (RST: a crashed peer or a
        middlebox) or a clean close (FIN: a server that gives up; only the body's length says
        the response is short), and drops the half-read upstream response."""
        self.wfile.flush()
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        self.close_connection = True
        self._connection.close()
        self._connection = None

    def finish(self):
        super().finish()
        if self._connection is not None:
            self._connection.close()


class SigV4Proxy(ThreadingHTTPServer):
    """Serves on 127.0.0.1:`port` (0: any), verifying and forwarding to 127.0.0.1:upstream_port."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream_port: int, access_key: str, secret_key: str, region: str,
                 spool_dir: str, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.upstream_port, self.spool_dir = upstream_port, spool_dir
        self.verifier = SigV4Verifier(access_key, secret_key, region)
        self.rules = _Rules()
        self._sockets = set()
        self._sockets_lock = threading.Lock()
        self._thread = None

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client went away: normal for a proxy
        super().handle_error(request, client_address)

    def process_request(self, request, client_address):
        with self._sockets_lock:
            self._sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._sockets_lock:
            self._sockets.discard(request)
        super().shutdown_request(request)

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, name="sigv4-proxy",
                                        daemon=True)
        self._thread.start()

    def stop(self):
        """Stops accepting, then closes every open connection (keep-alive ones included)."""
        self.rules.resume.set()  # responses held by pause_next_gets() end
        self.shutdown()
        self.server_close()
        with self._sockets_lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread:
            self._thread.join(timeout=10)

    @property
    def port(self) -> int:
        return self.server_address[1]
