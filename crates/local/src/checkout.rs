//! Reading a job's checkout for the diagnosis of a failed build: the committed Dockerfile and
//! the repository's file names, bounded, never following a path out of the checkout.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use jobforge_core::config::RelPath;
use jobforge_core::diagnose::Checkout;

/// A Dockerfile larger than this is not read.
const DOCKERFILE_MAX: u64 = 1024 * 1024;
/// At most this many names are listed, and this deep.
const FILES_MAX: usize = 5000;
const DEPTH_MAX: usize = 8;

/// What `src` (a checkout) holds; `None` if there is no checkout.
pub fn read(src: &Path, dockerfile: &RelPath) -> Option<Checkout> {
    let root = src.canonicalize().ok()?;
    let mut files = Vec::new();
    list(&root, &root, 0, &mut files);
    files.sort();
    Some(Checkout { dockerfile: read_dockerfile(&root, &root.join(dockerfile.as_str())), files })
}

fn read_dockerfile(root: &Path, path: &Path) -> Option<String> {
    let resolved = path.canonicalize().ok()?;
    if !resolved.starts_with(root) || !resolved.is_file() {
        return None;
    }
    let mut text = String::new();
    fs::File::open(&resolved).ok()?.take(DOCKERFILE_MAX).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Names under `dir`, relative to `root`, directories ending in `/`; symbolic links are listed
/// but not followed.
fn list(root: &Path, dir: &Path, depth: usize, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<(PathBuf, bool)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != ".git")
        .map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect();
    entries.sort();
    for (path, is_dir) in entries {
        if out.len() >= FILES_MAX {
            return;
        }
        let Ok(relative) = path.strip_prefix(root) else { continue };
        let name = relative.to_string_lossy().into_owned();
        if is_dir {
            out.push(format!("{name}/"));
            if depth + 1 < DEPTH_MAX {
                list(root, &path, depth + 1, out);
            }
        } else {
            out.push(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkout_is_listed_without_git_and_nothing_outside_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join(".git")).unwrap();
        fs::create_dir_all(src.join("docker")).unwrap();
        fs::write(src.join("docker/Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(src.join("hello.txt"), "hi").unwrap();
        fs::write(dir.path().join("secret"), "outside").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), src.join("Dockerfile")).unwrap();

        let path = |p: &str| RelPath::try_from(p.to_owned()).unwrap();
        let found = read(&src, &path("docker/Dockerfile")).unwrap();
        assert_eq!(found.dockerfile.as_deref(), Some("FROM scratch\n"));
        assert_eq!(found.files, vec!["Dockerfile", "docker/", "docker/Dockerfile", "hello.txt"]);
        assert_eq!(read(&src, &path("Dockerfile")).unwrap().dockerfile, None, "a link out of the checkout");
        assert_eq!(read(&dir.path().join("nothing"), &path("Dockerfile")), None);
    }
}
