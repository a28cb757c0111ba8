"""Real services for integration tests, started and stopped by the tests themselves.

Every service here is the real thing from Debian (or a pinned npm package), run on loopback or
inside network namespaces the test makes, in a private temp dir, and removed afterwards even
when the test fails: daemons killed (processes they leave behind are found by a mark in their
environment), namespaces and bridges deleted, dirs removed. If a service cannot start, its
fixture skips the test with the reason and the command that fixes it, except under CI=true,
where that is a failure. Each fixture has a context manager twin (service_kit.*) for scripts
and benchmarks; outside pytest those raise ServiceUnavailable instead. Needs root (as CI runs)
and Debian's /usr/bin/python3 (pytest, boto3, selenium). Implementations: service_kit/.

postgres -> Postgres                     (function scope; server shared by the session)
    A fresh database on a session-wide PostgreSQL 15 (initdb/postgres run as the `postgres`
    user, data and socket dir in a temp dir, 127.0.0.1 at a free port, trust auth, fsync off).
    .url = postgresql://postgres@127.0.0.1:PORT/DB (what `kennel ... --store` takes),
    .psql(sql) -> tuples-only text, .query(sql) -> [tuple], .create_database(name).
make_postgres(database=, listen=(), trust=(), settings={}) -> Postgres
    A server of the test's own, e.g. reachable from namespaces:
        net = netns_hosts(2)
        pg = make_postgres(listen=[net.host_address], trust=[net.cidr])
        net.popen(0, [kennel, "tune", "worker", "--store", pg.url_for(pg.database,
                  host=net.host_address)])
postgres_server -> Postgres               (session scope) the shared server itself.

slurm -> SlurmCluster                     (function scope)
    A one-node Slurm 22.05 cluster with munge, no systemd, on loopback: node `hostname -s`
    with this machine's CPUs and memory, partition "kennel". .env (SLURM_CONF and a process
    mark) is what a Kennel process needs to submit jobs; .sbatch(script_text, *args) -> id,
    .job_state(id) ("PENDING", "RUNNING", "COMPLETED", "CANCELLED", "TIMEOUT"...; None when
    forgotten: MinJobAge is 30 s), .wait_state(id, states, timeout), .scancel(id),
    .run("scontrol", "requeue", id), .output(id), .logs(). A requeued job restarts after
    ~11 s; a --time=1 job ends TIMEOUT after 60-90 s (slurmctld checks limits every 30 s).

s3 -> S3                                  (function scope)
    s3rver 3.7.1 (npm, pinned in scripts/s3rver/, installed by scripts/services.sh) behind a
    proxy that verifies every SigV4 signature with botocore and answers 403
    SignatureDoesNotMatch (with CanonicalRequest/StringToSign) like S3. .endpoint (the proxy,
    path-style), .access_key, .secret_key, .region, .env() (AWS_* for a Kennel process),
    .make_bucket(name, public=False), .boto3_client(secret_key=None, **botocore_config).
    Hooks: .drop_next_gets(bucket, key, times, after_bytes, how="reset"|"close") cuts the
    connection mid-body (RST, or a clean FIN that only Content-Length reveals);
    .pause_next_gets(bucket, key, times, after_bytes) holds responses mid-body until
    .release_paused() (.paused lists the held ones: kill a client mid-download at a known
    point); .fail_next(times, method, bucket, key, status=503, code="SlowDown"); .requests
    lists every request (method, bucket, key, query, signed, status, error, bytes, range,
    if_match) so a test can assert e.g. that a second run downloaded nothing, or resumed
    with a Range; .clear_requests().

netns_hosts(n) -> NetnsHosts              (function-scoped factory; call it once or more)
    n network namespaces on a Linux bridge: .hosts[i].name/.address, .names, .addresses,
    .host_address (the root namespace's .1 on the bridge: listen there to serve them),
    .cidr, .run(ns, argv, **kw) and .popen(ns, argv, **kw) (ns: index or name). No default
    route: traffic from the namespaces cannot leave their /24.

chromium -> Browser                       (function scope)
    Headless Debian chromium via Selenium + /usr/bin/chromedriver (never downloaded), fresh
    profile, nothing can leave loopback (resolver rules map every name but localhost to
    NOTFOUND, and non-loopback URLs go to a dead proxy). .driver (Selenium), .get(url),
    .network_requests() (url, method, status, error, remote_ip of every request),
    .outside_requests() (the non-loopback ones: assert it is empty), .console_messages(level),
    .screenshot(path).

Self-test: tests/integration/test_services.py (one real operation per service).
"""
import uuid
from contextlib import ExitStack

import pytest

from service_kit.chromium import Browser, chromium_browser
from service_kit.common import ServiceUnavailable, in_ci
from service_kit.netns import NetnsHosts, network_namespaces
from service_kit.postgres import Postgres, postgres_server as start_postgres
from service_kit.s3 import S3, s3_server
from service_kit.slurm import SlurmCluster, slurm_cluster

__all__ = [
    # fixtures (conftest.py imports these names)
    "postgres_server", "postgres", "make_postgres", "slurm", "s3", "netns_hosts", "chromium",
    # context managers and types, for scripts and benchmarks
    "ServiceUnavailable", "start_postgres", "Postgres", "slurm_cluster", "SlurmCluster",
    "s3_server", "S3", "network_namespaces", "NetnsHosts", "chromium_browser", "Browser",
]


def _unavailable(error: ServiceUnavailable):
    if in_ci():
        pytest.fail(f"{error} (CI=true: a service that cannot start is a failure)",
                    pytrace=False)
    pytest.skip(str(error))


def _enter(stack: ExitStack, context_manager):
    """Enters a service's context manager; a service that cannot start skips (fails in CI)."""
    try:
        return stack.enter_context(context_manager)
    except ServiceUnavailable as error:
        failure = error
    _unavailable(failure)  # outside the except block: no chained traceback in the report


@pytest.fixture(scope="session")
def postgres_server():
    with ExitStack() as stack:
        yield _enter(stack, start_postgres(database="postgres"))


@pytest.fixture
def postgres(postgres_server):
    name = f"test_{uuid.uuid4().hex[:12]}"
    database = postgres_server.create_database(name)
    yield database
    postgres_server.drop_database(name)


@pytest.fixture
def make_postgres():
    with ExitStack() as stack:
        yield lambda **options: _enter(stack, start_postgres(**options))


@pytest.fixture
def slurm():
    with ExitStack() as stack:
        yield _enter(stack, slurm_cluster())


@pytest.fixture
def s3():
    with ExitStack() as stack:
        yield _enter(stack, s3_server())


@pytest.fixture
def netns_hosts():
    with ExitStack() as stack:
        yield lambda count: _enter(stack, network_namespaces(count))


@pytest.fixture
def chromium():
    with ExitStack() as stack:
        yield _enter(stack, chromium_browser())
