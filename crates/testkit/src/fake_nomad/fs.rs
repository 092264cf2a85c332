//! `GET /v1/client/fs/ls/:alloc_id`, `/v1/client/fs/stat/:alloc_id` and
//! `/v1/client/fs/cat/:alloc_id`: an allocation's directory (`<data dir>/allocs/<id>`, the
//! directory its task runners really use) as Nomad's client filesystem API shows it.
//!
//! `path` is relative to the allocation's directory (`/` or absent means the directory itself
//! for `ls`; `stat` and `cat` need one). Entries are `AllocFileInfo` (`Name`, `IsDir`, `Size`,
//! `FileMode` as Go's `FileMode.String()`, `ModTime` as RFC 3339): a listing describes each
//! entry itself (a symbolic link is a link), a stat follows links, as Go's `lstat`-based
//! `DirEntry.Info` and `os.Stat` do. `cat` answers the raw bytes as `text/plain`.
//!
//! Refusals as Nomad's agent and client word them (`command/agent/fs_endpoint.go`,
//! `client/fs_endpoint.go`, `client/allocdir/alloc_dir.go`), in plain text:
//! - an unknown allocation: 404 `Unknown allocation "<id>"`;
//! - no `path` for `stat` or `cat`: 400 `must provide a file name`;
//! - a path leading out of the allocation's directory, by `..` or through a symbolic link:
//!   `Path escapes the alloc directory`, a 500 from `ls` and `stat`, a 400 from `cat` (which
//!   stats first and answers every stat error with 400);
//! - a missing path: Go's error (`open <abs path>: no such file or directory` from `ls`,
//!   `stat <abs path>: ...` from `stat` and `cat`), a 404 from `ls` and `stat`, a 400 from `cat`;
//! - `cat` of a directory: 400 `file "<path>" is a directory`; of a task's `secrets`: 500
//!   `Reading secret file prohibited: <path>`.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Inner;
use super::http::{HttpError, Query};
use super::records::rfc3339;

/// Which of the three endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    List,
    Stat,
    Cat,
}

pub(crate) fn serve(inner: &Inner, op: Op, alloc_id: &str, query: &Query) -> Result<Response, HttpError> {
    if alloc_id.is_empty() {
        return Err(HttpError::new(StatusCode::BAD_REQUEST, "must provide a valid alloc id"));
    }
    let path = match (op, query.get("path").filter(|p| !p.is_empty())) {
        (_, Some(path)) => path.to_owned(),
        (Op::List, None) => "/".to_owned(),
        (Op::Stat | Op::Cat, None) => return Err(HttpError::new(StatusCode::BAD_REQUEST, "must provide a file name")),
    };
    let (known, tasks) = inner.store.read(|state| match state.allocs.get(alloc_id) {
        Some(alloc) => (true, alloc.task_states.as_ref().map(|s| s.keys().cloned().collect()).unwrap_or_default()),
        None => (false, Vec::<String>::new()),
    });
    if !known {
        return Err(HttpError::new(StatusCode::NOT_FOUND, format!("Unknown allocation {alloc_id:?}")));
    }
    let alloc_dir = inner.config.data_dir.join("allocs").join(alloc_id);
    match op {
        Op::List => list(&alloc_dir, &path).map(|entries| json_response(&Value::Array(entries))),
        Op::Stat => stat(&alloc_dir, &path).map(|info| json_response(&info)),
        Op::Cat => cat(&alloc_dir, &tasks, &path),
    }
}

/// Why a path of the allocation cannot be served, before the status each endpoint gives it.
enum Refusal {
    Escapes,
    Io { op: &'static str, path: PathBuf, error: io::Error },
}

impl Refusal {
    fn message(&self) -> String {
        match self {
            Refusal::Escapes => "Path escapes the alloc directory".to_owned(),
            Refusal::Io { op, path, error } => format!("{op} {}: {}", path.display(), go_errno_text(error)),
        }
    }

