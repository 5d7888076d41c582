"""runrecord reaches any Temporal cluster the way Temporal's own CLI and SDKs do: with nothing but
Temporal's client configuration (a temporal.toml profile, TEMPORAL_* variables).

The cluster here is the dev server behind HAProxy, a TLS-terminating proxy that requires a
client certificate signed by the test's own CA: the CLI, a worker and a mirror reach it only
through the proxy, with the certificate paths in a profile or in TEMPORAL_TLS_* variables.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile

from runrecord.worker import RunRecordPlugin, free_port
from tests import audit_agents
from tests.test_cli import assert_one_line_error, runrecord
from tests.test_dev import _start, _stop


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return key


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    path: Path,
    *,
    usage: ExtendedKeyUsageOID | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA, a server certificate for localhost, and a client certificate, all the test's own."""
    folder = tmp_path / "pki"
    folder.mkdir()
    ca_key = _key(folder / "ca.key")
    ca = _issue("runrecord test CA", ca_key, None, ca_key, folder / "ca.pem")
    server_key = _key(folder / "server.key")
    _issue(
        "localhost",
        server_key,
        ca,
        ca_key,
        folder / "server.pem",
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client_key = _key(folder / "client.key")
    _issue(
        "runrecord-worker",
        client_key,
        ca,
        ca_key,
        folder / "client.pem",
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )


@dataclass(frozen=True)
class Proxy:
    address: str
    log: Path

    def verified_clients(self) -> int:
        """Connections that came with a client certificate the proxy verified."""
        return self.log.read_text(errors="replace").count("client-cert=runrecord-worker")


@pytest.fixture
def mtls_proxy(tmp_path: Path, pki: Pki, temporal_address: str) -> Iterator[Proxy]:
    """HAProxy in front of the dev server: TLS (ALPN h2, as gRPC clients require), and a
    client certificate from the test's CA required. stunnel cannot stand in: it negotiates no
    ALPN, and Temporal's SDK refuses a TLS server that does not say h2."""
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.fail("haproxy not found: install it (apt-get install -y haproxy)", pytrace=False)
    bundle = tmp_path / "pki" / "server-bundle.pem"
    bundle.write_bytes(pki.server_cert.read_bytes() + pki.server_key.read_bytes())
    bundle.chmod(0o600)
    host, _, dev_port = temporal_address.rpartition(":")
    upstream = f"{'127.0.0.1' if host == 'localhost' else host}:{dev_port}"
    port = free_port()
    log = tmp_path / "haproxy.log"
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n"
        "    log stdout format raw local0 info\n"
        "defaults\n"
        "    mode tcp\n"
        "    log global\n"
        "    option logasap\n"
        '    log-format "accepted %ci client-cert=%[ssl_c_s_dn(CN)]"\n'
        "    timeout connect 5s\n"
        "    timeout client 1h\n"
        "    timeout server 1h\n"
        "frontend temporal\n"
        f"    bind 127.0.0.1:{port} ssl crt {bundle} ca-file {pki.ca} verify required alpn h2\n"
        "    default_backend dev_server\n"
        "backend dev_server\n"
        f"    server dev {upstream}\n"
    )
    with log.open("w") as out:
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT, text=True
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"haproxy did not start: {log.read_text()[:500]}", pytrace=False)
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail("haproxy did not listen within 20 s", pytrace=False)
            time.sleep(0.05)
        yield Proxy(f"127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _clean_env(cli_env: dict[str, str]) -> dict[str, str]:
    """The test's environment without the dev server's own address: only the proxy is known."""
    return {k: v for k, v in cli_env.items() if not k.startswith("TEMPORAL_")}


def _profile_env(cli_env: dict[str, str], tmp_path: Path, proxy: Proxy, pki: Pki) -> dict[str, str]:
    """Configuration as a temporal.toml profile, chosen by TEMPORAL_PROFILE."""
    config = tmp_path / "temporal.toml"
    config.write_text(
        "[profile.proxied]\n"
        f'address = "{proxy.address}"\n'
        'namespace = "default"\n'
        "[profile.proxied.tls]\n"
        'server_name = "localhost"\n'
        f'server_ca_cert_path = "{pki.ca}"\n'
        f'client_cert_path = "{pki.client_cert}"\n'
        f'client_key_path = "{pki.client_key}"\n'
    )
    return {
        **_clean_env(cli_env),
        "TEMPORAL_CONFIG_FILE": str(config),
        "TEMPORAL_PROFILE": "proxied",
    }


def _tls_env(cli_env: dict[str, str], proxy: Proxy, pki: Pki) -> dict[str, str]:
    """The same configuration in TEMPORAL_ADDRESS and TEMPORAL_TLS_* variables only."""
    return {
        **_clean_env(cli_env),
        "TEMPORAL_ADDRESS": proxy.address,
        "TEMPORAL_TLS_SERVER_NAME": "localhost",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca),
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.client_cert),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.client_key),
    }


async def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(runrecord, *args, env=env, timeout=90)


