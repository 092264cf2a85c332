//! A Dockerfile read the way the builder reads it, to say on which line of the committed file
//! the instruction the builder names starts.
//!
//! Lines are counted as in the file: comments, blank lines and continuation lines all count.
//! Instructions are split as buildah 1.28 splits them: an escape character (`\`, or the one
//! an `# escape=` directive names) at the end of a line continues it; comment and blank lines
//! inside a continuation are skipped. That buildah does not know heredocs and reads their
//! lines as instructions, so this reader does too, and says where a heredoc was meant
//! ([`Dockerfile::heredoc_at`]) for the hint.

/// What the builder accepts as an instruction keyword.
pub const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// One instruction, where it is in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// The 1-based line where it starts.
    pub line: u32,
    /// Its keyword as written (`RUN`, `run`, `RUNN`).
    pub keyword: String,
    /// Its lines as written, joined with `\n`.
    pub text: String,
    /// Its text as the builder prints it: continuations joined, comments left out.
    pub joined: String,
    /// The 1-based stage (`FROM` starts one), or 0 before the first `FROM`.
    pub stage: usize,
}

/// A parsed Dockerfile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dockerfile {
    instructions: Vec<Instruction>,
    /// Line ranges (first, last) of heredoc bodies (`RUN <<EOT` up to `EOT`).
    heredocs: Vec<(u32, u32)>,
}

impl Dockerfile {
    pub fn parse(text: &str) -> Dockerfile {
        let lines: Vec<&str> = text.lines().collect();
        let escape = escape_directive(&lines);
        let mut instructions: Vec<Instruction> = Vec::new();
        let mut stage = 0;
        let mut at = 0;
        while at < lines.len() {
            let trimmed = lines[at].trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                at += 1;
                continue;
            }
            let first = at;
            let (mut raw, mut joined) = (Vec::new(), String::new());
            loop {
                let line = lines[at];
                raw.push(line);
                at += 1;
                let Some(stripped) = line.trim_end().strip_suffix(escape) else {
                    joined.push_str(line);
                    break;
                };
                joined.push_str(stripped);
                // Comment and blank lines inside a continuation do not end the instruction.
                while at < lines.len() && is_skipped_inside(lines[at]) {
                    raw.push(lines[at]);
                    at += 1;
                }
                if at == lines.len() {
                    break;
                }
            }
            let joined = joined.trim().to_owned();
            let keyword = joined.split_whitespace().next().unwrap_or_default().to_owned();
            if keyword.eq_ignore_ascii_case("FROM") {
                stage += 1;
            }
            while raw.last().is_some_and(|l| is_skipped_inside(l)) {
                raw.pop();
            }
            instructions.push(Instruction { line: first as u32 + 1, keyword, text: raw.join("\n"), joined, stage });
        }
        let heredocs = heredocs(&lines, &instructions);
        Dockerfile { instructions, heredocs }
    }

    pub fn instructions(&self) -> &[Instruction] {
        &self.instructions
    }

    /// The `step`th instruction (1-based, `FROM` being the first) of stage `stage` (1-based),
    /// as buildah numbers its `STEP`s.
    pub fn step(&self, stage: usize, step: usize) -> Option<&Instruction> {
        self.instructions.iter().filter(|i| i.stage == stage).nth(step.checked_sub(1)?)
    }

    /// The first instruction whose printed form is `joined` (whitespace runs compared as one).
    pub fn find(&self, joined: &str) -> Option<&Instruction> {
        let wanted = squeeze(joined);
        self.instructions.iter().find(|i| squeeze(&i.joined).eq_ignore_ascii_case(&wanted))
    }

    /// The line of the heredoc (`RUN <<EOT`) whose body holds `line`, if one does.
    pub fn heredoc_at(&self, line: u32) -> Option<u32> {
        self.heredocs.iter().find(|(first, last)| (*first..=*last).contains(&line)).map(|(first, _)| first - 1)
    }
}

