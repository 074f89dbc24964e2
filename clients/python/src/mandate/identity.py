"""The agent's identity: an X.509-SVID and the trust bundle to verify Mandate.

Two sources, both rotating:

* `FileSvidSource`: PEM files (the SVID chain, its key, the bundle), read
  again when they change, as spiffe-helper or a dev trust domain writes them;
* `WorkloadApiSvidSource`: the SPIFFE Workload API (a SPIRE agent), through
  PyPI `spiffe`'s `X509Source`, which streams new SVIDs as they rotate.

`Mandate` asks its source for the current SVID before each call and opens a
new mTLS channel when the SVID changed.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .errors import IdentityError


@dataclass(frozen=True)
class Svid:
    """One X.509-SVID with its key and the bundle that verifies Mandate."""

    spiffe_id: str
    #: PEM, leaf first, then intermediates.
    cert_chain_pem: bytes
    #: PEM (PKCS#8) private key of the leaf.
    key_pem: bytes
    #: PEM trust roots for Mandate's own certificate.
    bundle_pem: bytes
    #: SHA-256 of the leaf's DER, hex: what a task token is bound to.
    leaf_sha256: str
    not_after: datetime

    @property
    def leaf_pem(self) -> bytes:
        """The leaf certificate alone, PEM."""
        leaf = x509.load_pem_x509_certificates(self.cert_chain_pem)[0]
        return leaf.public_bytes(serialization.Encoding.PEM)


class SvidSource(Protocol):
    """Where the current SVID comes from."""

    def current(self) -> Svid:
        """The SVID to use now; raises `IdentityError` when there is none."""
        ...

    def close(self) -> None:
        """Release what the source holds (streams, threads)."""
        ...


def svid_from_pem(cert_chain_pem: bytes, key_pem: bytes, bundle_pem: bytes, origin: str) -> Svid:
    """Validates and wraps PEM material as an `Svid`; `origin` names it in errors."""
    try:
        chain = x509.load_pem_x509_certificates(cert_chain_pem)
    except ValueError as e:
        raise IdentityError(f"{origin}: the SVID is not PEM certificates: {e}") from e
    if not chain:
        raise IdentityError(f"{origin}: the SVID file holds no certificate")
    leaf = chain[0]
    try:
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    except x509.ExtensionNotFound:
        uris = []
    spiffe = [u for u in uris if u.startswith("spiffe://")]
    if len(uris) != 1 or len(spiffe) != 1:
        raise IdentityError(f"{origin}: the leaf must carry exactly one URI SAN, a spiffe:// ID (found {uris})")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise IdentityError(f"{origin}: the SVID key is not an unencrypted PEM private key: {e}") from e
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise IdentityError(f"{origin}: unsupported key type {type(key).__name__}")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise IdentityError(f"{origin}: the key does not belong to the SVID's leaf certificate")
    try:
        roots = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError as e:
        raise IdentityError(f"{origin}: the trust bundle is not PEM certificates: {e}") from e
    if not roots:
        raise IdentityError(f"{origin}: the trust bundle holds no certificate")
    der = leaf.public_bytes(serialization.Encoding.DER)
    return Svid(
        spiffe_id=spiffe[0],
        cert_chain_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        bundle_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in roots),
        leaf_sha256=hashlib.sha256(der).hexdigest(),
        not_after=leaf.not_valid_after_utc,
    )


class FileSvidSource:
    """An SVID from PEM files, read again when any of them changes.

    A change is noticed at most every `check_interval` seconds. Material that
    does not load (a file half written) keeps the previous SVID until the
    files are whole again; `last_error` says what was wrong.
    """

    def __init__(
        self,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        bundle: str | os.PathLike[str],
        *,
        check_interval: float = 1.0,
    ) -> None:
        self._paths = (Path(cert), Path(key), Path(bundle))
        self._interval = check_interval
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._checked = 0.0
        self.last_error: IdentityError | None = None
        self._svid = self._load()

    @classmethod
    def dev(cls, data_dir: str | os.PathLike[str], who: str, **kwargs: float) -> FileSvidSource:
        """A sample SVID of a dev trust domain, such as `agents/patcher`."""
        dev = Path(data_dir)
        if (dev / "dev" / "bundle.pem").exists():
            dev = dev / "dev"
        return cls(dev / who / "svid.pem", dev / who / "svid.key", dev / "bundle.pem", **kwargs)

    def _stat(self) -> tuple[tuple[int, int], ...]:
        try:
            return tuple((s.st_mtime_ns, s.st_size) for s in (p.stat() for p in self._paths))
        except OSError as e:
            raise IdentityError(f"cannot read the SVID files: {e}") from e

    def _load(self) -> Svid:
        stamp = self._stat()
        try:
            cert, key, bundle = (p.read_bytes() for p in self._paths)
        except OSError as e:
            raise IdentityError(f"cannot read the SVID files: {e}") from e
        svid = svid_from_pem(cert, key, bundle, f"`{self._paths[0]}`")
        self._stamp = stamp
        self._checked = time.monotonic()
        return svid

    def current(self) -> Svid:
        with self._lock:
            if time.monotonic() - self._checked < self._interval:
                return self._svid
            self._checked = time.monotonic()
            try:
                if self._stat() != self._stamp:
                    self._svid = self._load()
                    self.last_error = None
            except IdentityError as e:
                # Keep serving the previous SVID; a writer may be mid-way.
                self.last_error = e
            return self._svid

    def close(self) -> None:
        pass


class WorkloadApiSvidSource:
    """The default X.509-SVID from the SPIFFE Workload API, as it rotates.

    `socket` is `unix:///path/to/agent.sock` (default:
    `$SPIFFE_ENDPOINT_SOCKET`). The bundle used to verify Mandate is the one
    for the SVID's own trust domain, or `server_trust_domain` when Mandate
    is in another (federated) trust domain.
    """

    def __init__(
        self,
        socket: str | None = None,
        *,
        timeout: float = 10.0,
        server_trust_domain: str | None = None,
    ) -> None:
        from spiffe import X509Source
        from spiffe.errors import ArgumentError
        from spiffe.workloadapi.errors import X509SourceError

        try:
            self._source = X509Source(socket_path=socket, timeout_in_seconds=timeout)
        except (ArgumentError, X509SourceError) as e:
            where = socket or os.environ.get("SPIFFE_ENDPOINT_SOCKET") or "(SPIFFE_ENDPOINT_SOCKET is not set)"
            raise IdentityError(f"no X.509-SVID from the Workload API at `{where}`: {e}") from e
        self._server_td = server_trust_domain
        self._lock = threading.Lock()
        self._cache: tuple[bytes, Svid] | None = None

    def current(self) -> Svid:
        from spiffe import TrustDomain
        from spiffe.workloadapi.errors import X509SourceError

        try:
            context = self._source.get_x509_context()
        except X509SourceError as e:
            raise IdentityError(f"the Workload API source failed: {e}") from e
        svid = context.default_svid
        leaf_der = svid.leaf.public_bytes(serialization.Encoding.DER)
        with self._lock:
            if self._cache is not None and self._cache[0] == leaf_der:
                return self._cache[1]
        trust_domain = TrustDomain(self._server_td) if self._server_td else svid.spiffe_id.trust_domain
        bundle = context.x509_bundle_set.get_bundle_for_trust_domain(trust_domain)
        if bundle is None:
            raise IdentityError(f"the Workload API sent no bundle for trust domain `{trust_domain}`")
        pem = serialization.Encoding.PEM
        wrapped = svid_from_pem(
            b"".join(c.public_bytes(pem) for c in svid.cert_chain),
            svid.private_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            b"".join(c.public_bytes(pem) for c in bundle.x509_authorities),
            f"the Workload API's SVID `{svid.spiffe_id}`",
        )
        with self._lock:
            self._cache = (leaf_der, wrapped)
        return wrapped

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the stream's thread) after each update of the SVID."""
        self._source.subscribe_for_updates(callback)

    def close(self) -> None:
        self._source.close()

