//! [`Masker`]: replaces secret values in log text with `***`.
//!
//! Every line from every backend passes through a masker before it is stored or streamed.
//! Besides each value it masks the forms tools print it in: base64 (as in `Authorization: Basic`
//! or an auth file, at whatever offset the value sits in the encoded text, standard and URL
//! alphabets), hex, percent-encoding and JSON escaping; for multi-line values such as keys, each
//! line on its own. A form split over two lines (base64 wrapped at 76 columns, a line cut at
//! its length limit) is masked at the end of the first line and the start of the next.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use crate::secret::SecretValue;

/// Values shorter than this are not masked: masking `a` would destroy every log line.
pub const MIN_MASKED_LEN: usize = 3;
pub const MASK: &str = "***";

/// The shortest piece of a derived form (part of an encoding, the start or end of a split
/// form) that is masked: shorter ones would match ordinary text too often.
const MIN_PIECE_LEN: usize = 6;

/// Masks a fixed set of secret values.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    matcher: Option<AhoCorasick>,
    /// Forms whose start may end a line or whose end may start one.
    splittable: Vec<String>,
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a SecretValue>) -> Self {
        Self::from_strs(values.into_iter().map(SecretValue::expose))
    }

    pub fn from_strs<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        let mut splittable: Vec<String> = Vec::new();
        for value in values.into_iter().filter(|v| v.len() >= MIN_MASKED_LEN) {
            patterns.push(value.to_owned());
            let derived = derived_forms(value);
            splittable.push(value.to_owned());
            splittable.extend(derived.iter().filter(|f| f.len() > MIN_PIECE_LEN).cloned());
            patterns.extend(derived.into_iter().filter(|p| p.len() >= MIN_PIECE_LEN.min(value.len())));
            if value.contains('\n') {
                patterns.extend(value.lines().map(|l| l.trim().to_owned()).filter(|l| l.len() >= MIN_MASKED_LEN));
            }
        }
        patterns.sort();
        patterns.dedup();
        splittable.sort();
        splittable.dedup();
        if patterns.is_empty() {
            return Masker::default();
        }
        // Leftmost-longest, so a value is masked whole rather than a shorter one inside it.
        let matcher = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&patterns).ok();
        Masker { matcher, splittable }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    pub fn mask(&self, text: &str) -> String {
        let Some(matcher) = &self.matcher else { return text.to_owned() };
        let masked = matcher.replace_all(text, &vec![MASK; matcher.patterns_len()]);
        self.mask_edges(&masked)
    }

    /// Mask the longest start of a form that ends the text, and the longest end of one that
    /// starts it: the halves of a form split over two lines.
    fn mask_edges(&self, text: &str) -> String {
        let mut text = text.to_owned();
        let tail = self.splittable.iter().filter_map(|form| edge_len(form, &text, true)).max();
        if let Some(len) = tail {
            text.replace_range(text.len() - len.., MASK);
        }
        let head = self.splittable.iter().filter_map(|form| edge_len(form, &text, false)).max();
        if let Some(len) = head {
            text.replace_range(..len, MASK);
        }
        text
    }
}

/// How long a piece of `form` that `text` ends with (a start of it, `at_end`) or starts with
/// (an end of it) is, if one of at least [`MIN_PIECE_LEN`] bytes is there; the whole form
/// is the matcher's.
fn edge_len(form: &str, text: &str, at_end: bool) -> Option<usize> {
    let longest = text.len().min(form.len().saturating_sub(1));
    (MIN_PIECE_LEN..=longest).rev().find(|&len| {
        if at_end {
            form.is_char_boundary(len) && text.is_char_boundary(text.len() - len) && text.ends_with(&form[..len])
        } else {
            let from = form.len() - len;
            form.is_char_boundary(from) && text.is_char_boundary(len) && text.starts_with(&form[from..])
        }
    })
}

/// The encodings of `value` a tool may print.
fn derived_forms(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut forms = vec![STANDARD.encode(bytes), STANDARD_NO_PAD.encode(bytes), URL_SAFE_NO_PAD.encode(bytes)];
    // Inside a longer encoded text (`user:password`), the value's encoding depends on where it
    // starts: skip the characters its predecessors share, and any that its successors would.
    for offset in 1..3 {
        let mut shifted = vec![0u8; offset];
        shifted.extend_from_slice(bytes);
        let skip = (offset * 8).div_ceil(6);
        let pure_end = shifted.len() * 8 / 6;
        for encoded in [STANDARD_NO_PAD.encode(&shifted), URL_SAFE_NO_PAD.encode(&shifted)] {
            forms.extend(encoded.get(skip..pure_end).map(str::to_owned));
        }
    }
    let unpadded = STANDARD_NO_PAD.encode(bytes);
    forms.extend(unpadded.get(..bytes.len() * 8 / 6).map(str::to_owned));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    forms.push(hex.to_ascii_uppercase());
    forms.push(hex);
    for upper in [true, false] {
        let percent: String = value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                other if upper => format!("%{other:02X}"),
                other => format!("%{other:02x}"),
            })
            .collect();
        forms.push(percent);
    }
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(json[1..json.len() - 1].to_owned());
    }
    forms.retain(|form| form != value);
    forms
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
    fn masks_the_encodings_tools_print() {
        let secret = "s3cr/t+pw:\"é\"";
        let masker = Masker::from_strs([secret]);
        let basic = STANDARD.encode(format!("robot:{secret}"));
        let forms = [
            format!("Authorization: Basic {basic}"),
            format!("hex {}", secret.bytes().map(|b| format!("{b:02x}")).collect::<String>()),
            format!("url https://x/?pw={}", "s3cr%2Ft%2Bpw%3A%22%C3%A9%22"),
            format!("json {}", serde_json::json!({ "pw": secret })),
            format!("b64url {}", URL_SAFE_NO_PAD.encode(secret)),
        ];
        for line in forms {
            let masked = masker.mask(&line);
            assert!(masked.contains(MASK), "{line} -> {masked}");
            assert!(!masked.contains("s3cr") && !masked.contains("czNjc") && !masked.contains("733363"), "{masked}");
        }
        let shifted = STANDARD.encode(format!("ab{secret}"));
        assert!(!masker.mask(&shifted).contains(&STANDARD_NO_PAD.encode(secret)[2..10]), "at any offset");
    }

    #[test]
    fn a_form_split_over_two_lines_is_masked_on_both() {
        let secret = "correct-horse-battery-staple";
        let masker = Masker::from_strs([secret]);
        let encoded = STANDARD.encode(secret);
        let (first, second) = encoded.split_at(17);
        assert_eq!(masker.mask(&format!("data: {first}")), "data: ***");
        assert_eq!(masker.mask(second), "***");
        let (start, end) = secret.split_at(9);
        assert_eq!(masker.mask(&format!("cut here {start}")), "cut here ***");
        assert_eq!(masker.mask(&format!("{end} and on")), "*** and on");
        assert_eq!(masker.mask("an ordinary line"), "an ordinary line");
    }

    #[test]
    fn prefers_the_longest_match() {
        let masker = Masker::from_strs(["secret", "secret-token"]);
        assert_eq!(masker.mask("x secret-token y"), "x *** y");
    }
}
