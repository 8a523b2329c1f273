//! The API token check of the template Worker's `/pilot/v1/*` passthrough.

use subtle::ConstantTimeEq as _;

/// Whether an `Authorization` header value carries `Bearer <expected>`.
///
/// `expected` is the `PILOT_API_TOKEN` secret; `None` (no secret configured) admits nothing,
/// so the passthrough is off by default. The comparison of the token is constant-time.
pub fn bearer_matches(header: Option<&str>, expected: Option<&str>) -> bool {
    let (Some(header), Some(expected)) = (header, expected) else {
        return false;
    };
    if expected.is_empty() {
        return false;
    }
    let Some((scheme, token)) = header.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    bool::from(token.trim().as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_bearer_token_is_admitted() {
        assert!(bearer_matches(Some("Bearer s3cret"), Some("s3cret")));
        assert!(bearer_matches(Some("bearer s3cret"), Some("s3cret")));
        assert!(!bearer_matches(Some("Bearer s3cre"), Some("s3cret")));
        assert!(!bearer_matches(Some("Bearer s3cretX"), Some("s3cret")));
        assert!(!bearer_matches(Some("Basic s3cret"), Some("s3cret")));
        assert!(!bearer_matches(Some("s3cret"), Some("s3cret")));
        assert!(!bearer_matches(None, Some("s3cret")));
    }

    #[test]
    fn no_configured_token_disables_the_passthrough() {
        assert!(!bearer_matches(Some("Bearer anything"), None));
        assert!(!bearer_matches(Some("Bearer "), Some("")));
    }
}
