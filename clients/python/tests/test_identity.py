"""SVID rotation: rewritten files, and a test SPIFFE Workload API.

After a rotation the client presents the new certificate (a new mTLS
channel), and the token holder fetches a token bound to it: the old token
is denied over the new certificate (`token-not-bound`), so a test that did
not really rotate on the wire would fail.
"""

from __future__ import annotations

import base64
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import PATCHER, Server, copy_svid
from mandate import Denied, FileSvidSource, IdentityError, Mandate, WorkloadApiSvidSource, svid_from_pem


def thumbprint(svid_pem: bytes) -> str:
    der = x509.load_pem_x509_certificates(svid_pem)[0].public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def start(frontend: Mandate) -> str:
    return frontend.create_task(
        PATCHER, on_behalf_of="alice", intent="survive a rotation", actions=["read"],
        resources=["repos"], max_sensitivity=1, ttl_seconds=600,
    ).id


def rotation_is_honoured(client: Mandate, frontend: Mandate, rotate: Callable[[], None]) -> None:
    holder = client.token_holder(start(frontend))
    before = client.svid()
    old = holder.current()
    assert old.claims()["cnf"]["x5t#S256"] == thumbprint(before.cert_chain_pem)
    assert client.authorize("read", "repo:acme/web", token=holder).allowed
    opened = client.channels_opened

    rotate()

    after = client.svid()
    assert after.leaf_sha256 != before.leaf_sha256 and after.spiffe_id == PATCHER
    # The old token over the new certificate: bound elsewhere.
    with pytest.raises(Denied) as denied:
        client.authorize("read", "repo:acme/web", token=old.token)
    assert "token-not-bound" in denied.value.reasons
    assert client.channels_opened == opened + 1
    # The holder notices the rotation and gets a token for the new SVID.
    assert client.authorize("read", "repo:acme/web", token=holder).allowed
    new = holder.current()
    assert new.jti != old.jti and new.claims()["cnf"]["x5t#S256"] == thumbprint(after.cert_chain_pem)


def test_rotation_by_rewritten_files(server: Server, frontend: Mandate, tmp_path: Path) -> None:
    cert, key, bundle = copy_svid(server, "agents/patcher", tmp_path / "svid")
    source = FileSvidSource(cert, key, bundle, check_interval=0)
    with Mandate(source, server.addr) as client:
        rotation_is_honoured(client, frontend, lambda: server.issue_svid(PATCHER, tmp_path / "svid"))

        # A half-written rotation (a key that is not the certificate's) keeps
        # the SVID in use and says why.
        in_use = client.svid()
        key.write_bytes((server.dev / "agents" / "reviewer" / "svid.key").read_bytes())
        assert client.svid() == in_use
        assert source.last_error is not None and "does not belong" in str(source.last_error)


def test_bad_files_are_clear_errors(server: Server, tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="cannot read"):
        FileSvidSource(tmp_path / "nope.pem", tmp_path / "nope.key", server.dev / "bundle.pem")
    bundle = (server.dev / "bundle.pem").read_bytes()
    with pytest.raises(IdentityError, match="exactly one URI SAN"):
        # A certificate without a SPIFFE ID is refused before its key is read.
        svid_from_pem(_no_san_cert(), b"", bundle, "test")


def _no_san_cert() -> bytes:
    import datetime

    from cryptography import x509 as _x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = _x509.Name([_x509.NameAttribute(NameOID.COMMON_NAME, "no san")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        _x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class WorkloadApi:
    """A test SPIFFE Workload API on a Unix socket: streams the X.509-SVIDs
    put in `updates`, as a SPIRE agent does when it rotates one."""

    def __init__(self, socket: Path) -> None:
        from spiffe._proto import workload_pb2, workload_pb2_grpc

        self.pb = workload_pb2
        self.updates: queue.Queue[tuple[Path, Path, Path]] = queue.Queue()
        self.refused_without_header = 0
        api = self

        class Servicer(workload_pb2_grpc.SpiffeWorkloadAPIServicer):  # type: ignore[misc]
            def FetchX509SVID(self, request: object, context: grpc.ServicerContext) -> Iterator[object]:
                if ("workload.spiffe.io", "true") not in tuple(context.invocation_metadata()):
                    api.refused_without_header += 1
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "security header missing")
                while context.is_active():
                    try:
                        files = api.updates.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    yield api.response(files)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        workload_pb2_grpc.add_SpiffeWorkloadAPIServicer_to_server(Servicer(), self.server)
        self.address = f"unix://{socket}"
        self.server.add_insecure_port(self.address)
        self.server.start()

    def response(self, files: tuple[Path, Path, Path]) -> object:
        cert, key, bundle = (p.read_bytes() for p in files)
        der = serialization.Encoding.DER
        chain = b"".join(c.public_bytes(der) for c in x509.load_pem_x509_certificates(cert))
        pkcs8 = serialization.load_pem_private_key(key, password=None).private_bytes(
            der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        roots = b"".join(c.public_bytes(der) for c in x509.load_pem_x509_certificates(bundle))
        svid = self.pb.X509SVID(spiffe_id=PATCHER, x509_svid=chain, x509_svid_key=pkcs8, bundle=roots)
        return self.pb.X509SVIDResponse(svids=[svid])

    def stop(self) -> None:
        self.server.stop(grace=None)


def test_rotation_through_the_workload_api(server: Server, frontend: Mandate, tmp_path: Path) -> None:
    api = WorkloadApi(tmp_path / "agent.sock")
    try:
        api.updates.put(copy_svid(server, "agents/patcher", tmp_path / "first"))
        source = WorkloadApiSvidSource(api.address, timeout=10)
        with Mandate(source, server.addr) as client:
            assert client.spiffe_id == PATCHER

            def rotate() -> None:
                fresh = server.issue_svid(PATCHER, tmp_path / "second")
                expected = svid_from_pem(*(p.read_bytes() for p in fresh), "fresh").leaf_sha256
                done = threading.Event()
                source.subscribe(done.set)
                api.updates.put(fresh)
                assert done.wait(10), "the Workload API's update did not arrive"
                assert client.svid().leaf_sha256 == expected

            rotation_is_honoured(client, frontend, rotate)
    finally:
        api.stop()


def test_no_workload_api_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="Workload API"):
        WorkloadApiSvidSource(f"unix://{tmp_path / 'missing.sock'}", timeout=1)
