//! DNS name checks for what ends up in peer names. Each name is checked before it is
//! repeated once per member, so a bad or oversized name is a short denial, never a large
//! patch.

/// Longest DNS label (RFC 1123).
pub const MAX_LABEL: usize = 63;
/// Longest DNS name (RFC 1123 subdomain).
pub const MAX_NAME: usize = 253;

/// Whether `s` is an RFC 1123 label: lowercase letters, digits and `-`, starting and
/// ending with a letter or digit, at most 63 characters.
pub fn is_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// Whether `s` is an RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_subdomain(s: &str) -> bool {
    s.len() <= MAX_NAME && s.split('.').all(is_label)
}

/// Number of decimal digits of `n` (at least 1).
pub fn digits(n: i32) -> usize {
    n.max(1).unsigned_abs().to_string().len()
}