    fn not_found(&self) -> bool {
        matches!(self, Refusal::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }

    /// The status `ls` and `stat` answer with: the agent turns "no such file or directory"
    /// into a 404, and leaves everything else a 500.
    fn into_list_error(self) -> HttpError {
        let status = if self.not_found() { StatusCode::NOT_FOUND } else { StatusCode::INTERNAL_SERVER_ERROR };
        HttpError::new(status, self.message())
    }
}

/// `filepath.Join(allocDir, path)` (which cleans `..` away lexically), refused when it leads out
/// of the allocation's directory, by `..` or, once resolved, through a symbolic link. A path
/// that does not exist passes, as in Nomad: the operation then fails on it.
fn resolve(alloc_dir: &Path, path: &str) -> Result<PathBuf, Refusal> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or(Refusal::Escapes)?;
            }
            part => parts.push(part),
        }
    }
    let full = parts.iter().fold(alloc_dir.to_path_buf(), |full, part| full.join(part));
    match (full.canonicalize(), alloc_dir.canonicalize()) {
        (Ok(resolved), Ok(base)) if !resolved.starts_with(&base) => Err(Refusal::Escapes),
        _ => Ok(full),
    }
}

fn list(alloc_dir: &Path, path: &str) -> Result<Vec<Value>, HttpError> {
    let full = resolve(alloc_dir, path).map_err(Refusal::into_list_error)?;
    let io_error = |op, error| Refusal::Io { op, path: full.clone(), error }.into_list_error();
    let metadata = fs::metadata(&full).map_err(|e| io_error("open", e))?;
    if !metadata.is_dir() {
        // Go opens the file, then fails reading it as a directory.
        return Err(io_error("readdirent", io::Error::from_raw_os_error(ENOTDIR)));
    }
    let mut entries: Vec<(String, Metadata)> = fs::read_dir(&full)
        .map_err(|e| io_error("open", e))?
        .filter_map(Result::ok)
        .filter_map(|entry| Some((entry.file_name().into_string().ok()?, entry.metadata().ok()?)))
        .collect();
    // `os.ReadDir` sorts by name.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries.iter().map(|(name, metadata)| file_info(name, metadata)).collect())
}

fn stat(alloc_dir: &Path, path: &str) -> Result<Value, HttpError> {
    let full = resolve(alloc_dir, path).map_err(Refusal::into_list_error)?;
    let metadata =
        fs::metadata(&full).map_err(|error| Refusal::Io { op: "stat", path: full.clone(), error }.into_list_error())?;
    Ok(file_info(&base_name(&full), &metadata))
}

fn cat(alloc_dir: &Path, tasks: &[String], path: &str) -> Result<Response, HttpError> {
    let bad = |refusal: Refusal| HttpError::new(StatusCode::BAD_REQUEST, refusal.message());
    let full = resolve(alloc_dir, path).map_err(bad)?;
    let metadata = fs::metadata(&full).map_err(|error| bad(Refusal::Io { op: "stat", path: full.clone(), error }))?;
    if metadata.is_dir() {
        return Err(HttpError::new(StatusCode::BAD_REQUEST, format!("file {path:?} is a directory")));
    }
    if tasks.iter().any(|task| full.starts_with(alloc_dir.join(task).join("secrets"))) {
        return Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Reading secret file prohibited: {path}"),
        ));
    }
    let data = fs::read(&full).map_err(|error| {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, Refusal::Io { op: "open", path: full, error }.message())
    })?;
    let mut response = data.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(response)
}

