"""A throwaway PostgreSQL server (Debian's postgresql 15) run by the test itself.

initdb and postgres refuse to run as root, so as root they run as the `postgres` user; data
and unix-socket dirs live in a private temp dir owned by that user. The postmaster runs in
the foreground as our child (so it is reaped); it listens on 127.0.0.1 at a free port, plus
any extra addresses the test names (a bridge address that network namespaces reach), and
pg_hba.conf trusts 127.0.0.1 plus the CIDRs the test names. Durability is off (fsync,
synchronous_commit, full_page_writes): the data lives as long as the test.
"""
import os
import pwd
import re
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .common import (TAG_VARIABLE, Cleanup, ServiceUnavailable, as_user, free_port, kill_tagged,
                     new_tag, private_dir, remove_tree, require_binaries, stop_process, tail,
                     wait_until)

PG_BIN = Path(os.environ.get("KENNEL_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVICE = "PostgreSQL"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass
class Postgres:
    """A running server and one database on it. `url` is what `--store` takes."""
    host: str
    port: int
    database: str
    user: str
    directory: Path
    log_path: Path

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str, host: str = None) -> str:
        return f"postgresql://{self.user}@{host or self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = None) -> str:
        """Runs SQL with psql (stops at the first error); returns tuples-only, unaligned output
        (columns separated by '|')."""
        result = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.url_for(database or self.database), "-c", sql],
            capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}) on: {sql}\n{result.stderr}")
        return result.stdout.strip()

    def query(self, sql: str, database: str = None) -> list:
        """Rows of a query as tuples of strings."""
        out = self.psql(sql, database)
        return [tuple(line.split("|")) for line in out.splitlines()] if out else []

    def create_database(self, name: str) -> "Postgres":
        if not _IDENTIFIER.match(name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        self.psql(f"CREATE DATABASE {name}", database="postgres")
        return Postgres(self.host, self.port, name, self.user, self.directory, self.log_path)

    def drop_database(self, name: str):
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", database="postgres")


def _run_as_postgres(argv, what: str, cwd: Path):
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                 "LC_ALL": "C.UTF-8", "HOME": str(cwd)},
                            **as_user("postgres"))
    if result.returncode != 0:
        raise ServiceUnavailable(SERVICE, f"{what} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}",
                                 "check the message above; initdb needs a writable temp dir")


@contextmanager
def postgres_server(database: str = "kennel", listen=(), trust=(), settings: dict = None):
    """Starts a server with one database and yields a Postgres; stops and deletes it after.

    listen: extra addresses to listen on besides 127.0.0.1 (e.g. a namespace bridge's .1)
    trust: CIDRs trusted in pg_hba.conf besides loopback (e.g. the namespaces' /24)
    settings: extra postgresql.conf settings (name -> value, written as-is)
    """
    require_binaries(SERVICE, str(PG_BIN / "initdb"), str(PG_BIN / "postgres"),
                     str(PG_BIN / "pg_ctl"), str(PG_BIN / "psql"))
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceUnavailable(SERVICE, "there is no `postgres` user", "apt-get install postgresql")
    cleanup = Cleanup()
    tag = new_tag()
    root = private_dir("pg", owner="postgres")
    cleanup.add(remove_tree, root)
    try:
        data, sockets, log_path = root / "data", root / "run", root / "postgres.log"
        _run_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--locale=C", "--no-sync"], "initdb", root)
        _run_as_postgres(["mkdir", "-m", "0700", str(sockets)], "mkdir", root)
        port = free_port()
        config = {
            "listen_addresses": "'" + ",".join(["127.0.0.1", *listen]) + "'",
            "port": str(port),
            "unix_socket_directories": f"'{sockets}'",
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            "max_connections": "200",
            **(settings or {}),
        }
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\n# written by tests/integration/service_kit/postgres.py\n")
            conf.writelines(f"{name} = {value}\n" for name, value in config.items())
        with open(data / "pg_hba.conf", "a") as hba:
            hba.writelines(f"host all all {cidr} trust\n" for cidr in trust)

        log = open(log_path, "ab")
        cleanup.add(log.close)
        server = subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(data)], cwd=root,
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8",
                                       TAG_VARIABLE: tag}, **as_user("postgres"))
        cleanup.add(kill_tagged, tag)
        cleanup.add(_stop_postgres, server, data, root)
        pg = Postgres("127.0.0.1", port, "postgres", "postgres", root, log_path)

        def ready():
            if server.poll() is not None:
                raise ServiceUnavailable(SERVICE, f"postgres exited {server.returncode}:\n"
                                         f"{tail(log_path)}", "see the log above")
            probe = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1",
                                    "-p", str(port)], capture_output=True)
            return probe.returncode == 0
        try:
            wait_until(ready, 30, "postgres to accept connections")
        except TimeoutError as error:
            raise ServiceUnavailable(SERVICE, f"{error}\n{tail(log_path)}", "see the log above")
        pg = pg.create_database(database) if database != "postgres" else pg
        yield pg
    finally:
        cleanup.run()


def _stop_postgres(server: subprocess.Popen, data: Path, root: Path):
    if server.poll() is None:
        subprocess.run([str(PG_BIN / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate",
                        "-w", "-t", "10"], capture_output=True, cwd=root, timeout=30,
                       **as_user("postgres"))
    stop_process(server, grace=10)
