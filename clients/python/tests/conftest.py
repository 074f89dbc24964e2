"""A real `mandate serve` for the tests: dev trust domain, example catalog.

The binary is `$MANDATE_BIN`, else `$CARGO_TARGET_DIR/debug/mandate`, else
the repository's `target/debug/mandate` (build it with `cargo build`). A
missing binary or a server that does not become ready fails the tests; it
never skips them.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mandate import FileSvidSource, Mandate

REPO = Path(__file__).resolve().parents[3]
TRUST_DOMAIN = "mandate.local"
PATCHER = f"spiffe://{TRUST_DOMAIN}/agents/patcher"
REVIEWER = f"spiffe://{TRUST_DOMAIN}/agents/reviewer"


def mandate_bin() -> Path:
    explicit = os.environ.get("MANDATE_BIN")
    if explicit:
        path = Path(explicit)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
        path = target / "debug" / "mandate"
    if not path.is_file():
        pytest.fail(f"no mandate binary at `{path}`: run `cargo build` first or set MANDATE_BIN", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    binary: Path
    addr: str
    dev: Path
    log: Path

    def client(self, who: str) -> Mandate:
        """A client with a sample SVID of the dev trust domain (`agents/patcher`)."""
        return Mandate(FileSvidSource.dev(self.dev, who), self.addr)

    def cli(self, *args: str, who: str = "workloads/frontend") -> subprocess.CompletedProcess[str]:
        """`mandate ARGS --cert .. --key .. --ca .. --addr ..` as `who`."""
        return subprocess.run(
            [
                str(self.binary),
                *args,
                "--cert",
                str(self.dev / who / "svid.pem"),
                "--key",
                str(self.dev / who / "svid.key"),
                "--ca",
                str(self.dev / "bundle.pem"),
                "--server",
                self.addr.replace("localhost", "127.0.0.1"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def issue_svid(self, spiffe_id: str, directory: Path) -> tuple[Path, Path, Path]:
        """A new SVID for `spiffe_id` from the dev CA, written to `directory`."""
        ca_cert = x509.load_pem_x509_certificate((self.dev / "bundle.pem").read_bytes())
        ca_key = serialization.load_pem_private_key((self.dev / "ca.key").read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mandate tests")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path, bundle_path = directory / "svid.pem", directory / "svid.key", directory / "bundle.pem"
        # Each file is replaced whole (rename), as spiffe-helper does.
        for path, data in (
            (key_path, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )),
            (cert_path, cert.public_bytes(serialization.Encoding.PEM)),
            (bundle_path, (self.dev / "bundle.pem").read_bytes()),
        ):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return cert_path, key_path, bundle_path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = mandate_bin()
    work = tmp_path_factory.mktemp("mandate")
    grpc_port, http_port = free_port(), free_port()
    log = work / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--listen",
                f"127.0.0.1:{grpc_port}",
                "--http-listen",
                f"127.0.0.1:{http_port}",
                "--data-dir",
                str(work / "data"),
                "--policies",
                str(REPO / "policies"),
                "--schema",
                str(REPO / "schemas" / "mandate.cedarschema"),
                "--catalog",
                str(REPO / "examples" / "catalog.toml"),
            ],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"mandate serve exited with {process.returncode}:\n{log.read_text()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mandate serve was not ready within 120 s:\n{log.read_text()}", pytrace=False)
            time.sleep(0.2)
        yield Server(binary=binary, addr=f"localhost:{grpc_port}", dev=work / "data" / "dev", log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def frontend(server: Server) -> Iterator[Mandate]:
    with server.client("workloads/frontend") as client:
        yield client


@pytest.fixture
def patcher(server: Server) -> Iterator[Mandate]:
    with server.client("agents/patcher") as client:
        yield client


@pytest.fixture
def reviewer(server: Server) -> Iterator[Mandate]:
    with server.client("agents/reviewer") as client:
        yield client


def copy_svid(server: Server, who: str, directory: Path) -> tuple[Path, Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / "svid.pem", directory / "svid.key", directory / "bundle.pem")
    shutil.copy(server.dev / who / "svid.pem", paths[0])
    shutil.copy(server.dev / who / "svid.key", paths[1])
    shutil.copy(server.dev / "bundle.pem", paths[2])
    return paths
