//! Agent integrity (after Agentic JWT, arXiv 2509.13597): a checksum of
//! what makes an agent behave as it does, registered with the agent and
//! proved when it asks for a token, so a tampered agent gets none.
//!
//! The canonical form: the JSON object
//! `{"config": <model config>, "prompt": "<system prompt>", "tools": <tool manifest>}`
//! serialised with the JSON Canonicalization Scheme (RFC 8785: sorted keys,
//! no whitespace, ES6 number forms), hashed with SHA-256, written as
//! `sha256:` and 64 lowercase hex digits. `mandate agent checksum` prints it.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The prefix of every checksum.
pub const CHECKSUM_PREFIX: &str = "sha256:";

/// The checksum of an agent's prompt, tool manifest and model configuration.
pub fn agent_checksum(prompt: &str, tools: &Value, config: &Value) -> Result<String, String> {
    let document = json!({ "config": config, "prompt": prompt, "tools": tools });
    let canonical = serde_json_canonicalizer::to_vec(&document)
        .map_err(|e| format!("cannot canonicalise the agent manifest: {e}"))?;
    let digest = Sha256::digest(&canonical);
    Ok(format!("{CHECKSUM_PREFIX}{}", hex(&digest)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that `checksum` has the form `sha256:<64 lowercase hex digits>`.
pub fn check_checksum_format(checksum: &str) -> Result<(), String> {
    let hex = checksum.strip_prefix(CHECKSUM_PREFIX).unwrap_or_default();
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "checksum `{checksum}` must be `{CHECKSUM_PREFIX}` and 64 lowercase hex digits"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_ignores_key_order_and_whitespace_but_not_content() {
        let tools: Value =
            serde_json::from_str(r#"[{"name":"git","args":{"b":1,"a":2}}]"#).unwrap();
        let reordered: Value =
            serde_json::from_str(r#"[ { "args": { "a": 2, "b": 1 }, "name": "git" } ]"#).unwrap();
        let config = json!({"model": "m-1", "temperature": 0.0});
        let a = agent_checksum("You fix bugs.", &tools, &config).unwrap();
        assert_eq!(
            a,
            agent_checksum("You fix bugs.", &reordered, &config).unwrap()
        );
        assert_ne!(a, agent_checksum("You fix bugs!", &tools, &config).unwrap());
        check_checksum_format(&a).unwrap();
        // The documented canonical form, hashed by hand.
        let canonical = r#"{"config":{"model":"m-1","temperature":0},"prompt":"You fix bugs.","tools":[{"args":{"a":2,"b":1},"name":"git"}]}"#;
        assert_eq!(a, format!("sha256:{}", hex(&Sha256::digest(canonical))));
    }

    #[test]
    fn malformed_checksums_are_refused() {
        assert!(check_checksum_format("sha256:abc").is_err());
        assert!(check_checksum_format(&format!("md5:{}", "a".repeat(64))).is_err());
        assert!(check_checksum_format(&format!("sha256:{}", "A".repeat(64))).is_err());
    }
}
