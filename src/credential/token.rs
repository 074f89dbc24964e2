//! Task tokens: compact JWS (EdDSA) bound to the SVID they were minted for.
//!
//! A token only *points at* a task; the decision path always reads the
//! task's live state. Signatures are jsonwebtoken's; the time checks are
//! ours, so they follow the injected clock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spiffe::SpiffeId;

use super::{CredentialError, SigningKeys, TokenError};
use crate::cache::Bounded;
use crate::clock::Clock;
use crate::graph::Task;

/// The JOSE `typ` of a task token.
pub const TOKEN_TYPE: &str = "mandate-task+jwt";

/// Tokens larger than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// An RFC 8693 actor claim: who acted, and who acted before them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The acting party.
    pub sub: String,
    /// The party that acted before, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

/// RFC 8705 confirmation: the certificate the token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// base64url SHA-256 of the DER leaf certificate.
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// The claims of a task token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskClaims {
    /// Issuer.
    pub iss: String,
    /// The delegatee's SPIFFE ID.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Task id.
    pub task: String,
    /// The task's intent.
    pub intent: String,
    /// The delegation chain, current delegator outermost, the originating
    /// user innermost.
    pub act: Actor,
    /// The certificate binding.
    pub cnf: Confirmation,
    /// The agent checksum proved when the token was issued; a decision
    /// denies once the registered checksum differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_proof: Option<String>,
}

/// Issuer, audience and lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `iss` of minted tokens, checked on verification.
    pub issuer: String,
    /// `aud` of minted tokens, checked on verification.
    pub audience: String,
    /// Lifetime when the caller asks for none (seconds).
    pub default_ttl: i64,
    /// Longest lifetime a caller may ask for (seconds).
    pub max_ttl: i64,
    /// Clock skew tolerated on `exp` and `nbf` (seconds).
    pub leeway: i64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "mandate".to_owned(),
            audience: "mandate".to_owned(),
            default_ttl: 300,
            max_ttl: 3600,
            leeway: 30,
        }
    }
}

/// base64url SHA-256 of a DER certificate (`x5t#S256`).
pub fn thumbprint(certificate_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(certificate_der))
}

/// Most verified tokens remembered; past it the coldest are dropped.
const VERIFIED_CACHE_SIZE: usize = 10_000;
/// Longest a verified token is remembered: short, so the tokens of tasks
/// that ended leave memory soon, yet a token in use is verified again
/// only once in that time.
const VERIFIED_MAX_AGE: Duration = Duration::from_secs(300);

/// A token whose signature and header were verified once.
#[derive(Debug)]
struct Verified {
    kid: String,
    claims: TaskClaims,
}

/// Mints and verifies task tokens.
#[derive(Debug)]
pub struct TaskTokens {
    keys: Arc<SigningKeys>,
    settings: TokenSettings,
    clock: Arc<dyn Clock>,
    /// Agents present the same token on every call of its life, and the
    /// signature check is the costliest step of a decision. A byte-identical
    /// token verified before skips it while its key still verifies; the
    /// time, subject and binding checks run on every call.
    /// Each entry is kept at most [`VERIFIED_MAX_AGE`] (then verified
    /// again), and never longer than a token can live.
    verified: Bounded<String, Arc<Verified>>,
}

/// The header fields we read. Our tokens carry exactly these; any other
/// (`crit` above all, which RFC 7515 says to refuse when not understood,
/// or `jku`, `jwk`, `x5u`, `x5c`) is refused rather than ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
}

impl TaskTokens {
    /// Tokens signed with `keys`.
    pub fn new(keys: Arc<SigningKeys>, settings: TokenSettings, clock: Arc<dyn Clock>) -> Self {
        let longest_life =
            u64::try_from(settings.max_ttl.saturating_add(settings.leeway)).unwrap_or(1);
        Self {
            keys,
            settings,
            clock,
            verified: Bounded::new(
                VERIFIED_CACHE_SIZE,
                VERIFIED_MAX_AGE.min(Duration::from_secs(longest_life)),
            ),
        }
    }

    /// Drops remembered tokens that can no longer verify; see
    /// [`Bounded::sweep`].
    pub fn sweep(&self) {
        self.verified.sweep();
    }