fn json_response(value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `filepath.Base` of an absolute, cleaned path.
fn base_name(path: &Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_else(|| "/".to_owned())
}

/// `AllocFileInfo`, in Go's field order.
fn file_info(name: &str, metadata: &Metadata) -> Value {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map(|since| since.as_nanos() as i64)
        .unwrap_or(0);
    json!({
        "Name": name,
        "IsDir": metadata.is_dir(),
        "Size": metadata.len(),
        "FileMode": go_file_mode(metadata),
        "ModTime": rfc3339(modified),
    })
}

/// Go's `FileMode.String()`: a letter for each type bit set, in the order `dalTLDpSugct?`
/// (only those a Unix file can carry here), or `-` for none; then `rwxrwxrwx`.
fn go_file_mode(metadata: &Metadata) -> String {
    let kind = metadata.file_type();
    let mode = metadata.permissions().mode();
    let letters = [
        ('d', kind.is_dir()),
        ('L', kind.is_symlink()),
        ('D', kind.is_block_device() || kind.is_char_device()),
        ('p', kind.is_fifo()),
        ('S', kind.is_socket()),
        ('u', mode & 0o4000 != 0),
        ('g', mode & 0o2000 != 0),
        ('c', kind.is_char_device()),
        ('t', mode & 0o1000 != 0),
    ];
    let mut text: String = letters.iter().filter(|(_, set)| *set).map(|(letter, _)| *letter).collect();
    if text.is_empty() {
        text.push('-');
    }
    for (i, letter) in "rwxrwxrwx".chars().enumerate() {
        text.push(if mode & (1 << (8 - i)) != 0 { letter } else { '-' });
    }
    text
}

/// `ENOTDIR` on Linux.
const ENOTDIR: i32 = 20;

/// The text Go's `syscall.Errno` gives an error (`no such file or directory`), where Rust's
/// adds a capital and the number.
fn go_errno_text(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(2) => "no such file or directory".to_owned(),
        Some(13) => "permission denied".to_owned(),
        Some(20) => "not a directory".to_owned(),
        Some(40) => "too many levels of symbolic links".to_owned(),
        _ => {
            let text = error.kind().to_string();
            let mut chars = text.chars();
            chars.next().map(|first| first.to_lowercase().chain(chars).collect()).unwrap_or(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys and JSON types of a value, recursively, for comparing shapes.
    fn shape(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
            Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
            Value::String(_) => json!("string"),
            Value::Number(_) => json!("number"),
            Value::Bool(_) => json!("bool"),
            Value::Null => json!("null"),
        }
    }

    fn example(file: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference/nomad-examples").join(file);
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn entries_have_the_recorded_shape_and_gos_modes() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = dir.path();
        fs::create_dir_all(alloc.join("build/local/src")).unwrap();
        fs::write(alloc.join("build/local/src/Dockerfile"), "FROM scratch\n").unwrap();
        fs::set_permissions(alloc.join("build/local/src/Dockerfile"), fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink("Dockerfile", alloc.join("build/local/src/link")).unwrap();

        let listing = Value::Array(list(alloc, "build/local/src").unwrap());
        assert_eq!(shape(&listing), shape(&example("GET_v1_client_fs_ls_ALLOCID.response.json")));
        let names: Vec<(&str, &str)> = listing
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["Name"].as_str().unwrap(), e["FileMode"].as_str().unwrap()))
            .collect();
        assert_eq!(names, [("Dockerfile", "-rw-r--r--"), ("link", "Lrwxrwxrwx")]);

        let info = stat(alloc, "build/local/src/link").unwrap();
        assert_eq!(shape(&info), shape(&example("GET_v1_client_fs_stat_ALLOCID.response.json")));
        assert_eq!((info["Name"].as_str(), info["Size"].as_u64()), (Some("link"), Some(13)), "stat follows links");
        let root = stat(alloc, "/").unwrap();
        assert_eq!(root["IsDir"], true);
        assert!(root["FileMode"].as_str().unwrap().starts_with('d'), "{root}");
    }

    #[test]
    fn paths_out_of_the_alloc_dir_are_refused_lexically_and_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = dir.path().join("alloc");
        fs::create_dir_all(alloc.join("build/local")).unwrap();
        fs::write(dir.path().join("secret"), "outside").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), alloc.join("build/local/out")).unwrap();

        assert!(resolve(&alloc, "build/../build/local").is_ok());
        assert!(matches!(resolve(&alloc, "build/../../secret"), Err(Refusal::Escapes)));
        assert!(matches!(resolve(&alloc, "build/local/out"), Err(Refusal::Escapes)));
        let error = stat(&alloc, "build/local/out").unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "Path escapes the alloc directory")
        );
        let error = list(&alloc, "build/nothing").unwrap_err();
        let expected = format!("open {}: no such file or directory", alloc.join("build/nothing").display());
        assert_eq!((error.status, error.message), (StatusCode::NOT_FOUND, expected));
        let error = cat(&alloc, &[], "build/local/out").unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (StatusCode::BAD_REQUEST, "Path escapes the alloc directory")
        );
    }
}
