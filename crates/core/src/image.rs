//! Image naming by the OCI distribution rules: registry hosts, repositories, tags, digests, and
//! the [`ImageRef`] that joins them.
//!
//! Every check here is the grammar of the distribution spec, so a name that passes is one a
//! registry will accept, and no name can carry anything a tool would read as an option.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `host[:port]` of a registry, as written in image references (`127.0.0.1:5000`, `ghcr.io`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistryHost(String);

/// A repository path (`team/app`), each component lower-case `[a-z0-9]` joined by `.`, `_`, `__` or `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Repository(String);

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

/// A content digest: `sha256:` and 64 lower-case hex digits (or `sha512:` and 128).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// Why a name is not valid; the text is meant to follow the field name in an error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadName(pub String);

fn bad(msg: impl Into<String>) -> BadName {
    BadName(msg.into())
}

macro_rules! string_newtype {
    ($ty:ident, $check:ident) => {
        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $ty {
            type Err = BadName;
            fn from_str(s: &str) -> Result<Self, BadName> {
                $check(s)?;
                Ok($ty(s.to_owned()))
            }
        }
        impl TryFrom<String> for $ty {
            type Error = BadName;
            fn try_from(s: String) -> Result<Self, BadName> {
                $check(&s)?;
                Ok($ty(s))
            }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }
    };
}

string_newtype!(RegistryHost, check_host);
string_newtype!(Repository, check_repository);
string_newtype!(Tag, check_tag);
string_newtype!(Digest, check_digest);

impl Tag {
    /// `latest`.
    pub fn latest() -> Tag {
        Tag("latest".to_owned())
    }
}

/// A job id is always a valid tag (hex digits and hyphens, starting with a digit or letter).
impl From<crate::id::JobId> for Tag {
    fn from(job: crate::id::JobId) -> Tag {
        Tag(job.to_string())
    }
}

impl Repository {
    /// `temp/<job id>`, the repository of a job's temp image (the seed's name).
    pub fn temp(job: crate::id::JobId) -> Repository {
        Repository(format!("temp/{job}"))
    }

    /// `temp`, the seed's prefix of temp images.
    pub fn temp_prefix() -> Repository {
        Repository("temp".to_owned())
    }

    /// `<prefix>/<job id>`: a job's temp image under a configured prefix (itself a valid
    /// repository, so the result is one too).
    pub fn temp_under(prefix: &Repository, job: crate::id::JobId) -> Repository {
        Repository(format!("{prefix}/{job}"))
    }
}

fn check_host(s: &str) -> Result<(), BadName> {
    let (name, port) = match s.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || name.starts_with('[') => (name, Some(port)),
        _ => (s, None),
    };
    if name.is_empty() {
        return Err(bad("must name a registry host, such as registry.example.com:5000"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with('0') => {}
            _ => return Err(bad(format!("has an invalid port {port:?} (expected 1-65535)"))),
        }
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| bad(format!("has an invalid IPv6 address {v6:?}")));
    }
    if name.len() > 253 {
        return Err(bad("host name is longer than 253 characters"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(format!(
                "host {name:?} is not a valid host name (letters, digits and inner hyphens, dot-separated)"
            )));
        }
    }
    Ok(())
}

/// One path component of a repository: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or any number of `-`.
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|s| s == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn check_repository(s: &str) -> Result<(), BadName> {
    if s.is_empty() {
        return Err(bad("must not be empty"));
    }
    if s.len() > 255 {
        return Err(bad("is longer than 255 characters"));
    }
    for component in s.split('/') {
        if !check_component(component) {
            return Err(bad(format!(
                "component {component:?} is not allowed: use lower-case letters and digits, \
                 separated by '.', '_', '__' or '-', with '/' between path components"
            )));
        }
    }
    Ok(())
}

fn check_tag(s: &str) -> Result<(), BadName> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "{:?} is not a valid tag: 1-128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'",
            s.chars().take(140).collect::<String>()
        )))
    }
}

fn check_digest(s: &str) -> Result<(), BadName> {
    let hex_len = match s.split_once(':') {
        Some(("sha256", hex)) => (hex, 64),
        Some(("sha512", hex)) => (hex, 128),
        _ => return Err(bad(format!("{s:?} is not a sha256 or sha512 digest"))),
    };
    let (hex, len) = hex_len;
    if hex.len() == len && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(bad(format!("{s:?} is not a well-formed digest")))
    }
}

/// What an image reference points at: a tag, or an exact digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// `host[:port]/repository` plus a tag or digest: a full, pullable image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    pub registry: RegistryHost,
    pub repository: Repository,
    pub reference: Reference,
}

impl ImageRef {
    pub fn tagged(registry: RegistryHost, repository: Repository, tag: Tag) -> Self {
        ImageRef { registry, repository, reference: Reference::Tag(tag) }
    }