    /// The key ring (for the JWKS endpoint).
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// Mints a token for the first task of `chain` (task first, root last),
    /// bound to `certificate_der`, carrying the agent's proved checksum.
    /// The lifetime is `ttl` (or the default),
    /// capped by the maximum and by the task's deadline.
    pub fn mint(
        &self,
        chain: &[Arc<Task>],
        certificate_der: &[u8],
        ttl: Option<i64>,
        agent_proof: Option<&str>,
    ) -> Result<(String, TaskClaims), CredentialError> {
        let task = chain
            .first()
            .ok_or_else(|| CredentialError::Signing("no task to mint a token for".to_owned()))?;
        let now = self.clock.now();
        let ttl = ttl
            .unwrap_or(self.settings.default_ttl)
            .clamp(1, self.settings.max_ttl);
        let claims = TaskClaims {
            iss: self.settings.issuer.clone(),
            sub: task.delegatee.to_string(),
            aud: self.settings.audience.clone(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl).min(task.expires_at),
            jti: uuid::Uuid::now_v7().to_string(),
            task: task.id.to_string(),
            intent: task.intent.clone(),
            act: actors(chain),
            cnf: Confirmation {
                x5t_s256: thumbprint(certificate_der),
            },
            agent_proof: agent_proof.map(ToOwned::to_owned),
        };
        let key = self.keys.current()?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| CredentialError::Signing(e.to_string()))?;
        Ok((token, claims))
    }

    /// Verifies a token presented by `subject` over a connection (or in an
    /// enforcement point's request) carrying `certificate_der`.
    pub fn verify(
        &self,
        token: &str,
        subject: &SpiffeId,
        certificate_der: Option<&[u8]>,
    ) -> Result<TaskClaims, TokenError> {
        self.verify_bound(token, subject, certificate_der.map(thumbprint).as_deref())
    }

    /// [`TaskTokens::verify`] against the `x5t#S256` of the presented
    /// certificate, for callers that know only its hash (an enforcement
    /// point forwarding `x-forwarded-client-cert`'s `Hash`).
    pub fn verify_bound(
        &self,
        token: &str,
        subject: &SpiffeId,
        presented_thumbprint: Option<&str>,
    ) -> Result<TaskClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let cached = self.verified.get(token);
        let verified = match cached {
            // INVARIANT: a retired key invalidates its tokens, cached or not.
            Some(v) if self.keys.verifying(&v.kid).is_some() => v,
            _ => {
                let v = Arc::new(self.verify_signature(token)?);
                self.verified.insert(token.to_owned(), v.clone());
                v
            }
        };
        let claims = &verified.claims;

        let now = self.clock.now();
        if now > claims.exp.saturating_add(self.settings.leeway) {
            return Err(TokenError::Expired(claims.exp));
        }
        if now.saturating_add(self.settings.leeway) < claims.nbf {
            return Err(TokenError::NotYetValid(claims.nbf));
        }
        if claims.sub != subject.to_string() {
            return Err(TokenError::SubjectMismatch {
                token: claims.sub.clone(),
                subject: subject.to_string(),
            });
        }
        // INVARIANT: proof of possession (DESIGN §3.4). Without the
        // certificate of this call there is nothing to bind to: deny.
        match presented_thumbprint {
            Some(presented) if presented == claims.cnf.x5t_s256 => Ok(claims.clone()),
            _ => Err(TokenError::NotBound),
        }
    }

    /// The header and signature checks: the token is ours and untouched.
    fn verify_signature(&self, token: &str) -> Result<Verified, TokenError> {
        let header = raw_header(token)?;
        if header.alg.as_deref() != Some("EdDSA") {
            return Err(TokenError::WrongAlgorithm);
        }
        let typ = header.typ.unwrap_or_default();
        if typ != TOKEN_TYPE {
            return Err(TokenError::WrongType(typ));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self
            .keys
            .verifying(&kid)
            .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        // Time is checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = HashSet::new();
        validation.set_audience(&[&self.settings.audience]);
        validation.set_issuer(&[&self.settings.issuer]);
        let claims = jsonwebtoken::decode::<TaskClaims>(token, &key.decoding, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAudience => {
                    TokenError::WrongAudience(self.settings.audience.clone())
                }
                _ => TokenError::Malformed(e.to_string()),
            })?
            .claims;
        Ok(Verified { kid, claims })
    }
}

fn raw_header(token: &str) -> Result<RawHeader, TokenError> {
    let encoded = token
        .split('.')
        .next()
        .filter(|_| token.matches('.').count() == 2)
        .ok_or_else(|| TokenError::Malformed("not a compact JWS".to_owned()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed(format!("header: {e}")))
}

/// The actor chain of `chain[0]`: its delegator outermost, each ancestor's
/// delegator inside, the originating user innermost.
fn actors(chain: &[Arc<Task>]) -> Actor {
    let originator = chain
        .last()
        .map_or_else(String::new, |root| format!("user:{}", root.originator));
    chain.iter().rev().fold(
        Actor {
            sub: originator,
            act: None,
        },
        |inner, task| Actor {
            sub: task.delegator.to_string(),
            act: Some(Box::new(inner)),
        },
    )
}
