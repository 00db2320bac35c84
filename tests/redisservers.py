"""Managed-Redis shapes on loopback, for the Redis store's tests: a TLS server (certificates made
here, mutual TLS on), a 3-primary Redis Cluster, and a primary + replica watched by 3 Sentinels.

Each runs Debian's ``redis-server`` (built with TLS; the same binary is the Sentinel) on free
ports in a temporary folder, persisting every write (``appendfsync always``), so a node killed
and restarted on its folder comes back with what it acknowledged. A test without
``redis-server`` (or ``redis-cli`` for the cluster) is skipped, saying why.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.stores.conftest import free_port

NO_SERVER = "no redis-server on the PATH: the managed-Redis tests start their own"
NO_CLI = "no redis-cli on the PATH: it creates the test's Redis Cluster"
#: Persist every acknowledged write: a SIGKILLed node restarts with all of it.
DURABLE = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]


def binary(name: str, reason: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(reason)
    return found


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def bus_safe_port() -> int:
    """A free port below 55536, so that a cluster node's bus port (+10000) is a port too."""
    while (port := free_port()) > 55_535:
        pass
    return port


class Node:
    """One redis-server (or Sentinel) process: started, killed, paused, restarted on its folder."""

    def __init__(self, folder: Path, args: list[str], *, conf: str = "", sentinel: bool = False) -> None:
        self.binary = binary("redis-server", NO_SERVER)
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.conf = conf
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        if self.conf:  # a config file: Sentinel rewrites its own, so each gets a fresh copy once
            path = self.folder / "redis.conf"
            if not path.exists():
                path.write_text(self.conf)
            return [self.binary, str(path), *self.args, *(["--sentinel"] if self.sentinel else [])]
        return [self.binary, *self.args, "--dir", str(self.folder)]

    def start(self, ready: Callable[[], bool]) -> None:
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 (the process keeps it)
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=log, cwd=self.folder)
        log.close()

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"redis-server {self.args} exited: {tail}")
            return ready()

        wait_for(up, f"redis-server {' '.join(self.args[:4])}")

    def kill(self) -> None:
        """SIGKILL: nothing saved at exit; only what was fsynced survives."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def _client(port: int, **options: Any) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2, **options)


def _answers(port: int, **options: Any) -> bool:
    import redis

    client = _client(port, **options)
    try:
        return bool(client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        client.close()


# -- TLS --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """PEM files: a CA, a server certificate for 127.0.0.1 / localhost signed by it, a client
    certificate signed by it (mutual TLS), and a second CA that signed none of them."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def make_certs(folder: Path) -> Certs:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def save(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key_path.write_bytes(pem)
        return cert_path, key_path

    def issue(
        common: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool, **ext: Any
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        signer_name, signer_key = issuer or (name(common), key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(signer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            usage = dict.fromkeys(
                ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"), False
            )
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                    **usage,
                ),
                critical=True,
            )
        if "san" in ext:
            builder = builder.add_extension(x509.SubjectAlternativeName(ext["san"]), critical=False)
        if "eku" in ext:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ext["eku"]]), critical=False)
        return key, builder.sign(signer_key, hashes.SHA256())

    ca_key, ca_cert = issue("tollgate test CA", None, True)
    ca_path, _ = save("ca", ca_key, ca_cert)
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    signer = (ca_cert.subject, ca_key)
    server = save("server", *issue("127.0.0.1", signer, False, san=san, eku=ExtendedKeyUsageOID.SERVER_AUTH))
    client = save("client", *issue("tollgate client", signer, False, eku=ExtendedKeyUsageOID.CLIENT_AUTH))
    other, _ = save("other-ca", *issue("some other CA", None, True))
    return Certs(ca_path, server[0], server[1], client[0], client[1], other)


@dataclass
class TLSServer:
    node: Node
    port: int
    certs: Certs

    def url(self, *, client_cert: bool = True, ca: Path | None = None) -> str:
        query = f"ssl_ca_certs={ca or self.certs.ca}"
        if client_cert:
            query += f"&ssl_certfile={self.certs.client_cert}&ssl_keyfile={self.certs.client_key}"
        return f"rediss://127.0.0.1:{self.port}/0?{query}"


