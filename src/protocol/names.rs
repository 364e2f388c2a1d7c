//! Room names and user ids: 1-128 bytes of `[A-Za-z0-9_.:@-]`.

use crate::limits::{MAX_DISPLAY_NAME_BYTES, MAX_NAME_BYTES};

/// Whether `name` is a valid room name or user id. Such names never need
/// JSON escaping, which the encoder relies on.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'))
}

/// Whether `name` is acceptable as a display name: at most
/// [`MAX_DISPLAY_NAME_BYTES`] bytes, no control characters.
pub fn is_valid_display_name(name: &str) -> bool {
    name.len() <= MAX_DISPLAY_NAME_BYTES && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert!(is_valid_name("team-1:general@eu_west.x"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("é"));
        assert!(!is_valid_name("\"quote"));
        assert!(is_valid_name(&"a".repeat(128)));
        assert!(!is_valid_name(&"a".repeat(129)));
        assert!(is_valid_display_name("Ada Lovelace ✓"));
        assert!(!is_valid_display_name("bell\u{7}"));
    }
}
