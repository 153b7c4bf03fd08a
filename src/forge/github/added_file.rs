//! The text of a file a comparison adds, taken from its patch instead of a read of the file.
//!
//! A comparison lists each added file with its blob id and, for a small text file, a patch of
//! one hunk that holds every line. The text rebuilt from that patch is used only when its git
//! blob id is the listed one, so a patch that was cut, escaped or changed in transit costs a
//! read of the file, never a wrong text.

/// The hunk header of a patch that adds a file: nothing before, lines from 1 after.
const ADDED_HUNK: &str = "@@ -0,0 +1";

/// Git's marker after a last line that has no newline.
const NO_NEWLINE: &str = "\\ No newline at end of file";

/// The whole text of an added file, if `patch` holds it and it hashes to `blob`.
pub fn added_text(patch: &str, blob: &str) -> Option<String> {
    let mut lines = patch.split('\n');
    if !lines.next()?.starts_with(ADDED_HUNK) {
        return None;
    }
    let mut text = String::with_capacity(patch.len());
    let mut ends_with_newline = true;
    for line in lines {
        if let Some(added) = line.strip_prefix('+') {
            text.push_str(added);
            text.push('\n');
        } else if line == NO_NEWLINE {
            ends_with_newline = false;
        } else if !line.is_empty() {
            // Another hunk, or a line that is not an addition: not a whole added file.
            return None;
        }
    }
    if !ends_with_newline {
        text.pop();
    }
    let id = git2::Oid::hash_object(git2::ObjectType::Blob, text.as_bytes()).ok()?;
    (id.to_string() == blob).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(text: &str) -> String {
        git2::Oid::hash_object(git2::ObjectType::Blob, text.as_bytes())
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_whole_added_file_is_rebuilt_as_github_sends_it() {
        let text = "id: r1\nenvironment: prod\n\nrole: admin\n";
        // GitHub's patch has no newline after its last line.
        let patch = "@@ -0,0 +1,4 @@\n+id: r1\n+environment: prod\n+\n+role: admin";
        assert_eq!(added_text(patch, &blob(text)).as_deref(), Some(text));
        // git's own patch ends with one.
        let with_newline = format!("{patch}\n");
        assert_eq!(
            added_text(&with_newline, &blob(text)).as_deref(),
            Some(text)
        );
    }

    #[test]
    fn a_file_without_a_final_newline_keeps_its_last_byte() {
        let text = "id: r1\nrole: admin";
        let patch = "@@ -0,0 +1,2 @@\n+id: r1\n+role: admin\n\\ No newline at end of file";
        assert_eq!(added_text(patch, &blob(text)).as_deref(), Some(text));
    }

    #[test]
    fn a_patch_that_does_not_hash_to_the_blob_is_not_used() {
        let patch = "@@ -0,0 +1,1 @@\n+role: admin";
        assert_eq!(added_text(patch, &blob("role: viewer\n")), None);
        // Cut short: the blob is of the whole file.
        assert_eq!(added_text(patch, &blob("role: admin\nmore: 1\n")), None);
    }

    #[test]
    fn a_modified_file_or_a_second_hunk_is_not_an_added_text() {
        let text = "role: admin\n";
        let modified = "@@ -1,1 +1,1 @@\n-role: viewer\n+role: admin";
        assert_eq!(added_text(modified, &blob(text)), None);
        let context = "@@ -0,0 +1,1 @@\n role: admin";
        assert_eq!(added_text(context, &blob(text)), None);
        assert_eq!(added_text("", &blob("")), None);
    }
}