async def _waiting(run_id: str, env: dict[str, str]) -> list[dict[str, object]]:
    """The calls of ``run_id`` that `runrecord approvals --json` lists, once it lists one."""
    deadline = time.monotonic() + 60
    while True:
        listed = await _cli("approvals", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        waiting = [r for r in json.loads(listed.stdout) if r["runId"] == run_id]
        if waiting or time.monotonic() > deadline:
            return waiting
        await asyncio.sleep(0.5)


async def _recorded(run_id: str, env: dict[str, str]) -> dict[str, object]:
    """The run as `runrecord show --json` reads it from the records, once it has ended there."""
    deadline = time.monotonic() + 60
    while True:
        shown = await _cli("show", run_id, "--json", env=env)
        if shown.returncode == 0:
            record = json.loads(shown.stdout)[0]
            if record["finalStatus"] == "succeeded" or time.monotonic() > deadline:
                return dict(record)
        elif time.monotonic() > deadline:
            raise AssertionError(shown.stderr)
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("configured_by", ["profile", "environment"])
async def test_cli_worker_and_mirror_reach_an_mtls_cluster_with_temporals_own_settings(
    cli_env: dict[str, str],
    engine: Engine,
    tmp_path: Path,
    pki: Pki,
    mtls_proxy: Proxy,
    configured_by: str,
) -> None:
    if configured_by == "profile":
        env = _profile_env(cli_env, tmp_path, mtls_proxy, pki)
    else:
        env = _tls_env(cli_env, mtls_proxy, pki)
    queue = f"mtls-{uuid.uuid4().hex[:8]}"
    worker, banner = await asyncio.to_thread(
        _start,
        ["worker", "--module", "tests.audit_agents", "--task-queue", queue, "--no-mirror"],
        env,
        "Worker on",
    )
    mirror = None
    try:
        assert f"Worker on {mtls_proxy.address}" in banner, banner + _stop(worker)[1]
        mirror, mirror_banner = await asyncio.to_thread(
            _start, ["mirror", "run", "--poll-interval", "0.2"], env, "Mirroring namespace"
        )
        assert "Mirroring namespace default" in mirror_banner, mirror_banner

        # The agent's own starter connects with the same profile, through Temporal's SDK.
        profile = ClientConfigProfile.load(
            profile=env.get("TEMPORAL_PROFILE"),
            override_env_vars={k: v for k, v in env.items() if k.startswith("TEMPORAL_")},
        )
        client = await Client.connect(
            **profile.to_client_connect_config(), plugins=[RunRecordPlugin()]
        )
        run_id = f"mtls-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            audit_agents.ReleaseDeployer.run, "edge", id=run_id, task_queue=queue
        )

        waiting = await _waiting(run_id, env)
        assert [(w["toolCallId"], w["tool"]) for w in waiting] == [("1", "release")]
        approved = await _cli(
            "approve", run_id, "1", "--reason", "through the proxy", "--as", "alice", env=env
        )
        assert approved.returncode == 0, approved.stderr
        assert await asyncio.wait_for(handle.result(), 60) == "released edge"

        record = await _recorded(run_id, env)
        assert record["finalStatus"] == "succeeded"
        (call,) = record["toolCalls"]  # type: ignore[misc]
        assert call["approvalState"] == "approved"
        assert call["approval"]["decidedBy"] == "alice"
        assert call["status"] == "succeeded"
    finally:
        codes = [await asyncio.to_thread(_stop, p) for p in (worker, mirror) if p is not None]
    for code, stderr in codes:
        assert code == 0, stderr
    # Every one of them came through the proxy, each with the client certificate.
    assert mtls_proxy.verified_clients() >= 5


async def test_without_the_client_certificate_the_cluster_refuses_in_one_line(
    cli_env: dict[str, str], pki: Pki, mtls_proxy: Proxy
) -> None:
    env = {
        k: v
        for k, v in _tls_env(cli_env, mtls_proxy, pki).items()
        if k not in ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH")
    }
    for args in (("approvals",), ("approve", "some-run", "1", "--reason", "ok")):
        proc = await _cli(*args, env=env)
        assert_one_line_error(proc, f"cannot reach Temporal at {mtls_proxy.address}")
    assert mtls_proxy.verified_clients() == 0


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ({"TEMPORAL_PROFILE": "no-such-profile"}, "Profile 'no-such-profile' not found"),
        ({"TEMPORAL_CONFIG_FILE": "/nonexistent/temporal.toml"}, "no such file"),
        ({"TEMPORAL_TLS_CLIENT_CERT_PATH": "/nonexistent/client.pem"}, "cannot read TLS file"),
        ({"TEMPORAL_ADDRESS": "not a host"}, "is not host:port"),
    ],
)
def test_a_temporal_configuration_that_cannot_work_is_one_line(
    cli_env: dict[str, str],
    tmp_path: Path,
    pki: Pki,
    setting: dict[str, str],
    needle: str,
) -> None:
    proxy = Proxy("127.0.0.1:1", tmp_path / "unused.log")
    env = {**_profile_env(cli_env, tmp_path, proxy, pki), **setting}
    for args in (("approvals",), ("worker", "--no-mirror"), ("mirror", "verify", "some-run")):
        assert_one_line_error(runrecord(*args, env=env, timeout=60), needle)
