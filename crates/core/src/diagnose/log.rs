//! A run's log cut into the steps jobforge ran: each starts at jobforge's own line naming it
//! (`$ git -C . fetch ...` from the local backend, `==> fetching main from ...` from the
//! Nomad task scripts) and holds the tool's output up to the next.

use crate::logs::LogLine;
use crate::status::Stream;

/// The program a step ran, and the subcommand that matters for the diagnosis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Setting up the checkout: `git init`, `git config`, `git checkout`.
    Git,
    GitFetch,
    /// Listing the remote's branches after a fetch failed, for the hint.
    GitLsRemote,
    BuildahBuild,
    /// Pushing an image (`buildah push`, `skopeo copy`), pulling one to publish it.
    Push,
    Pull,
    /// A test container (`podman run`; on Nomad the task itself).
    Container,
    /// Anything else, or the lines before the first step.
    Other,
}

/// One step and what it printed.
#[derive(Debug)]
pub struct Segment<'a> {
    pub tool: Tool,
    /// The tool's own lines (stdout and stderr), in order.
    pub output: Vec<&'a str>,
    /// jobforge's other lines within the step: how it ended, checks that failed, Nomad's task
    /// events.
    pub notes: Vec<&'a str>,
}

impl Segment<'_> {
    /// Every line of the step, output and notes, as one text to search.
    pub fn text(&self) -> String {
        let mut all = self.output.clone();
        all.extend(&self.notes);
        all.join("\n")
    }
}

/// The steps of a run, in order; lines before the first step form a step of [`Tool::Other`]
/// (on Nomad, a test task's output has no step line at all).
pub fn segments(lines: &[LogLine]) -> Vec<Segment<'_>> {
    let mut out = vec![Segment { tool: Tool::Other, output: Vec::new(), notes: Vec::new() }];
    for line in lines {
        let text = line.text.as_str();
        match (line.stream, step_tool(text)) {
            (Stream::System, Some(tool)) => out.push(Segment { tool, output: Vec::new(), notes: Vec::new() }),
            (Stream::System, None) => out.last_mut().into_iter().for_each(|s| s.notes.push(text)),
            (Stream::Stdout | Stream::Stderr, _) => out.last_mut().into_iter().for_each(|s| s.output.push(text)),
        }
    }
    if out.len() > 1 && out[0].output.is_empty() && out[0].notes.is_empty() {
        out.remove(0);
    }
    out
}

/// The tool of a line that starts a step, `None` for other lines.
fn step_tool(text: &str) -> Option<Tool> {
    if let Some(command) = text.strip_prefix("$ ") {
        return Some(command_tool(command));
    }
    let said = text.strip_prefix("==> ")?;
    Some(match said.split_whitespace().next().unwrap_or_default() {
        "fetching" => Tool::GitFetch,
        "branches" => Tool::GitLsRemote,
        "buildah" => Tool::BuildahBuild,
        "pushing" => Tool::Push,
        "pulling" => Tool::Pull,
        // Other remarks of the script belong to the step they are made in.
        _ => return None,
    })
}

/// The tool of a command line as the local backend prints it (`git -C . fetch ...`,
/// `buildah --root $STORAGE ... bud ...`).
fn command_tool(command: &str) -> Tool {
    let mut words = command.split_whitespace();
    let program = words.next().unwrap_or_default().rsplit('/').next().unwrap_or_default();
    // Options come before the subcommand and some take a value; the first known
    // subcommand word is the one.
    let has = |names: &[&str]| command.split_whitespace().skip(1).any(|w| names.contains(&w));
    match program {
        "git" if has(&["fetch"]) => Tool::GitFetch,
        "git" if has(&["ls-remote"]) => Tool::GitLsRemote,
        "git" => Tool::Git,
        "buildah" if has(&["bud", "build"]) => Tool::BuildahBuild,
        "buildah" if has(&["push"]) => Tool::Push,
        "buildah" if has(&["pull"]) => Tool::Pull,
        "skopeo" => Tool::Push,
        "podman" if has(&["run"]) => Tool::Container,
        _ => Tool::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Phase;
    use crate::time::Timestamp;

    fn line(stream: Stream, text: &str) -> LogLine {
        LogLine { seq: 1, ts: Timestamp::now(), phase: Phase::Build, test: None, stream, text: text.into() }
    }

    #[test]
    fn steps_start_at_jobforge_lines_and_hold_the_tools_output() {
        let lines = vec![
            line(Stream::System, "$ git init --quiet ."),
            line(Stream::System, "$ git -C . fetch --depth 1 --no-tags origin mian"),
            line(Stream::Stderr, "fatal: couldn't find remote ref mian"),
            line(Stream::System, "git exited with code 128"),
            line(Stream::System, "$ git -C . ls-remote --heads origin"),
            line(Stream::Stdout, "1234\trefs/heads/main"),
            line(Stream::System, "==> buildah bud Dockerfile"),
            line(Stream::System, "$ buildah --root $STORAGE --runroot $RUNROOT bud --layers ."),
            line(Stream::System, "$ skopeo copy docker://a docker://b"),
            line(Stream::System, "$ podman --root $STORAGE run --rm img sh -c true"),
        ];
        let found: Vec<(Tool, Vec<&str>, Vec<&str>)> =
            segments(&lines).into_iter().map(|s| (s.tool, s.output, s.notes)).collect();
        assert_eq!(
            found,
            vec![
                (Tool::Git, vec![], vec![]),
                (Tool::GitFetch, vec!["fatal: couldn't find remote ref mian"], vec!["git exited with code 128"]),
                (Tool::GitLsRemote, vec!["1234\trefs/heads/main"], vec![]),
                (Tool::BuildahBuild, vec![], vec![]),
                (Tool::BuildahBuild, vec![], vec![]),
                (Tool::Push, vec![], vec![]),
                (Tool::Container, vec![], vec![]),
            ]
        );
    }

    #[test]
    fn output_without_a_step_line_is_one_step() {
        let lines = vec![line(Stream::Stdout, "testing"), line(Stream::System, "nomad: Terminated")];
        let found = segments(&lines);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].tool, found[0].output.clone(), found[0].notes.clone()),
            (Tool::Other, vec!["testing"], vec!["nomad: Terminated"])
        );
    }
}