@contextmanager
def tls_server(folder: Path) -> Iterator[TLSServer]:
    """A redis-server that speaks only TLS and asks every client for a certificate."""
    certs = make_certs(folder / "certs")
    port = free_port()
    args = ["--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port), *DURABLE]
    args += ["--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key)]
    args += ["--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "yes"]
    node = Node(folder / "tls", args)
    tls = {"ssl": True, "ssl_ca_certs": str(certs.ca), "ssl_certfile": str(certs.client_cert)}
    tls["ssl_keyfile"] = str(certs.client_key)
    try:
        node.start(lambda: _answers(port, **tls))
        yield TLSServer(node, port, certs)
    finally:
        node.stop()


# -- Redis Cluster ----------------------------------------------------------------------------


@dataclass
class Cluster:
    nodes: list[Node]
    ports: list[int]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def client(self, port: int) -> Any:
        return _client(port)

    def owner(self, key: str) -> int:
        """The port of the primary that serves ``key``'s slot."""
        client = self.client(self.ports[0])
        try:
            slot = client.execute_command("CLUSTER KEYSLOT", key)
            for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
        finally:
            client.close()
        raise AssertionError(f"no node serves {key!r}")

    def healthy(self) -> bool:
        for port in self.ports:
            client = self.client(port)
            try:
                if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    return False
            except Exception:
                return False
            finally:
                client.close()
        return True

    def kill(self, port: int) -> None:
        self.nodes[self.ports.index(port)].kill()

    def restart(self, port: int) -> None:
        """Start a killed node again on its folder (its nodes.conf and AOF), then wait until every
        node reports the cluster ok."""
        self.nodes[self.ports.index(port)].start(lambda: _answers(port))
        wait_for(self.healthy, "cluster_state:ok on every node after a restart")


@contextmanager
def redis_cluster(folder: Path, primaries: int = 3) -> Iterator[Cluster]:
    """``primaries`` cluster-enabled redis-servers, slots split evenly, no replicas."""
    cli = binary("redis-cli", NO_CLI)
    with ExitStack() as stack:
        nodes, ports = [], []
        for i in range(primaries):
            port, bus = bus_safe_port(), free_port()
            args = ["--bind", "127.0.0.1", "--port", str(port), "--cluster-enabled", "yes"]
            args += ["--cluster-port", str(bus), "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-node-timeout", "1000", *DURABLE]
            node = Node(folder / f"node{i}", args)
            stack.callback(node.stop)
            node.start(lambda port=port: _answers(port))  # type: ignore[misc]
            nodes.append(node)
            ports.append(port)
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
        made = subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True, timeout=60
        )
        assert made.returncode == 0, made.stdout + made.stderr
        cluster = Cluster(nodes, ports)
        wait_for(cluster.healthy, "cluster_state:ok on every node")
        yield cluster


# -- Sentinel ---------------------------------------------------------------------------------


@dataclass
class Sentinels:
    service: str
    data: list[Node]  # the first primary, then its replica
    ports: list[int]
    sentinels: list[Node]
    sentinel_ports: list[int]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def primary(self) -> int:
        """The primary's port, as the first Sentinel reports it."""
        client = _client(self.sentinel_ports[0])
        try:
            _, port = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)
            return int(port)
        finally:
            client.close()

    def kill(self, port: int) -> None:
        self.data[self.ports.index(port)].kill()

    def replicated(self) -> None:
        """Wait until the replica has every write the primary acknowledged."""
        client = _client(self.primary())
        try:
            assert client.execute_command("WAIT", 1, 5000) == 1
        finally:
            client.close()

    def failed_over(self, old: int) -> bool:
        """Every Sentinel names a new primary, and that server says it is one."""
        for port in self.sentinel_ports:
            client = _client(port)
            try:
                _, now = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)
            finally:
                client.close()
            if int(now) == old:
                return False
        server = _client(int(now))
        try:
            return bool(server.info("replication")["role"] == "master")
        except Exception:
            return False
        finally:
            server.close()


@contextmanager
def redis_sentinels(folder: Path, service: str = "tollgate") -> Iterator[Sentinels]:
    """A primary, one replica, and 3 Sentinels (quorum 2) that fail over 1 s after the primary
    stops answering."""
    with ExitStack() as stack:
        primary, replica = free_port(), free_port()
        data = []
        for name, port, extra in (
            ("primary", primary, []),
            ("replica", replica, ["--replicaof", "127.0.0.1", str(primary)]),
        ):
            node = Node(folder / name, ["--bind", "127.0.0.1", "--port", str(port), *DURABLE, *extra])
            stack.callback(node.stop)
            node.start(lambda port=port: _answers(port))  # type: ignore[misc]
            data.append(node)

        def replica_online() -> bool:
            info = _client(primary)
            try:
                slave = info.info("replication").get("slave0")
                return isinstance(slave, dict) and slave.get("state") == "online"
            finally:
                info.close()

        wait_for(replica_online, "the replica to sync")
        sentinels, sentinel_ports = [], []
        for i in range(3):
            port = free_port()
            conf = (
                f"bind 127.0.0.1\nport {port}\ndir {folder / f'sentinel{i}'}\n"
                f"sentinel monitor {service} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {service} 1000\n"
                f"sentinel failover-timeout {service} 5000\n"
                f"sentinel parallel-syncs {service} 1\n"
            )
            node = Node(folder / f"sentinel{i}", [], conf=conf, sentinel=True)
            stack.callback(node.stop)
            node.start(lambda port=port: _answers(port))  # type: ignore[misc]
            sentinels.append(node)
            sentinel_ports.append(port)

        def all_known() -> bool:
            for port in sentinel_ports:
                client = _client(port)
                try:
                    others = client.execute_command("SENTINEL SENTINELS", service)
                    replicas = client.execute_command("SENTINEL REPLICAS", service)
                except Exception:
                    return False
                finally:
                    client.close()
                if len(others) < 2 or not replicas:
                    return False
            return True

        wait_for(all_known, "the Sentinels to find each other and the replica")
        yield Sentinels(service, data, [primary, replica], sentinels, sentinel_ports)
