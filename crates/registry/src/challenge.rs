//! Parsing `WWW-Authenticate` challenges (RFC 7235) into the two schemes registries use: `Basic`
//! and `Bearer` (the distribution token protocol).
//!
//! Pure text handling: no HTTP, no credentials. It must not guess: a challenge it cannot use
//! (an unknown scheme, a `Bearer` without `realm`) is left out, and the caller treats the 401 as
//! final.

/// A challenge the client can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Send the credentials as HTTP Basic.
    Basic,
    /// Fetch a token from `realm` (with `service` and `scope` as query parameters), then send it
    /// as `Authorization: Bearer`.
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Every usable challenge in one header value, in order. A header may hold several challenges
/// (`Bearer realm="..",scope="..", Basic realm=".."`); quoted values may contain commas.
pub(crate) fn parse(header: &str) -> Vec<Challenge> {
    let mut raw: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut lexer = Lexer { rest: header };
    loop {
        lexer.skip_separators();
        let Some(token) = lexer.token() else { break };
        lexer.skip_spaces();
        if lexer.eat('=') {
            lexer.skip_spaces();
            let value = lexer.value();
            if let Some((_, params)) = raw.last_mut() {
                params.push((token.to_ascii_lowercase(), value));
            }
        } else {
            raw.push((token.to_owned(), Vec::new()));
        }
    }
    raw.into_iter().filter_map(|(scheme, params)| challenge(&scheme, params)).collect()
}

fn challenge(scheme: &str, params: Vec<(String, String)>) -> Option<Challenge> {
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for (name, value) in params {
        match name.as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
    }
    Some(Challenge::Bearer { realm: realm.filter(|r| !r.is_empty())?, service, scope })
}

struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn skip_separators(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', ',']);
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// An RFC 7230 token (also covers token68 characters except trailing `=`).
    fn token(&mut self) -> Option<&'a str> {
        loop {
            let end = self.rest.find([' ', '\t', ',', '=', '"']).unwrap_or(self.rest.len());
            if end > 0 {
                let (token, rest) = self.rest.split_at(end);
                self.rest = rest;
                return Some(token);
            }
            // A stray quote, `=` or separator: skip one character so parsing always advances.
            let mut chars = self.rest.chars();
            chars.next()?;
            self.rest = chars.as_str();
        }
    }

    /// A quoted string (with `\` escapes) or a bare token.
    fn value(&mut self) -> String {
        if !self.eat('"') {
            let end = self.rest.find([' ', '\t', ',']).unwrap_or(self.rest.len());
            let (value, rest) = self.rest.split_at(end);
            self.rest = rest;
            return value.to_owned();
        }
        let mut value = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return value;
                }
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                c => value.push(c),
            }
        }
        // Unterminated quote: take the rest.
        self.rest = "";
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.to_owned(),
            service: service.map(str::to_owned),
            scope: scope.map(str::to_owned),
        }
    }

    #[test]
    fn bearer_with_a_quoted_scope_containing_commas() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#;
        assert_eq!(
            parse(header),
            vec![bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/busybox:pull,push")
            )]
        );
    }

    #[test]
    fn basic_and_case_and_spacing() {
        assert_eq!(parse(r#"Basic realm="test""#), vec![Challenge::Basic]);
        assert_eq!(parse("basic"), vec![Challenge::Basic]);
        assert_eq!(
            parse(r#"BEARER Realm = "http://h/t" , Service=reg"#),
            vec![bearer("http://h/t", Some("reg"), None)]
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let header = r#"Bearer realm="http://h/token",scope="a:b:pull,push", Basic realm="x""#;
        assert_eq!(parse(header), vec![bearer("http://h/token", None, Some("a:b:pull,push")), Challenge::Basic]);
    }

    #[test]
    fn unusable_challenges_are_left_out() {
        assert_eq!(parse(r#"Bearer service="reg""#), vec![]);
        assert_eq!(parse(r#"Negotiate abc=="#), vec![]);
        assert_eq!(parse(""), vec![]);
        assert_eq!(parse(r#"=",,"""#), vec![]);
        assert_eq!(parse(r#"Bearer realm="http://h/t\"x"#), vec![bearer(r#"http://h/t"x"#, None, None)]);
    }
}