    /// The same repository, pinned to `digest`.
    pub fn with_digest(&self, digest: Digest) -> Self {
        ImageRef { reference: Reference::Digest(digest), ..self.clone() }
    }

    /// `host/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Reference::Tag(tag) => write!(f, "{}/{}:{}", self.registry, self.repository, tag),
            Reference::Digest(digest) => write!(f, "{}/{}@{}", self.registry, self.repository, digest),
        }
    }
}

impl FromStr for ImageRef {
    type Err = BadName;

    fn from_str(s: &str) -> Result<Self, BadName> {
        let (registry, rest) = s.split_once('/').ok_or_else(|| bad(format!("{s:?} has no registry host")))?;
        let (repository, reference) = if let Some((repo, digest)) = rest.split_once('@') {
            (repo, Reference::Digest(digest.parse()?))
        } else {
            let (repo, tag) = match rest.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo, tag),
                _ => (rest, "latest"),
            };
            (repo, Reference::Tag(tag.parse()?))
        };
        Ok(ImageRef { registry: registry.parse()?, repository: repository.parse()?, reference })
    }
}

impl TryFrom<String> for ImageRef {
    type Error = BadName;
    fn try_from(s: String) -> Result<Self, BadName> {
        s.parse()
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> String {
        r.to_string()
    }
}

/// A job's `registry_url`: a registry host and an optional repository namespace
/// (`registry.example.com:5000/team`). Final images are `<registry_url>/<image_name>:<tag>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistryUrl {
    pub host: RegistryHost,
    pub namespace: Option<Repository>,
}

impl RegistryUrl {
    /// The repository of image `name` under this registry's namespace.
    pub fn repository(&self, name: &Repository) -> Repository {
        match &self.namespace {
            Some(ns) => Repository(format!("{ns}/{name}")),
            None => name.clone(),
        }
    }
}

impl fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}", self.host, ns),
            None => write!(f, "{}", self.host),
        }
    }
}

impl FromStr for RegistryUrl {
    type Err = BadName;

    fn from_str(s: &str) -> Result<Self, BadName> {
        if s.contains("://") {
            return Err(bad(
                "must be a registry host such as registry.example.com:5000 (optionally with a /namespace), \
                 without a scheme; plain-http registries are configured on the server with --insecure-registry",
            ));
        }
        let s = s.strip_suffix('/').unwrap_or(s);
        let (host, namespace) = match s.split_once('/') {
            Some((host, ns)) => (host, Some(ns.parse::<Repository>()?)),
            None => (s, None),
        };
        Ok(RegistryUrl { host: host.parse()?, namespace })
    }
}

impl TryFrom<String> for RegistryUrl {
    type Error = BadName;
    fn try_from(s: String) -> Result<Self, BadName> {
        s.parse()
    }
}

impl From<RegistryUrl> for String {
    fn from(r: RegistryUrl) -> String {
        r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_follow_the_distribution_grammar() {
        for ok in ["a", "app", "team/app", "my-app", "my--app", "my_app", "my__app", "a.b", "x/y/z9"] {
            assert!(ok.parse::<Repository>().is_ok(), "{ok}");
        }
        for no in ["", "App", "app_", "-app", "a___b", "a/", "/a", "a//b", "a b", "a:b", "a._b", "--rm"] {
            assert!(no.parse::<Repository>().is_err(), "{no}");
        }
    }

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d"] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        let long = "a".repeat(129);
        for no in ["", ".x", "-x", "a/b", "a:b", long.as_str(), "tag with space"] {
            assert!(no.parse::<Tag>().is_err(), "{no}");
        }
    }

    #[test]
    fn hosts_and_registry_urls() {
        for ok in ["localhost", "127.0.0.1:5000", "ghcr.io", "reg-1.example.com:443", "[::1]:5000"] {
            assert!(ok.parse::<RegistryHost>().is_ok(), "{ok}");
        }
        for no in ["", "-x.io", "a..b", "host:0", "host:99999", "host:", "ho_st", "[zz]:1"] {
            assert!(no.parse::<RegistryHost>().is_err(), "{no}");
        }
        let url: RegistryUrl = "127.0.0.1:5000/team".parse().unwrap();
        assert_eq!(url.host.as_str(), "127.0.0.1:5000");
        assert_eq!(url.repository(&"app".parse().unwrap()).as_str(), "team/app");
        assert!("https://ghcr.io".parse::<RegistryUrl>().is_err());
    }

    #[test]
    fn image_refs_round_trip() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for text in ["127.0.0.1:5000/temp/x:latest".to_owned(), format!("ghcr.io/a/b@{digest}")] {
            let r: ImageRef = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
        }
        let r: ImageRef = "localhost:5000/app".parse().unwrap();
        assert_eq!(r.to_string(), "localhost:5000/app:latest");
        let job = crate::id::JobId::new();
        assert!(Tag::from(job).as_str().parse::<Tag>().is_ok());
        assert!(Repository::temp(job).as_str().parse::<Repository>().is_ok());
    }
}
