//! The diagnosis of real output: every `testdata/*.log` was recorded from a job that failed on
//! this machine's buildah 1.28, git 2.47 and podman 4.3 through the local backend (one line
//! per log line: `out|`, `err|` or `sys|` for the stream, the test's index after it). The
//! Nomad cases are the fake's task events and placement notes, which the backend reports as
//! `system` lines. (`ref-missing.log` was recorded before the backend listed the remote's
//! branches after a failed fetch; its last lines are `git ls-remote --heads` run by hand
//! against the same repository.)

use super::*;
use crate::time::Timestamp;

/// The recorded repositories' files.
const FILES: &[&str] = &["Dockerfile", "busybox", "hello.txt", "src/", "src/main.c"];

fn recorded(name: &str, test: Option<u32>) -> Vec<LogLine> {
    let path = format!("{}/src/diagnose/testdata/{name}.log", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines().enumerate().filter_map(|(n, row)| parse_row(n, row, test)).collect()
}

fn parse_row(n: usize, row: &str, test: Option<u32>) -> Option<LogLine> {
    let (tag, text) = row.split_once("| ").unwrap_or((row.trim_end_matches('|'), ""));
    let (stream, index) = tag.split_at(3);
    let index: Option<u32> = index.parse().ok();
    if test.is_some() && index != test {
        return None;
    }
    let stream = match stream {
        "out" => Stream::Stdout,
        "err" => Stream::Stderr,
        _ => Stream::System,
    };
    let phase = if index.is_some() { Phase::Test } else { Phase::Build };
    Some(LogLine { seq: n as u64 + 1, ts: Timestamp::now(), phase, test: index, stream, text: text.to_owned() })
}

fn checkout(name: &str) -> Checkout {
    let path = format!("{}/src/diagnose/testdata/{name}.Dockerfile", env!("CARGO_MANIFEST_DIR"));
    Checkout { dockerfile: std::fs::read_to_string(path).ok(), files: FILES.iter().map(|f| (*f).to_owned()).collect() }
}

/// One recorded failure and what its diagnosis must say.
struct Case {
    name: &'static str,
    phase: Phase,
    reason: FailureReason,
    exit_code: Option<i32>,
    test: Option<u32>,
    message: &'static str,
    cause: Cause,
    retryable: bool,
    /// The Dockerfile line, where the failure is tied to an instruction.
    line: Option<u32>,
    /// Text the excerpt must hold (the tool's own words), and the hint.
    excerpt: &'static str,
    hint: Option<&'static str>,
    /// Whether the job named git credentials.
    git_credentials: bool,
}

const BUILD: Case = Case {
    name: "",
    phase: Phase::Build,
    reason: FailureReason::ExitCode,
    exit_code: Some(125),
    test: None,
    message: "build exited with code 125",
    cause: Cause::Dockerfile,
    retryable: false,
    line: None,
    excerpt: "",
    hint: None,
    git_credentials: false,
};

fn run(case: &Case, lines: &[LogLine], checkout: Option<&Checkout>) -> Diagnosis {
    let mut failure = Failure::new(case.phase, case.reason, case.message);
    failure.exit_code = case.exit_code;
    failure.test = case.test;
    let evidence = Evidence {
        failure: &failure,
        lines,
        checkout,
        dockerfile_path: if case.name == "dockerfile-path-missing" { "Dockerfile.missing" } else { "Dockerfile" },
        context: ".",
        git_credentials: case.git_credentials,
        registry_credentials: false,
        tail_lines: 30,
    };
    diagnose(&evidence)
}

fn check(case: Case) {
    let lines = recorded(case.name, case.test);
    let checkout = checkout(case.name);
    let got = run(&case, &lines, Some(&checkout));
    let name = case.name;
    assert_eq!((got.cause, got.retryable), (case.cause, case.retryable), "{name}: {got:#?}");
    assert_eq!(got.dockerfile.as_ref().map(|d| d.line), case.line, "{name}: {got:#?}");
    let excerpt = got.excerpt.join("\n");
    assert!(excerpt.contains(case.excerpt), "{name}: the excerpt holds {:?}:\n{excerpt}", case.excerpt);
    for line in &got.excerpt {
        assert!(
            !line.starts_with("$ ") && !line.starts_with("==> "),
            "{name}: jobforge's own line {line:?} in the excerpt"
        );
    }
    match (case.hint, &got.hint) {
        (Some(wanted), Some(hint)) => assert!(hint.contains(wanted), "{name}: the hint has {wanted:?}: {hint}"),
        (None, None) => {}
        (wanted, hint) => panic!("{name}: hint {hint:?}, wanted {wanted:?}"),
    }
    assert!(got.log_tail.iter().all(|l| !l.starts_with("$ ")), "{name}: {:?}", got.log_tail);
}

#[test]
fn a_run_instruction_exiting_non_zero_names_its_first_line_and_only_its_output() {
    check(Case {
        name: "run-exits-nonzero",
        exit_code: Some(3),
        cause: Cause::BuildStep,
        line: Some(5),
        excerpt: "Error: building at STEP \"RUN echo one &&     echo two &&     exit 3\": exit status 3",
        ..BUILD
    });
    let got = run(
        &Case { name: "run-exits-nonzero", ..BUILD },
        &recorded("run-exits-nonzero", None),
        Some(&checkout("run-exits-nonzero")),
    );
    assert_eq!(
        got.excerpt,
        vec![
            "one",
            "two",
            "subprocess exited with status 3",
            "Error: building at STEP \"RUN echo one &&     echo two &&     exit 3\": exit status 3",
        ]
    );
    let spot = got.dockerfile.unwrap();
    assert_eq!(
        (spot.path.as_str(), spot.instruction.as_str()),
        ("Dockerfile", "RUN echo one && \\\n    echo two && \\\n    exit 3")
    );
}

#[test]
fn a_failing_run_in_a_later_stage_is_found_in_that_stage() {
    check(Case {
        name: "multistage-run-fails",
        exit_code: Some(1),
        cause: Cause::BuildStep,
        line: Some(8),
        excerpt: "stage two",
        ..BUILD
    });
}

#[test]
fn dockerfile_mistakes_name_the_line_and_say_what_is_valid() {
    check(Case {
        name: "unknown-instruction",
        line: Some(4),
        excerpt: "Unknown instruction: \"RUNN\"",
        hint: Some("did you mean RUN?"),
        ..BUILD
    });
    check(Case {
        name: "heredoc-unsupported",
        line: Some(5),
        excerpt: "Unknown instruction: \"ECHO\"",
        hint: Some("inside the heredoc opened on line 4"),
        ..BUILD
    });
    check(Case { name: "copy-bad-flag", line: Some(4), excerpt: "COPY only supports the --chmod", ..BUILD });
    check(Case { name: "invalid-mount-option", line: Some(4), excerpt: "invalid mount option", ..BUILD });
    check(Case { name: "dockerfile-empty", excerpt: "no contents in \"Dockerfile\"", hint: Some("empty"), ..BUILD });
}

#[test]
fn a_missing_copy_source_suggests_the_names_that_exist() {
    check(Case {
        name: "copy-source-missing",
        line: Some(4),
        excerpt: "stat: \"/helo.txt\": no such file or directory",
        hint: Some("`helo.txt` is not in the build context (`.`); did you mean `hello.txt`?"),
        ..BUILD
    });
}

#[test]
fn a_missing_dockerfile_suggests_the_names_that_exist() {
    check(Case {
        name: "dockerfile-path-missing",
        exit_code: Some(1),
        excerpt: "dockerfile_path: \"Dockerfile.missing\" does not exist in the repository",
        hint: Some("the repository has no `Dockerfile.missing`; its Dockerfiles: `Dockerfile`"),
        ..BUILD
    });
}

#[test]
fn base_images_that_cannot_be_pulled_say_why_and_whether_to_retry() {
    check(Case {
        name: "base-image-short-name",
        cause: Cause::BaseImage,
        line: Some(1),
        excerpt: "short-name \"nosuchimage:1.0\" did not resolve",
        hint: Some("docker.io/library/nosuchimage:1.0"),
        ..BUILD
    });
    check(Case {
        name: "base-image-registry-down",
        cause: Cause::BaseImage,
        retryable: true,
        line: Some(1),
        excerpt: "connect: connection refused",
        hint: Some("could not be reached"),
        ..BUILD
    });
    check(Case {
        name: "base-image-plain-http",
        cause: Cause::BaseImage,
        line: Some(1),
        excerpt: "server gave HTTP response to HTTPS client",
        hint: Some("registries.conf marks 127.0.0.1:5056 insecure"),
        ..BUILD
    });
}

#[test]
fn clone_failures_tell_a_missing_ref_from_a_missing_repository_and_a_server_down() {
    let clone = Case { exit_code: Some(128), message: "build exited with code 128", cause: Cause::Clone, ..BUILD };
    check(Case {
        name: "ref-missing",
        excerpt: "fatal: couldn't find remote ref mian",
        hint: Some("the repository has no branch or tag `mian`; did you mean `main`? Its branches: develop, main"),
        ..clone
    });
    check(Case {
        name: "repository-missing",
        excerpt: "does not appear to be a git repository",
        hint: Some("there is no repository at repo_url"),
        ..clone
    });
    check(Case {
        name: "git-auth-refused",
        cause: Cause::Auth,
        excerpt: "fatal: Authentication failed for 'https://127.0.0.1:35321/private.git/'",
        hint: Some("refused the credentials read from git_credentials_path"),
        git_credentials: true,
        ..clone
    });
    check(Case {
        name: "git-auth-missing",
        cause: Cause::Auth,
        excerpt: "could not read Username for 'https://127.0.0.1:35321': terminal prompts disabled",
        hint: Some("the repository asks for credentials"),
        ..clone
    });
    check(Case {
        name: "git-server-down",
        retryable: true,
        excerpt: "Failed to connect to 127.0.0.1 port 5998",
        hint: Some("could not be reached"),
        ..clone
    });
}

#[test]
fn test_failures_quote_the_tests_own_lines() {
    let test = Case { phase: Phase::Test, test: Some(0), cause: Cause::TestFailed, ..BUILD };
    check(Case { name: "test-exits-nonzero", exit_code: Some(4), excerpt: "testing\nto-stderr", ..test });
    check(Case {
        name: "test-command-not-found",
        exit_code: Some(127),
        excerpt: "sh: nosuchcommand: not found",
        hint: Some("exit code 127"),
        ..test
    });
    check(Case {
        name: "test-timeout",
        reason: FailureReason::Timeout,
        exit_code: None,
        cause: Cause::Timeout,
        excerpt: "start",
        hint: Some("raise test_timeout"),
        ..test
    });
}

#[test]
fn without_the_checkout_the_cause_stands_and_no_line_is_guessed() {
    let case = Case { name: "run-exits-nonzero", exit_code: Some(3), ..BUILD };
    let got = run(&case, &recorded(case.name, None), None);
    assert_eq!((got.cause, got.dockerfile), (Cause::BuildStep, None));
    assert!(got.excerpt.iter().any(|l| l.contains("exit status 3")));
}

/// The Nomad backend's `system` lines, as it writes them from the fake's task events and
/// evaluations.
#[test]
fn nomad_placement_and_driver_failures() {
    let line = |stream: Stream, text: &str| LogLine {
        seq: 1,
        ts: Timestamp::now(),
        phase: Phase::Test,
        test: Some(0),
        stream,
        text: text.into(),
    };
    let placement = Case {
        name: "nomad-placement",
        phase: Phase::Build,
        reason: FailureReason::Backend,
        exit_code: None,
        message: "build could not start: Nomad could not place it within 5s: group build: 1 nodes evaluated, 0 filtered, 1 exhausted; memory exhausted on 1",
        ..BUILD
    };
    let lines = [line(
        Stream::System,
        "nomad: waiting for placement: group build: 1 nodes evaluated, 0 filtered, 1 exhausted; memory exhausted on 1",
    )];
    let got = run(&placement, &lines, None);
    assert_eq!((got.cause, got.retryable), (Cause::Placement, true));
    assert_eq!(got.excerpt, vec![lines[0].text.clone()]);

    let pull = Case { name: "nomad-driver", phase: Phase::Test, test: Some(0), exit_code: Some(1), ..BUILD };
    let lines = [
        line(Stream::System, "nomad: Received: Task received by client"),
        line(
            Stream::System,
            "nomad: Driver Failure: Failed to pull `127.0.0.1:5000/temp/x@sha256:ab`: connection refused",
        ),
    ];
    let got = run(&pull, &lines, None);
    assert_eq!((got.cause, got.retryable), (Cause::Registry, true));
    assert!(got.excerpt[0].contains("Failed to pull"));

    let killed = Case { name: "nomad-oom", phase: Phase::Test, test: Some(0), exit_code: Some(137), ..BUILD };
    let lines = [line(Stream::Stdout, "allocating"), line(Stream::System, "nomad: OOM Killed")];
    let got = run(&killed, &lines, None);
    assert_eq!(got.cause, Cause::TestFailed);
    assert!(got.hint.unwrap().contains("memory"));
}

#[test]
fn the_nomad_build_script_lines_start_steps_too() {
    let line = |stream: Stream, text: &str| LogLine {
        seq: 1,
        ts: Timestamp::now(),
        phase: Phase::Build,
        test: None,
        stream,
        text: text.into(),
    };
    let lines = [
        line(Stream::System, "==> fetching mian from https://git.example/app.git"),
        line(Stream::Stderr, "fatal: couldn't find remote ref mian"),
        line(Stream::System, "==> branches of the remote"),
        line(Stream::Stdout, "0123abcd\trefs/heads/main"),
    ];
    let got = run(&Case { name: "nomad-ref", exit_code: Some(1), ..BUILD }, &lines, None);
    assert_eq!(got.cause, Cause::Clone);
    assert_eq!(got.excerpt, vec!["fatal: couldn't find remote ref mian"]);
    assert!(got.hint.unwrap().contains("did you mean `main`?"));
}

/// What a failure quotes lives in the job's record: bounded in bytes whatever the run printed
/// (thirty 16 KiB lines would make a record Consul cannot store).
#[test]
fn quotes_are_bounded_in_bytes() {
    let long = "z".repeat(16 * 1024);
    let quoted = bounded(std::iter::repeat_n(long.as_str(), 30));
    assert!(quoted.iter().all(|l| l.len() <= QUOTE_LINE_BYTES + 8 && l.ends_with("[...]")));
    assert!(quoted.iter().map(String::len).sum::<usize>() <= QUOTE_BYTES);
    assert!(!quoted.is_empty(), "the last lines are kept");
    let lines: Vec<LogLine> = (0..30)
        .map(|i| LogLine {
            seq: i,
            ts: Timestamp::now(),
            phase: Phase::Test,
            test: Some(0),
            stream: Stream::Stdout,
            text: long.clone(),
        })
        .collect();
    let excerpt = test_excerpt(&lines);
    assert!(excerpt.iter().map(String::len).sum::<usize>() <= QUOTE_BYTES, "a test's excerpt too");
    assert_eq!(bounded(["a", "b"]), ["a", "b"], "short quotes stay whole");
}
