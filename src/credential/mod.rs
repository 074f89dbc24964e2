//! Task credentials: Ed25519 signing keys (persisted, rotated, published as
//! a JWKS) and SVID-bound task tokens.

mod error;
mod keys;
mod token;

pub use error::{CredentialError, TokenError};
pub use keys::{KeyRotation, SigningKey, SigningKeys};
pub use token::{
    Actor, Confirmation, TOKEN_TYPE, TaskClaims, TaskTokens, TokenSettings, thumbprint,
};

#[cfg(test)]
mod tests;
