//! Who may do what: the [`Caller`] a request was authenticated as, its [`Role`], and the rules
//! that follow from them (which jobs it sees, which it may change, which secrets its jobs may
//! name).
//!
//! Pure rules, no IO: where callers come from (tokens, an auth file) is the server's business,
//! and every front end (REST, the compat endpoints, MCP, the event streams) asks these same
//! questions through the server's service layer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::JobSpec;
use crate::secret::SecretPath;

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Submit jobs, and read, watch, kill and clean up the jobs of its own owner.
    Submit,
    /// Read every job; change nothing.
    Read,
    /// Everything, including zombies and the service's configuration.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submit => "submit",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "submit" => Ok(Role::Submit),
            "read" => Ok(Role::Read),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}: one of submit, read, admin")),
        }
    }
}

/// A pattern of secret paths a token's jobs may name: `/`-separated segments where `*` stands
/// for any characters within one segment and a last segment `**` for anything below.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretPattern(String);

impl SecretPattern {
    pub fn matches(&self, path: &SecretPath) -> bool {
        let mut pattern = self.0.split('/');
        let mut segments = path.as_str().split('/');
        loop {
            match (pattern.next(), segments.next()) {
                (Some("**"), Some(_)) => return true,
                (Some(want), Some(got)) if glob(want.as_bytes(), got.as_bytes()) => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `*` matches any run of bytes (within one segment: the caller splits on `/`).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((want, rest)) => text.split_first().is_some_and(|(got, tail)| got == want && glob(rest, tail)),
    }
}

impl FromStr for SecretPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 512 || s.starts_with('/') {
            return Err("must be a relative path pattern of at most 512 characters".into());
        }
        let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*');
        for (i, segment) in s.split('/').enumerate() {
            let last = i + 1 == s.split('/').count();
            if segment == "**" && last {
                continue;
            }
            let dots = segment == "." || segment == "..";
            if segment.is_empty() || dots || segment.contains("**") || !segment.bytes().all(plain) {
                return Err(format!(
                    "segment {segment:?} is not allowed: [A-Za-z0-9_.-] (not '.' or '..') and '*' (any characters \
                     within the segment), \
                     or '**' as the last segment (anything below)"
                ));
            }
        }
        Ok(SecretPattern(s.to_owned()))
    }
}

impl TryFrom<String> for SecretPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SecretPattern> for String {
    fn from(p: SecretPattern) -> String {
        p.0
    }
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Anyone, on a service started without tokens (loopback only, or `--insecure-no-auth`).
    Anyone,
    /// The holder of a configured token.
    Token(TokenHolder),
}

/// A token's entry, without the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenHolder {
    pub name: String,
    pub role: Role,
    /// The owner its jobs belong to; a submit token without one submits jobs with no owner
    /// and sees only those.
    pub owner: Option<String>,
    /// The secret paths its jobs may name.
    pub secrets: Vec<SecretPattern>,
}

/// Why a caller may not do a thing. `Hidden` is answered as if the job did not exist, so a
/// caller learns nothing about other owners' jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    Hidden,
    Forbidden { field: Option<String>, message: String },
}

impl Caller {
    pub fn role(&self) -> Role {
        match self {
            Caller::Anyone => Role::Admin,
            Caller::Token(holder) => holder.role,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Anyone => None,
            Caller::Token(holder) => Some(&holder.name),
        }
    }

    /// The owner every job and every query of this caller is bound to, if it is bound.
    pub fn bound_owner(&self) -> Option<Option<&str>> {
        match self {
            Caller::Token(holder) if holder.role == Role::Submit => Some(holder.owner.as_deref()),
            _ => None,
        }
    }

    /// Whether the caller sees a job of `owner` at all.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        self.bound_owner().is_none_or(|bound| bound == owner)
    }

    /// May it read the job (status, logs, events)?
    pub fn may_read(&self, owner: Option<&str>) -> Result<(), Denied> {
        if self.sees(owner) { Ok(()) } else { Err(Denied::Hidden) }
    }

    /// May it kill or clean up the job?
    pub fn may_change(&self, owner: Option<&str>) -> Result<(), Denied> {
        self.may_read(owner)?;
        match self.role() {
            Role::Read => Err(self.forbidden(None, "may read jobs but not kill or clean them up")),
            Role::Submit | Role::Admin => Ok(()),
        }
    }

    /// What only an admin may do (zombies, the configuration).
    pub fn may_administer(&self) -> Result<(), Denied> {
        match self.role() {
            Role::Admin => Ok(()),
            Role::Submit | Role::Read => Err(self.forbidden(None, "may not do this: it needs an admin token")),
        }
    }

    /// May it submit `spec`? On success `spec.owner` is the caller's owner where the caller is
    /// bound to one. Every secret path the job names must be allowed to the caller.
    pub fn may_submit(&self, spec: &mut JobSpec) -> Result<(), Denied> {
        let Caller::Token(holder) = self else { return Ok(()) };
        if holder.role == Role::Read {
            return Err(self.forbidden(None, "may read jobs but not submit them"));
        }
        if holder.role == Role::Submit {
            match (&spec.owner, &holder.owner) {
                (Some(asked), bound) if Some(asked) != bound.as_ref() => {
                    let message = match bound {
                        Some(bound) => format!("is {asked:?}, but this token submits jobs for {bound:?} only"),
                        None => format!("is {asked:?}, but this token submits jobs without an owner only"),
                    };
                    return Err(self.forbidden(Some("owner"), &message));
                }
                _ => spec.owner.clone_from(&holder.owner),
            }
            for (field, path) in spec.secret_refs() {
                if !holder.secrets.iter().any(|pattern| pattern.matches(path)) {
                    let message = format!("names secret {path}, which this token's jobs may not use");
                    return Err(self.forbidden(Some(&field), &message));
                }
            }
        }
        Ok(())
    }

    fn forbidden(&self, field: Option<&str>, what: &str) -> Denied {
        let who = match self.name() {
            Some(name) => format!("token {name:?} ({} role)", self.role()),
            None => "this caller".to_owned(),
        };
        let message = match field {
            Some(field) => format!("{field} {what} ({who})"),
            None => format!("{who} {what}"),
        };
        Denied::Forbidden { field: field.map(str::to_owned), message }
    }
}

#[cfg(test)]
mod tests;
