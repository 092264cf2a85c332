//! A failed build: fetching the repository (git), the checks of `dockerfile_path` and
//! `context`, buildah's build and its push of the temp image.

use crate::failure::{Cause, DockerfileSpot};

use super::dockerfile::{Dockerfile, INSTRUCTIONS, Instruction};
use super::log::{Segment, Tool};
use super::{Checkout, Diagnosis, Evidence, signs, suggest};

/// At most this many names in a hint's list.
const LISTED: usize = 12;

pub(super) fn diagnose(evidence: &Evidence<'_>, segments: &[Segment<'_>]) -> Diagnosis {
    if let Some(line) = segments.iter().flat_map(|s| s.output.iter().chain(&s.notes)).find(|l| is_check_failure(l)) {
        return path_missing(evidence, line);
    }
    // The branch listing runs after a failed fetch, to explain it; the fetch is what failed.
    let Some(failing) = segments.iter().rev().find(|s| s.tool != Tool::GitLsRemote) else {
        return Diagnosis::new(Cause::BuildStep);
    };
    match failing.tool {
        Tool::Git | Tool::GitFetch => git(evidence, failing, segments),
        Tool::BuildahBuild => buildah(evidence, failing),
        Tool::Push | Tool::Pull => super::transfer(evidence, segments, Tool::Push),
        Tool::GitLsRemote | Tool::Container | Tool::Other => {
            Diagnosis::new(Cause::BuildStep).excerpt(failing.output.iter().copied())
        }
    }
}

/// `dockerfile_path: "Dockerfile.missing" does not exist in the repository`, as the local
/// backend and the Nomad build script both say it.
fn is_check_failure(line: &str) -> bool {
    (line.starts_with("dockerfile_path: ") || line.starts_with("context: ")) && line.ends_with("the repository")
        || line.ends_with("(through a symbolic link)")
}

fn path_missing(evidence: &Evidence<'_>, line: &str) -> Diagnosis {
    let found = Diagnosis::new(Cause::Dockerfile).excerpt([line]);
    let Some(checkout) = evidence.checkout else { return found };
    let (wanted, directories) =
        if line.starts_with("context: ") { (evidence.context, true) } else { (evidence.dockerfile_path, false) };
    let candidates: Vec<&str> =
        checkout.files.iter().filter(|f| f.ends_with('/') == directories).map(|f| f.trim_end_matches('/')).collect();
    let close = suggest::closest(wanted, candidates.iter().copied(), 3);
    if !close.is_empty() {
        return found.hint(format!("the repository has no `{wanted}`; did you mean {}?", quoted(&close, " or ")));
    }
    let dockerfiles: Vec<&str> = candidates.into_iter().filter(|f| looks_like_a_dockerfile(f)).take(LISTED).collect();
    match (directories, dockerfiles.as_slice()) {
        (false, []) => found.hint(format!("the repository has no `{wanted}`, and no file named like a Dockerfile")),
        (false, names) => {
            found.hint(format!("the repository has no `{wanted}`; its Dockerfiles: {}", quoted(names, ", ")))
        }
        (true, _) => found.hint(format!("the repository has no directory `{wanted}`")),
    }
}

fn looks_like_a_dockerfile(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    name.contains("dockerfile") || name.contains("containerfile")
}

fn git(evidence: &Evidence<'_>, step: &Segment<'_>, segments: &[Segment<'_>]) -> Diagnosis {
    let text = step.text();
    let found = Diagnosis::new(Cause::Clone).excerpt(step.output.iter().copied());
    if signs::git_auth(&text) {
        let found = Diagnosis { cause: Cause::Auth, retryable: false, ..found };
        return if evidence.git_credentials {
            found.hint("the git server refused the credentials read from git_credentials_path: check the user name and token, and that they may read this repository")
        } else {
            found.hint(
                "the repository asks for credentials: store them in Vault and name the path in git_credentials_path",
            )
        };
    }
    if let Some(at) = text.find("couldn't find remote ref ") {
        let wanted = text[at + "couldn't find remote ref ".len()..].lines().next().unwrap_or_default().trim();
        return found.hint(missing_ref(wanted, &remote_branches(segments)));
    }
    if ["not our ref", "reference is not a tree", "did not match any"].iter().any(|n| text.contains(n)) {
        return found.hint("the commit named by git_ref is not in the repository (was it pushed?)");
    }
    if signs::transient(&text) {
        return found.retryable(true).hint("the repository's server could not be reached; trying again may work");
    }
    if ["does not appear to be a git repository", "not found", "returned error: 404"].iter().any(|n| text.contains(n)) {
        return found
            .hint("there is no repository at repo_url: check the URL (and, for a private one, git_credentials_path)");
    }
    found
}

/// The branches `git ls-remote --heads` listed after the fetch failed.
fn remote_branches<'a>(segments: &[Segment<'a>]) -> Vec<&'a str> {
    segments
        .iter()
        .filter(|s| s.tool == Tool::GitLsRemote)
        .flat_map(|s| s.output.iter())
        .filter_map(|line| line.split_once("refs/heads/").map(|(_, name)| name.trim()))
        .collect()
}

