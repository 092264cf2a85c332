//! The names closest to one that does not exist: for hints such as "did you mean `hello.txt`?".

/// At most `max` of `candidates` close to `wanted`, closest first. A candidate is close when
/// its edit distance to `wanted` (ignoring case), or its last path component's to `wanted`'s,
/// is small for the name's length.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>, max: usize) -> Vec<&'a str> {
    let wanted_lower = wanted.to_lowercase();
    let wanted_base = basename(&wanted_lower).to_owned();
    let limit = (wanted_base.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &'a str)> = candidates
        .into_iter()
        .filter_map(|candidate| {
            let lower = candidate.to_lowercase();
            let whole = strsim::damerau_levenshtein(&wanted_lower, &lower);
            let base = strsim::damerau_levenshtein(&wanted_base, basename(&lower));
            // A same-named file elsewhere is as good a guess as a one-letter typo.
            let score = whole.min(base + 1);
            (score <= limit && candidate != wanted).then_some((score, candidate))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(max).map(|(_, c)| c).collect()
}

fn basename(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_and_the_same_name_elsewhere_are_suggested_closest_first() {
        let files = ["hello.txt", "src/main.c", "docs/helo.md", "conf/helo.txt", "Dockerfile", "busybox"];
        assert_eq!(closest("helo.txt", files, 3), vec!["conf/helo.txt", "hello.txt"]);
        assert_eq!(closest("dockerfile", files, 3), vec!["Dockerfile"]);
        assert_eq!(closest("main.c", files, 3), vec!["src/main.c"]);
        assert!(closest("entirely-different", files, 3).is_empty());
        assert_eq!(closest("RUNN", ["RUN", "ENV", "CMD", "FROM"], 2), vec!["RUN"]);
    }
}