fn is_skipped_inside(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed.is_empty() || trimmed.starts_with('#')
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The escape character: `\`, unless a parser directive at the top says otherwise.
fn escape_directive(lines: &[&str]) -> char {
    for line in lines {
        let Some(comment) = line.trim().strip_prefix('#') else { break };
        let Some((name, value)) = comment.split_once('=') else { break };
        if name.trim().eq_ignore_ascii_case("escape") {
            return match value.trim() {
                "`" => '`',
                _ => '\\',
            };
        }
    }
    '\\'
}

/// The body line ranges of heredocs opened by `RUN`, `COPY` or `ADD` instructions.
fn heredocs(lines: &[&str], instructions: &[Instruction]) -> Vec<(u32, u32)> {
    let mut found = Vec::new();
    for instruction in instructions {
        if !["RUN", "COPY", "ADD"].iter().any(|k| instruction.keyword.eq_ignore_ascii_case(k)) {
            continue;
        }
        let Some(word) = heredoc_word(&instruction.joined) else { continue };
        let body_start = instruction.line as usize + instruction.text.lines().count() - 1;
        let end = lines[body_start.min(lines.len())..].iter().position(|l| l.trim() == word);
        if let Some(offset) = end {
            found.push((body_start as u32 + 1, (body_start + offset) as u32 + 1));
        }
    }
    found
}

/// `EOT` in `RUN <<EOT`, `<<-EOT`, `<<"EOT"`, `<<'EOT'`.
fn heredoc_word(joined: &str) -> Option<String> {
    let after = &joined[joined.find("<<")? + 2..];
    let after = after.strip_prefix('-').unwrap_or(after);
    let word: String =
        after.trim_start_matches(['"', '\'']).chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    (!word.is_empty()).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = "\
# syntax=docker/dockerfile:1
ARG BASE=scratch
FROM ${BASE} AS tools
COPY busybox /bin/busybox

# build it
RUN echo one && \\
    # a comment inside
    echo two && \\

    exit 3
FROM tools
run echo lower
";

    #[test]
    fn instructions_start_where_the_file_says_and_continuations_join() {
        let file = Dockerfile::parse(MULTI);
        let found: Vec<(u32, &str, usize)> =
            file.instructions().iter().map(|i| (i.line, i.keyword.as_str(), i.stage)).collect();
        assert_eq!(
            found,
            vec![(2, "ARG", 0), (3, "FROM", 1), (4, "COPY", 1), (7, "RUN", 1), (12, "FROM", 2), (13, "run", 2)]
        );
        let run = file.step(1, 3).unwrap();
        assert_eq!(run.line, 7);
        assert_eq!(run.joined, "RUN echo one &&     echo two &&     exit 3");
        assert_eq!(run.text, "RUN echo one && \\\n    # a comment inside\n    echo two && \\\n\n    exit 3");
        assert_eq!(file.step(2, 2).unwrap().line, 13);
        assert_eq!(file.step(2, 3), None);
        assert_eq!(file.step(1, 0), None);
        assert_eq!(file.find("RUN echo one && echo two && exit 3").unwrap().line, 7);
    }

    #[test]
    fn an_escape_directive_changes_the_continuation_character() {
        let file = Dockerfile::parse("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  /w\nCOPY a b\n");
        let lines: Vec<u32> = file.instructions().iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![2, 3, 5]);
        assert_eq!(file.step(1, 2).unwrap().joined, "RUN dir c:\\   /w");
    }

    #[test]
    fn heredoc_bodies_are_read_as_this_builder_reads_them_and_found_for_the_hint() {
        let file = Dockerfile::parse("FROM scratch\nRUN <<EOT\necho in heredoc\nexit 5\nEOT\n");
        assert_eq!(file.step(1, 3).unwrap().line, 3);
        assert_eq!(file.heredoc_at(3), Some(2));
        assert_eq!(file.heredoc_at(5), Some(2));
        assert_eq!(file.heredoc_at(1), None);
    }

    #[test]
    fn a_continuation_at_the_end_of_the_file_ends_the_instruction() {
        let file = Dockerfile::parse("FROM scratch\nRUN true \\\n");
        assert_eq!(file.instructions().len(), 2);
        assert_eq!(file.step(1, 2).unwrap().joined, "RUN true");
        assert_eq!(Dockerfile::parse("").instructions().len(), 0);
    }
}
