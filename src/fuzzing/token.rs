//! Task tokens from arbitrary text: verification must never panic and
//! never accept a token our key did not sign, or one whose claims fail a
//! check. Acceptance is re-checked independently of the code under test
//! (ring over the exact signing input, the claims read again), so a bug
//! in either the parsing or the checks shows up as a violation.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::Value;
use spiffe::SpiffeId;

use super::{ISSUER, NOW, Outcome, SUBJECT, ensure};
use crate::clock::ManualClock;
use crate::credential::{
    KeyRotation, SigningKeys, TOKEN_TYPE, TaskClaims, TaskTokens, TokenSettings, thumbprint,
};

/// The verifier's size limit: a longer token is refused unread.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A verifier over one fixed key, at [`NOW`], for [`SUBJECT`] presenting
/// one fixed certificate.
#[derive(Debug)]
pub struct TokenHarness {
    tokens: TaskTokens,
    signer: Ed25519KeyPair,
    kid: String,
    subject: SpiffeId,
    certificate: Vec<u8>,
    settings: TokenSettings,
}

impl TokenHarness {
    /// A harness whose only key is `pkcs8` (Ed25519), binding tokens to
    /// `certificate` (DER).
    pub fn new(pkcs8: &[u8], certificate: &[u8]) -> Result<Self, String> {
        let clock = Arc::new(ManualClock::new(NOW));
        let keys = SigningKeys::from_store(KeyRotation::default(), clock.clone());
        let kid = keys
            .insert(pkcs8, NOW - 60)
            .map_err(|e| format!("fixture key: {e}"))?;
        let settings = TokenSettings {
            issuer: ISSUER.to_owned(),
            audience: ISSUER.to_owned(),
            ..TokenSettings::default()
        };
        Ok(Self {
            tokens: TaskTokens::new(Arc::new(keys), settings.clone(), clock),
            signer: Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| format!("fixture key: {e}"))?,
            kid,
            subject: SpiffeId::new(SUBJECT).map_err(|e| e.to_string())?,
            certificate: certificate.to_vec(),
            settings,
        })
    }

    /// The JOSE header of a valid token.
    pub fn valid_header(&self) -> Value {
        serde_json::json!({ "alg": "EdDSA", "typ": TOKEN_TYPE, "kid": self.kid })
    }

    /// The claims of a valid token (all of them, an actor chain of two).
    pub fn valid_claims(&self) -> Value {
        serde_json::json!({
            "iss": ISSUER,
            "sub": SUBJECT,
            "aud": ISSUER,
            "iat": NOW - 10,
            "nbf": NOW - 10,
            "exp": NOW + 290,
            "jti": "01a2b3c4-0000-7000-8000-000000000000",
            "task": "01a2b3c4-0000-7000-8000-000000000001",
            "intent": "fix the payments build",
            "act": { "sub": "spiffe://mandate.local/workloads/frontend",
                     "act": { "sub": "user:alice" } },
            "cnf": { "x5t#S256": thumbprint(&self.certificate) },
            "agent_proof": format!("sha256:{}", "0".repeat(64)),
        })
    }

    /// A compact JWS of exactly this header and these claims, signed with
    /// the fixture key whatever they say.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.signer.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    /// Verifies arbitrary bytes as a token, bound and unbound. When its
    /// header and claims are JSON, they are also signed with our key and
    /// checked by [`TokenHarness::check_signed`], so a finding of the
    /// structured target is kept as the token it signed.
    pub fn check_bytes(&self, data: &[u8]) -> Result<Outcome, String> {
        // gRPC strings are UTF-8; anything else never reaches the verifier.
        let Ok(token) = std::str::from_utf8(data) else {
            return Outcome::refused("not UTF-8");
        };
        let outcome = self.check_token(token)?;
        let mut parts = token.split('.');
        if let (Some(header), Some(claims)) =
            (parts.next().and_then(json), parts.next().and_then(json))
        {
            self.check_signed(&header, &claims)?;
        }
        Ok(outcome)
    }

    /// Verifies `token` as the decision path does; on acceptance checks
    /// independently that it deserved it.
    pub fn check_token(&self, token: &str) -> Result<Outcome, String> {
        // INVARIANT: without the certificate of the call there is no
        // proof of possession, whatever the token.
        if let Ok(claims) = self.tokens.verify(token, &self.subject, None) {
            return Err(format!("accepted without a certificate: {claims:?}"));
        }
        match self
            .tokens
            .verify(token, &self.subject, Some(&self.certificate))
        {
            Ok(claims) => {
                self.deserved(token, &claims)?;
                Ok(Outcome::Accepted)
            }
            Err(error) => Outcome::refused(error.to_string()),
        }
    }

    /// Signs `header` and `claims` with our key and verifies the token:
    /// it must be accepted exactly when the header and claims are what a
    /// valid token carries.
    pub fn check_signed(&self, header: &Value, claims: &Value) -> Result<Outcome, String> {
        let token = self.sign(header, claims);
        let outcome = self.check_token(&token)?;
        let expected = if token.len() > MAX_TOKEN_BYTES {
            Err("it is longer than the verifier's limit".to_owned())
        } else {
            self.acceptable(header, claims)
        };
        match (&outcome, expected) {
            (Outcome::Accepted, Err(why)) => Err(format!("accepted although {why}: {token}")),
            (Outcome::Refused(error), Ok(())) => {
                Err(format!("refused a valid token ({error}): {token}"))
            }
            _ => Ok(outcome),
        }
    }

    /// The independent check of an accepted token.
    fn deserved(&self, token: &str, claims: &TaskClaims) -> Result<(), String> {
        let (input, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| format!("accepted a token without a signature: {token}"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|e| format!("accepted a signature that is not base64url ({e}): {token}"))?;
        UnparsedPublicKey::new(&ED25519, self.signer.public_key().as_ref())
            .verify(input.as_bytes(), &signature)
            .map_err(|_| format!("accepted a token our key did not sign: {token}"))?;
        let (header, payload) = input
            .split_once('.')
            .ok_or_else(|| format!("accepted a token without a payload: {token}"))?;
        let json = |part: &str| {
            json(part).ok_or_else(|| format!("accepted a token with unreadable JSON: {token}"))
        };
        self.acceptable(&json(header)?, &json(payload)?)
            .map_err(|why| format!("accepted although {why}: {token}"))?;
        ensure(
            claims.sub == SUBJECT && claims.cnf.x5t_s256 == thumbprint(&self.certificate),
            || format!("returned claims that are not the token's: {claims:?}"),
        )
    }

    /// `Ok` when a token with this header and these claims, signed by our
    /// key, must verify; else why not.
    fn acceptable(&self, header: &Value, claims: &Value) -> Result<(), String> {
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        ensure(
            header.as_object().is_some_and(|h| {
                h.keys()
                    .all(|k| ["alg", "typ", "kid"].contains(&k.as_str()))
            }),
            || "the header holds more than `alg`, `typ` and `kid`".to_owned(),
        )?;
        ensure(text(header, "alg").as_deref() == Some("EdDSA"), || {
            "`alg` is not EdDSA".to_owned()
        })?;
        ensure(text(header, "typ").as_deref() == Some(TOKEN_TYPE), || {
            "`typ` is wrong".to_owned()
        })?;
        ensure(text(header, "kid").as_deref() == Some(&self.kid), || {
            "`kid` is not our key".to_owned()
        })?;
        let parsed: TaskClaims = serde_json::from_value(claims.clone())
            .map_err(|e| format!("the claims are not a task token's ({e})"))?;
        ensure(parsed.iss == self.settings.issuer, || {
            "`iss` is not ours".to_owned()
        })?;
        ensure(parsed.aud == self.settings.audience, || {
            "`aud` is not ours".to_owned()
        })?;
        ensure(parsed.sub == SUBJECT, || {
            "`sub` is not the subject".to_owned()
        })?;
        ensure(parsed.cnf.x5t_s256 == thumbprint(&self.certificate), || {
            "`cnf` is another certificate".to_owned()
        })?;
        ensure(
            NOW <= parsed.exp.saturating_add(self.settings.leeway),
            || "it expired".to_owned(),
        )?;
        ensure(
            NOW.saturating_add(self.settings.leeway) >= parsed.nbf,
            || "it is not valid yet".to_owned(),
        )
    }
}

/// A base64url JSON part of a compact JWS.
fn json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}