fn missing_ref(wanted: &str, branches: &[&str]) -> String {
    let mut hint = format!("the repository has no branch or tag `{wanted}`");
    if branches.is_empty() {
        return hint + ": check git_ref";
    }
    let close = suggest::closest(wanted, branches.iter().copied(), 1);
    if let Some(name) = close.first() {
        hint.push_str(&format!("; did you mean `{name}`?"));
    }
    let listed: Vec<&str> = branches.iter().copied().take(LISTED).collect();
    let more = branches.len().saturating_sub(LISTED);
    hint.push_str(&format!(" Its branches: {}", listed.join(", ")));
    if more > 0 {
        hint.push_str(&format!(" and {more} more"));
    }
    hint
}

/// Where buildah was when it failed: the last `STEP` it printed and what followed.
struct Progress<'a> {
    /// 1-based stage and step, and the instruction as buildah printed it.
    step: Option<(usize, usize, &'a str)>,
    /// The step's output up to and including the error.
    output: Vec<&'a str>,
    error: Option<&'a str>,
}

impl<'a> Progress<'a> {
    fn read(lines: &[&'a str]) -> Progress<'a> {
        let mut progress = Progress { step: None, output: Vec::new(), error: None };
        for line in lines {
            if let Some(step) = step_line(line) {
                progress = Progress { step: Some(step), output: Vec::new(), error: None };
            } else if !line.starts_with("--> ") && !line.starts_with("time=\"") {
                progress.output.push(line);
                if line.starts_with("Error: ") {
                    progress.error = Some(line);
                }
            }
        }
        progress
    }

    fn keyword(&self) -> String {
        self.step.map(|(_, _, text)| keyword(text)).unwrap_or_default()
    }
}

/// `[2/2] STEP 1/3: FROM scratch AS tools` or `STEP 4/5: RUN make`.
fn step_line(line: &str) -> Option<(usize, usize, &str)> {
    let (stage, rest) = match line.strip_prefix('[') {
        Some(rest) => {
            let (stage, rest) = rest.split_once("] ")?;
            (stage.split_once('/')?.0.parse().ok()?, rest)
        }
        None => (1, line),
    };
    let (numbers, text) = rest.strip_prefix("STEP ")?.split_once(": ")?;
    let step = numbers.split_once('/')?.0.parse().ok()?;
    Some((stage, step, text))
}

fn keyword(text: &str) -> String {
    text.split_whitespace().next().unwrap_or_default().to_ascii_uppercase()
}

fn buildah(evidence: &Evidence<'_>, step: &Segment<'_>) -> Diagnosis {
    let progress = Progress::read(&step.output);
    let error = progress.error.unwrap_or_default();
    let file = evidence.checkout.and_then(|c| c.dockerfile.as_deref()).map(Dockerfile::parse);
    let instruction = file.as_ref().and_then(|f| locate(f, &progress));
    let spot = instruction.map(|i| DockerfileSpot {
        path: evidence.dockerfile_path.to_owned(),
        line: i.line,
        instruction: bounded(&i.text),
    });
    let keyword = progress.keyword();
    let found = |cause: Cause| Diagnosis { dockerfile: spot.clone(), ..Diagnosis::new(cause) };
    if progress.step.is_none() && error.contains("no contents") {
        return found(Cause::Dockerfile).excerpt([error]).hint("the Dockerfile is empty");
    }
    if error.contains("Unknown instruction") {
        let hint = unknown_instruction(error, instruction, file.as_ref());
        return found(Cause::Dockerfile).excerpt([progress.step_text(), error_head(error)]).hint(hint);
    }
    if keyword == "FROM" || error.contains("creating build container") {
        return base_image(found(Cause::BaseImage), &progress, error);
    }
    if (keyword == "COPY" || keyword == "ADD")
        && (error.contains("no such file or directory") || error.contains("checking on sources"))
    {
        let hint = missing_source(evidence, &progress, error);
        return found(Cause::Dockerfile).excerpt(progress.output.iter().copied()).hint(hint);
    }
    if keyword == "RUN" && error.contains(": exit status ") {
        let found = found(Cause::BuildStep).excerpt(progress.output.iter().copied());
        return match error.rsplit(": exit status ").next() {
            Some("127") => {
                found.hint("exit status 127: a command this RUN calls is not in the image (or not on its PATH)")
            }
            Some("126") => found.hint("exit status 126: a command this RUN calls is not executable"),
            Some("137") => {
                found.hint("exit status 137: the step was killed (SIGKILL), most often for using too much memory")
            }
            _ => found,
        };
    }
    if error.contains("no space left on device") {
        return found(Cause::Infrastructure).excerpt([error]).hint("the build node ran out of disk space");
    }
    match progress.step {
        // Buildah refused the instruction itself: a bad flag or argument.
        Some(_) => found(Cause::Dockerfile).excerpt(progress.output.iter().copied()),
        None => found(Cause::Infrastructure).retryable(false).excerpt(step.output.iter().copied()),
    }
}

impl Progress<'_> {
    fn step_text(&self) -> &str {
        self.step.map(|(_, _, text)| text).unwrap_or_default()
    }
}

/// The instruction buildah was at: by its stage and step number, checked against the keyword
/// it printed; by its printed text where the numbers do not match.
fn locate<'f>(file: &'f Dockerfile, progress: &Progress<'_>) -> Option<&'f Instruction> {
    let (stage, index, text) = progress.step?;
    let wanted = keyword(text);
    match file.step(stage, index) {
        Some(found) if found.keyword.eq_ignore_ascii_case(&wanted) => Some(found),
        _ => file.find(text),
    }
}

/// An instruction as written, up to 2 KiB.
fn bounded(text: &str) -> String {
    crate::logs::split_long(text).into_iter().next().unwrap_or_default().to_owned()
}

/// Buildah's unknown-instruction error ends in a Go struct dump: the head says it all.
fn error_head(error: &str) -> &str {
    error.find(" &imagebuilder").map_or(error, |at| &error[..at])
}

fn unknown_instruction(error: &str, instruction: Option<&Instruction>, file: Option<&Dockerfile>) -> String {
    let written = instruction.map(|i| i.keyword.clone()).unwrap_or_else(|| {
        let after = error.split("Unknown instruction: \"").nth(1).unwrap_or_default();
        after.split('"').next().unwrap_or_default().to_owned()
    });
    if let (Some(i), Some(file)) = (instruction, file)
        && let Some(opened) = file.heredoc_at(i.line)
    {
        return format!(
            "line {} is inside the heredoc opened on line {opened}, and this builder (buildah 1.28) does not \
             support heredocs: it reads each line as an instruction. Join the commands into one RUN with && or \
             put them in a script file and COPY it",
            i.line
        );
    }
    let upper = written.to_ascii_uppercase();
    let mut hint = format!("`{written}` is not a Dockerfile instruction");
    if let Some(name) = suggest::closest(&upper, INSTRUCTIONS.iter().copied(), 1).first() {
        hint.push_str(&format!("; did you mean {name}?"));
    }
    hint + &format!(" The instructions are: {}", INSTRUCTIONS.join(", "))
}

fn base_image(found: Diagnosis, progress: &Progress<'_>, error: &str) -> Diagnosis {
    let image = progress.step_text().split_whitespace().nth(1).unwrap_or_default().to_owned();
    let found = found.excerpt(progress.output.iter().copied());
    if signs::registry_auth(error) {
        return Diagnosis { cause: Cause::Auth, retryable: false, ..found }
            .hint(format!("the registry of `{image}` refused to serve it without credentials"));
    }
    if error.contains("short-name") {
        return found.hint(format!(
            "`{image}` is not a full image name and no registry to search is configured: name it in full, such \
             as docker.io/library/{image}"
        ));
    }
    if error.contains("server gave HTTP response to HTTPS client") {
        let host = image.split('/').next().unwrap_or_default();
        return found.hint(format!(
            "the registry {host} speaks plain HTTP, and base images are pulled over HTTPS unless the build \
             host's /etc/containers/registries.conf marks {host} insecure"
        ));
    }
    if signs::image_missing(error) {
        return found.hint(format!("the registry has no image `{image}`: check its name and tag"));
    }
    if signs::transient(error) {
        return found
            .retryable(true)
            .hint(format!("the registry of `{image}` could not be reached; trying again may work"));
    }
    found
}

fn missing_source(evidence: &Evidence<'_>, progress: &Progress<'_>, error: &str) -> String {
    let wanted = error
        .split("stat: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|path| path.trim_start_matches('/').to_owned())
        .unwrap_or_else(|| sources(progress.step_text()).first().cloned().unwrap_or_default());
    let context = evidence.context;
    let mut hint = format!("`{wanted}` is not in the build context (`{context}`)");
    let Some(checkout) = evidence.checkout else { return hint };
    let in_context = context_files(checkout, context);
    let close = suggest::closest(&wanted, in_context.iter().copied(), 3);
    if !close.is_empty() {
        hint.push_str(&format!("; did you mean {}?", quoted(&close, " or ")));
    }
    if checkout.files.iter().any(|f| f == ".dockerignore" || f.ends_with("/.dockerignore")) {
        hint.push_str(" (.dockerignore may leave it out, too)");
    }
    hint
}

/// The sources of `COPY [--flags] a b dest`.
fn sources(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().skip(1).filter(|w| !w.starts_with("--")).collect();
    words[..words.len().saturating_sub(1)].iter().map(|w| (*w).to_owned()).collect()
}

/// The checkout's paths inside `context`, relative to it.
fn context_files<'c>(checkout: &'c Checkout, context: &str) -> Vec<&'c str> {
    let prefix = match context.trim_end_matches('/') {
        "." | "" => String::new(),
        dir => format!("{dir}/"),
    };
    checkout
        .files
        .iter()
        .filter_map(|f| f.strip_prefix(prefix.as_str()))
        .map(|f| f.trim_end_matches('/'))
        .filter(|f| !f.is_empty())
        .collect()
}

fn quoted(names: &[&str], separator: &str) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(separator)
}
