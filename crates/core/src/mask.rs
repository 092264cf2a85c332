//! [`Masker`]: replaces secret values in log text with `***`.
//!
//! Every line from every backend passes through a masker before it is stored or streamed. Besides
//! each value it masks the value's base64 forms (tools print `Authorization: Basic ...` or
//! auth files) and, for multi-line values such as keys, each line on its own.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use crate::secret::SecretValue;

/// Values shorter than this are not masked: masking `a` would destroy every log line.
pub const MIN_MASKED_LEN: usize = 3;
pub const MASK: &str = "***";

/// Masks a fixed set of secret values.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    matcher: Option<AhoCorasick>,
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a SecretValue>) -> Self {
        Self::from_strs(values.into_iter().map(SecretValue::expose))
    }

    pub fn from_strs<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        for value in values {
            let mut forms = vec![value.to_owned(), STANDARD.encode(value), STANDARD_NO_PAD.encode(value)];
            if value.contains('\n') {
                forms.extend(value.lines().map(|l| l.trim().to_owned()));
            }
            patterns.extend(forms.into_iter().filter(|p| p.len() >= MIN_MASKED_LEN));
        }
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Masker::default();
        }
        // Leftmost-longest, so a value is masked whole rather than a shorter one inside it.
        let matcher = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&patterns).ok();
        Masker { matcher }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    pub fn mask(&self, text: &str) -> String {
        match &self.matcher {
            Some(matcher) => matcher.replace_all(text, &vec![MASK; matcher.patterns_len()]),
            None => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_and_their_encodings() {
        let masker = Masker::from_strs(["hunter22", "ab"]);
        assert_eq!(masker.mask("pw=hunter22!"), "pw=***!");
        assert_eq!(masker.mask(&format!("auth {}", STANDARD.encode("hunter22"))), "auth ***");
        assert_eq!(masker.mask("ab stays"), "ab stays", "too short to mask");
    }

    #[test]
    fn masks_each_line_of_multiline_values() {
        let key = "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----";
        let masker = Masker::from_strs([key]);
        assert_eq!(masker.mask("got AAAABBBBCCCC here"), "got *** here");
    }

    #[test]
    fn prefers_the_longest_match() {
        let masker = Masker::from_strs(["secret", "secret-token"]);
        assert_eq!(masker.mask("x secret-token y"), "x *** y");
    }
}
