"""The tls probe against real TLS servers with certificates made by trustme."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from agent.probe_spec import RunContext
from probes._x509 import parse_certificate
from probes.tls import TlsSpec, run
from tests.probes.conftest import StartTcp, server_context, silent, write_ca


def spec(port: int, **fields: Any) -> TlsSpec:
    return TlsSpec.model_validate(
        {"name": "cert", "kind": "tls", "host": "127.0.0.1", "port": port, **fields}
    )


def in_days(days: float) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


async def handshake_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # the probe hangs up after the handshake


async def serve(tcp_server: StartTcp, cert: trustme.LeafCert) -> int:
    return await tcp_server(handshake_only, ssl=server_context(cert))


async def test_reads_a_verified_certificate(
    ctx: RunContext, tcp_server: StartTcp, ca: trustme.CA, tmp_path: Path
) -> None:
    not_after = in_days(10)
    cert = ca.issue_cert("127.0.0.1", common_name="shop.test", not_after=not_after)
    port = await serve(tcp_server, cert)
    result = await run(spec(port, ca_file=write_ca(ca, tmp_path / "ca.pem")), ctx)
    assert result.error is None
    assert result.values["days_left"] == pytest.approx(10, abs=0.01)
    assert result.values["not_after"] == not_after.isoformat()
    assert result.values["subject"] == "shop.test"
    # trustme's CA has no CN, so the issuer is told by its O and OU.
    assert result.values["issuer"].startswith("O=trustme")
    assert ", OU=Testing CA" in result.values["issuer"]
    assert result.latency_ms is not None and result.latency_ms > 0


async def test_a_relative_ca_file_is_read_from_the_base_dir(
    ctx: RunContext, tcp_server: StartTcp, ca: trustme.CA
) -> None:
    write_ca(ca, ctx.base_dir / "ca.pem")
    port = await serve(tcp_server, ca.issue_cert("127.0.0.1"))
    result = await run(spec(port, ca_file="ca.pem"), ctx)
    assert result.error is None


async def test_an_expired_certificate_fails_verification(
    ctx: RunContext, tcp_server: StartTcp, ca: trustme.CA, tmp_path: Path
) -> None:
    cert = ca.issue_cert("127.0.0.1", not_before=in_days(-30), not_after=in_days(-2))
    port = await serve(tcp_server, cert)
    result = await run(spec(port, ca_file=write_ca(ca, tmp_path / "ca.pem")), ctx)
    assert (
        result.error == "TLS handshake failed: certificate verify failed: certificate has expired"
    )


async def test_without_verification_an_expired_certificate_is_still_read(
    ctx: RunContext, tcp_server: StartTcp, ca: trustme.CA
) -> None:
    cert = ca.issue_cert("127.0.0.1", not_before=in_days(-30), not_after=in_days(-2))
    port = await serve(tcp_server, cert)
    result = await run(spec(port, verify=False), ctx)
    assert result.error is None
    assert result.values["days_left"] == pytest.approx(-2, abs=0.01)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        pytest.param({}, "unable to get local issuer certificate", id="untrusted-ca"),
        pytest.param(
            {"server_name": "other.test", "trusted": True}, "Hostname mismatch", id="wrong-name"
        ),
    ],
)
async def test_verification_failures(
    ctx: RunContext,
    tcp_server: StartTcp,
    ca: trustme.CA,
    tmp_path: Path,
    fields: dict[str, Any],
    reason: str,
) -> None:
    port = await serve(tcp_server, ca.issue_cert("127.0.0.1"))
    if fields.pop("trusted", False):
        fields["ca_file"] = write_ca(ca, tmp_path / "ca.pem")
    result = await run(spec(port, **fields), ctx)
    assert result.error is not None
    assert result.error.startswith("TLS handshake failed: certificate verify failed: ")
    assert reason in result.error


async def test_sni_is_sent_and_verified(
    ctx: RunContext, tcp_server: StartTcp, ca: trustme.CA, tmp_path: Path
) -> None:
    seen: list[str | None] = []

    def remember(sock: object, name: str | None, context: object) -> None:
        seen.append(name)

    context = server_context(ca.issue_cert("shop.test"))
    context.sni_callback = remember
    port = await tcp_server(handshake_only, ssl=context)
    probe = spec(port, server_name="shop.test", ca_file=write_ca(ca, tmp_path / "ca.pem"))
    result = await run(probe, ctx)
    assert result.error is None
    assert seen == ["shop.test"]


async def test_a_plain_tcp_server_fails_the_handshake(
    ctx: RunContext, tcp_server: StartTcp
) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        await writer.drain()

    port = await tcp_server(plain)
    result = await run(spec(port, verify=False), ctx)
    assert result.error is not None
    assert result.error.startswith("TLS handshake failed: ")


async def test_a_silent_server_times_out(ctx: RunContext, tcp_server: StartTcp) -> None:
    port = await tcp_server(silent)
    result = await run(spec(port, timeout="200ms"), ctx)
    assert result.error == "timed out after 200ms"


async def test_a_closed_port_is_refused(ctx: RunContext, closed_port: int) -> None:
    result = await run(spec(closed_port), ctx)
    assert result.error == f"connect refused 127.0.0.1:{closed_port}"


async def test_a_missing_ca_file_is_reported(ctx: RunContext, closed_port: int) -> None:
    result = await run(spec(closed_port, ca_file="missing.pem"), ctx)
    assert result.error is not None
    assert result.error.startswith("cannot load ca_file missing.pem")


# --- the DER reader, checked against the cryptography package (a dev dependency) ---


@pytest.mark.parametrize(
    ("not_after", "common_name"),
    [
        pytest.param(datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC), "shop.test", id="utctime"),
        pytest.param(
            datetime(2061, 1, 2, 3, 4, 5, tzinfo=UTC), "shop.test", id="generalizedtime-after-2049"
        ),
        pytest.param(datetime(2031, 5, 6, tzinfo=UTC), "bücher.test", id="utf8-cn"),
        pytest.param(datetime(2031, 5, 6, tzinfo=UTC), None, id="no-cn"),
    ],
)
def test_parse_certificate_agrees_with_cryptography(
    ca: trustme.CA, not_after: datetime, common_name: str | None
) -> None:
    leaf = ca.issue_cert("shop.test", common_name=common_name, not_after=not_after)
    pem = leaf.cert_chain_pems[0].bytes()
    reference = x509.load_pem_x509_certificate(pem)
    info = parse_certificate(reference.public_bytes(encoding=Encoding.DER))

    assert info.not_after == reference.not_valid_after_utc == not_after
    assert info.not_before == reference.not_valid_before_utc
    subject_cn = reference.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common_name is not None:
        assert info.subject == subject_cn[0].value == common_name
    else:
        org = reference.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        assert not subject_cn
        assert info.subject.startswith(f"O={org!s}")


def test_parse_certificate_rejects_a_truncated_certificate(ca: trustme.CA) -> None:
    pem = ca.issue_cert("shop.test").cert_chain_pems[0].bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(encoding=Encoding.DER)
    for cut in (0, 1, 2, 10, len(der) // 2):
        with pytest.raises(ValueError, match="malformed certificate"):
            parse_certificate(der[:cut])


@given(st.binary(max_size=300))
def test_parse_certificate_raises_only_value_error_on_garbage(data: bytes) -> None:
    with contextlib.suppress(ValueError):  # anything else (IndexError, ...) fails the test
        parse_certificate(data)
