//! How errors from outside read in messages: the root cause of an error chain, and short
//! one-line quotes of bodies. Shared by the HTTP clients so every message reads the same way.

/// The innermost cause, which says what happened ("connection refused") where the outer ones
/// only say what was being done ("error sending request for url ...").
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = cause.to_string();
    // "Connection refused (os error 111)" → "connection refused".
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        Some(_) | None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => error.to_string(),
    }
}

/// `body` on one line, cut after `chars` characters (marked `…`) and quoted; `None` if it
/// holds only whitespace.
pub fn quote(body: &[u8], chars: usize) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    let mut quoted: String = text.chars().take(chars).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    Some(format!("{quoted:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_cause_is_the_innermost_error_without_its_os_code() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let text = root_cause(&std::io::Error::other(format!("{io} (os error 111)")));
        assert!(!text.contains("os error") && text.starts_with(char::is_lowercase), "{text}");
    }

    #[test]
    fn quotes_are_one_line_and_cut() {
        assert_eq!(quote(b"a\n  b", 10).as_deref(), Some("\"a b\""));
        assert_eq!(quote(b"abcdef", 3).as_deref(), Some("\"abc…\""));
        assert_eq!(quote(b" \n", 3), None);
    }
}
