"""Hosts made of Linux network namespaces, for tests of workers and ranks on "other machines".

n namespaces, each with `lo` up and one veth pair whose other end is on a bridge in the root
namespace; addresses in a private /24 chosen at random among 10.200-249.x.0/24 ranges not in
use here: the bridge is .1 (the root namespace, where test services can listen), the
namespaces .2, .3, ... Namespaces get no default route, so nothing they send can leave that
/24. Names carry a random tag (parallel runs do not collide); teardown kills every process in
the namespaces, then deletes them and the bridge.
"""
import ipaddress
import os
import random
import signal
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field

from .common import Cleanup, ServiceUnavailable, new_tag, require_binaries, require_root, stop_process

SERVICE = "network namespaces"


@dataclass
class NetnsHost:
    name: str       # the namespace, for `ip netns exec NAME`
    address: str    # its address on the bridge


@dataclass
class NetnsHosts:
    hosts: list
    host_address: str   # the root namespace's address on the bridge (services listen here)
    cidr: str           # the /24 (trust it in pg_hba.conf...)
    bridge: str
    _processes: list = field(default_factory=list)

    @property
    def names(self) -> list:
        return [h.name for h in self.hosts]

    @property
    def addresses(self) -> list:
        return [h.address for h in self.hosts]

    def _name(self, ns) -> str:
        return self.hosts[ns].name if isinstance(ns, int) else ns

    def _argv(self, ns, argv) -> list:
        return ["ip", "netns", "exec", self._name(ns), *map(str, argv)]

    def run(self, ns, argv, **kwargs) -> subprocess.CompletedProcess:
        """subprocess.run of argv inside namespace `ns` (an index or a name)."""
        return subprocess.run(self._argv(ns, argv), **kwargs)

    def popen(self, ns, argv, **kwargs) -> subprocess.Popen:
        """subprocess.Popen of argv inside `ns`; teardown stops it if the test did not."""
        process = subprocess.Popen(self._argv(ns, argv), **kwargs)
        self._processes.append(process)
        return process


def _ip(*args, check=True):
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _subnets_in_use() -> list:
    """Every IPv4 network on an interface or in a routing table here (default routes aside)."""
    nets = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        nets.append(ipaddress.ip_network(line.split()[3], strict=False))
    route_types = ("unicast", "local", "broadcast", "multicast", "blackhole", "unreachable",
                   "prohibit", "throw", "nat", "anycast")
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        words = line.split()
        if words and words[0] in route_types:
            words = words[1:]
        if not words or words[0] == "default":
            continue
        try:
            nets.append(ipaddress.ip_network(words[0], strict=False))
        except ValueError:
            continue
    return nets


def _pick_subnet() -> ipaddress.IPv4Network:
    used = _subnets_in_use()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(200, 249)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(other) for other in used):
            return net
    raise ServiceUnavailable(SERVICE, "no free 10.200-249.x.0/24 subnet", "free one")


@contextmanager
def network_namespaces(count: int):
    """Yields NetnsHosts with `count` namespaces on one bridge."""
    if not 1 <= count <= 200:
        raise ValueError(f"count {count}: between 1 and 200 namespaces")
    require_root(SERVICE)
    require_binaries(SERVICE, "ip")
    tag = new_tag()
    bridge = f"knbr{tag}"
    cleanup = Cleanup()
    net = _pick_subnet()
    addresses = list(net.hosts())
    hosts = NetnsHosts([], str(addresses[0]), str(net), bridge)
    try:
        probe = _ip("link", "add", bridge, "type", "bridge", check=False)
        if probe.returncode != 0:
            raise ServiceUnavailable(SERVICE, f"cannot make a bridge: {probe.stderr.strip()}",
                                     "run as root on a kernel with bridge and veth support")
        cleanup.add(_ip, "link", "del", bridge, check=False)
        # Bridged frames must not go through the root namespace's iptables (Docker's FORWARD
        # DROP would eat them); refused on kernels without br_netfilter, which is fine.
        _ip("link", "set", bridge, "type", "bridge", "nf_call_iptables", "0", check=False)
        _ip("addr", "add", f"{addresses[0]}/{net.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for index in range(count):
            name = f"kennel-{tag}-{index}"
            probe = _ip("netns", "add", name, check=False)
            if probe.returncode != 0:
                raise ServiceUnavailable(SERVICE, f"ip netns add: {probe.stderr.strip()}",
                                         "run as root (CAP_SYS_ADMIN) where /run/netns is writable")
            cleanup.add(_delete_namespace, name)
            outside = f"knv{tag}h{index}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", name)
            cleanup.add(_ip, "link", "del", outside, check=False)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            address = str(addresses[index + 1])
            _ip("-n", name, "addr", "add", f"{address}/{net.prefixlen}", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "link", "set", "lo", "up")
            hosts.hosts.append(NetnsHost(name, address))
        cleanup.add(_stop_all, hosts._processes)
        yield hosts
    finally:
        cleanup.run()


def _stop_all(processes):
    for process in processes:
        stop_process(process, grace=3)


def _delete_namespace(name: str):
    """Kills whatever still runs inside (a namespace with processes outlives `ip netns del`)."""
    for _ in range(20):
        pids = _ip("netns", "pids", name, check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    _ip("netns", "del", name)
