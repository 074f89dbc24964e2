//! Envoy's `x-forwarded-client-cert` header: `Key=Value` pairs split by
//! `;`, one element per proxy hop split by `,`, values that hold `,;=`
//! in double quotes. Only the last element counts: it is the one the
//! proxy in front of Mandate added about its own downstream peer; earlier
//! ones came from further away and are only as good as every hop.

/// What the last element says about the downstream peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardedCert {
    /// `URI`: the peer's SAN URI (its SPIFFE ID).
    pub uri: Option<String>,
    /// `Hash`: hex SHA-256 of the peer's DER certificate.
    pub hash: Option<String>,
    /// `Cert`: the peer's URL-encoded PEM certificate.
    pub cert: Option<String>,
}

/// Parses the header; `None` when it has no element or is malformed.
pub fn parse(header: &str) -> Option<ForwardedCert> {
    let elements = split_unquoted(header, b',')?;
    let last = elements.last()?.trim();
    if last.is_empty() {
        return None;
    }
    let mut out = ForwardedCert::default();
    for pair in split_unquoted(last, b';')? {
        let (key, value) = pair.trim().split_once('=')?;
        let value = unquote(value.trim())?;
        let slot = match key.trim().to_ascii_lowercase().as_str() {
            "uri" => &mut out.uri,
            "hash" => &mut out.hash,
            "cert" => &mut out.cert,
            _ => continue,
        };
        // A key given twice in one element is ambiguous: refuse it.
        if slot.replace(value).is_some() {
            return None;
        }
    }
    Some(out)
}

/// Splits on `sep` outside double quotes; `None` on an unclosed quote.
fn split_unquoted(text: &str, sep: u8) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        match byte {
            b'"' => quoted = !quoted,
            b if b == sep && !quoted => {
                parts.push(text.get(start..i)?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(text.get(start..)?);
    Some(parts)
}

fn unquote(value: &str) -> Option<String> {
    match value.strip_prefix('"') {
        Some(inner) => inner.strip_suffix('"').map(str::to_owned),
        None if value.contains('"') => None,
        None => Some(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_element_wins() {
        let header = "By=spiffe://a/x;URI=spiffe://a/far;Hash=00,By=spiffe://a/envoy;Hash=abcd;URI=spiffe://a/agents/p;Subject=\"CN=x,O=y\"";
        let f = parse(header).unwrap();
        assert_eq!(f.uri.as_deref(), Some("spiffe://a/agents/p"));
        assert_eq!(f.hash.as_deref(), Some("abcd"));
        assert_eq!(f.cert, None);
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("URI=\"spiffe://a/x"), None);
        assert_eq!(parse("URI"), None);
        assert_eq!(parse("URI=a;URI=b"), None);
        assert_eq!(parse("URI=a\"b"), None);
        assert_eq!(parse("URI=a,"), None);
    }
}
