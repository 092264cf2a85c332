//! Nomad's two interpolations of a task, as its client does them:
//!
//! - [`replace_env`]: each `Env` value goes through `helper/args.ReplaceEnv`, which replaces
//!   every match of `\$\{[a-zA-Z0-9_\-\.\[\]]+\}` whose key it knows (node attributes,
//!   `node.*`, `meta.*`, the task's `NOMAD_*` and meta variables) and leaves any other text,
//!   unknown keys included, as it is. There is no escape.
//! - [`driver_template`]: the driver config is decoded as HCL JSON with the task's variables
//!   (`TaskEnv.AllValues`), so each of its strings is an HCL template: `${expr}` is evaluated
//!   and fails the task when it cannot be (an unknown variable, a shell-style `${X:-y}`),
//!   `%{...}` starts a directive, and `$${` and `%%{` are the escapes for the literal text.
//!   This fake evaluates variable references (`${NAME}`, `${attr.unique.hostname}`,
//!   `${env["NAME"]}`) and the escapes; any other expression or directive fails the task, as a
//!   malformed one does in Nomad, so a job relying on more would be caught here rather than
//!   pass.

use std::collections::BTreeMap;

use super::scheduler::Node;

/// `ReplaceEnv`: known `${key}` replaced, everything else as it is.
pub(crate) fn replace_env(node: &Node, text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let len = after.find(|c: char| !is_key_char(c)).unwrap_or(after.len());
        let key = &after[..len];
        let value = (len > 0 && after[len..].starts_with('}')).then(|| lookup(node, key, env)).flatten();
        match value {
            Some(value) => {
                out.push_str(&value);
                rest = &after[len + 1..];
            }
            None => {
                // Not a match, or a key the client does not know: the `$` stays, and the
                // search goes on from the next character, as the regexp's does.
                out.push('$');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']')
}

/// A variable of the task: its environment first, then the node's attributes and meta.
fn lookup(node: &Node, key: &str, env: &BTreeMap<String, String>) -> Option<String> {
    if let Some(value) = env.get(key) {
        return Some(value.clone());
    }
    let node_key = ["attr.", "meta.", "node."].iter().any(|p| key.starts_with(p));
    if node_key { node.resolve(&format!("${{{key}}}")) } else { None }
}

/// One string of a driver config, evaluated as the HCL template Nomad takes it for; the error
/// is the diagnostic that fails the task.
pub(crate) fn driver_template(node: &Node, text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['$', '%']) {
        out.push_str(&rest[..at]);
        let here = &rest[at..];
        if let Some(after) = here.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = here.strip_prefix("%%{") {
            out.push_str("%{");
            rest = after;
        } else if let Some(after) = here.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err("Unterminated template string: No closing marker was found for the string.".into());
            };
            out.push_str(&evaluate(node, &after[..end], env)?);
            rest = &after[end + 1..];
        } else if let Some(after) = here.strip_prefix("%{") {
            let keyword = after.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or_default();
            return Err(if matches!(keyword, "if" | "else" | "endif" | "for" | "endfor") {
                format!(
                    "fake nomad does not evaluate template directives: %{{{}",
                    after.chars().take(40).collect::<String>()
                )
            } else {
                format!("Invalid template control keyword: {keyword:?} is not a valid template control keyword.")
            });
        } else {
            out.push_str(&here[..1]);
            rest = &here[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `${expr}` where `expr` is a variable reference: a dotted name (`NOMAD_TASK_DIR`,
/// `attr.unique.hostname`, `meta.gpu-capable`) or `env["NAME"]`.
fn evaluate(node: &Node, expr: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let expr = expr.trim();
    if let Some(name) = expr.strip_prefix("env[\"").and_then(|e| e.strip_suffix("\"]")) {
        return env.get(name).cloned().ok_or_else(|| {
            format!("Invalid index: The given key does not identify an element in this collection value: {name:?}.")
        });
    }
    let identifier = |part: &str| {
        part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let traversal_len =
        expr.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))).unwrap_or(expr.len());
    let (name, extra) = expr.split_at(traversal_len);
    if name.is_empty() || !name.split('.').all(identifier) {
        return Err(format!("Invalid expression: Expected the start of an expression, but found {expr:?}."));
    }
    if !extra.trim().is_empty() {
        return Err(format!(
            "Extra characters after interpolation expression: Expected a closing brace to end the interpolation \
             expression, but found extra characters {:?}.",
            extra.trim()
        ));
    }
    if let Some(value) = lookup(node, name, env) {
        return Ok(value);
    }
    let root = name.split('.').next().unwrap_or(name);
    if matches!(root, "attr" | "meta" | "node") || env.keys().any(|k| k.starts_with(&format!("{root}."))) {
        let last = name.rsplit('.').next().unwrap_or(name);
        Err(format!("Unsupported attribute: This object does not have an attribute named {last:?}."))
    } else {
        Err(format!("Unknown variable: There is no variable named {root:?}."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("NOMAD_TASK_DIR", "/local"), ("NOMAD_JOB_NAME", "job"), ("A.B", "dotted")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn env_values_get_known_keys_replaced_and_the_rest_left() {
        let node = Node::new("dc1", 1000, 1000);
        let host = node.name.clone();
        let cases = [
            ("${NOMAD_TASK_DIR}/x", "/local/x".to_owned()),
            ("a ${attr.unique.hostname} ${node.datacenter}", format!("a {host} dc1")),
            (
                "${UNKNOWN} ${attr.nope} ${HOME:+x} ${} $NOMAD_TASK_DIR",
                "${UNKNOWN} ${attr.nope} ${HOME:+x} ${} $NOMAD_TASK_DIR".to_owned(),
            ),
            ("$${NOMAD_JOB_NAME} ${${NOMAD_JOB_NAME}}", "$job ${job}".to_owned()),
            ("\\0044{NOMAD_TASK_DIR}", "\\0044{NOMAD_TASK_DIR}".to_owned()),
        ];
        for (text, expected) in cases {
            assert_eq!(replace_env(&node, text, &env()), expected, "{text}");
        }
    }

    #[test]
    fn driver_config_strings_are_hcl_templates() {
        let node = Node::new("dc1", 1000, 1000);
        let ok = [
            ("sh -c 'echo $HOME'", "sh -c 'echo $HOME'".to_owned()),
            ("${NOMAD_TASK_DIR}/a ${ NOMAD_JOB_NAME }", "/local/a job".to_owned()),
            ("${node.datacenter} ${env[\"A.B\"]}", "dc1 dotted".to_owned()),
            ("$${HOME:-x} %%{ if } 100% $ %", "${HOME:-x} %{ if } 100% $ %".to_owned()),
        ];
        for (text, expected) in ok {
            assert_eq!(driver_template(&node, text, &env()).as_deref(), Ok(expected.as_str()), "{text}");
        }
        let failing = [
            ("${HOME:-x}", "Extra characters"),
            ("${UNKNOWN}", "Unknown variable"),
            ("${attr.nope}", "Unsupported attribute"),
            ("${NOMAD_TASK_DIR", "Unterminated"),
            ("%{test}", "Invalid template control keyword"),
            ("%{ if true }x%{ endif }", "directives"),
            ("%{ if \"ünïcödé-ünïcödé-ünïcödé-ünïcödé\" }", "directives"),
            ("${1 + 2}", "Invalid expression"),
        ];
        for (text, message) in failing {
            let error = driver_template(&node, text, &env()).unwrap_err();
            assert!(error.contains(message), "{text}: {error}");
        }
    }
}
