//! Each note the bot posts ends with an invisible mark of its own (an HTML comment, which
//! GitHub and GitLab do not render): when the forge's answer to the post is lost (no answer,
//! a 5xx, a dropped connection) the post may still have happened, and the mark is how the
//! bot finds it on the thread instead of saying it twice.

use rand::Rng as _;

const OPEN: &str = "<!-- breakglass-note ";
const CLOSE: &str = " -->";

/// A note's text as posted, and its mark.
#[derive(Clone, Debug)]
pub struct Marked {
    pub body: String,
    pub mark: String,
}

/// `body` with a mark no other note has.
pub fn mark(body: &str) -> Marked {
    let nonce: u64 = rand::rng().random();
    let mark = format!("{OPEN}{nonce:016x}{CLOSE}");
    Marked {
        body: format!("{body}\n\n{mark}"),
        mark,
    }
}

/// A note's text without the bot's mark (as a reader sees it rendered).
pub fn unmarked(body: &str) -> &str {
    let Some(at) = body.rfind(OPEN) else {
        return body;
    };
    let (text, tail) = body.split_at(at);
    let nonce = &tail[OPEN.len()..];
    let well_formed = nonce.len() == 16 + CLOSE.len()
        && nonce.ends_with(CLOSE)
        && nonce[..16].bytes().all(|b| b.is_ascii_hexdigit());
    if well_formed {
        text.strip_suffix("\n\n").unwrap_or(text)
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mark_is_new_and_reads_back_to_the_text() {
        let (a, b) = (mark("🔒 **Access revoked**"), mark("🔒 **Access revoked**"));
        assert_ne!(a.mark, b.mark);
        assert!(a.body.ends_with(&a.mark));
        assert_eq!(unmarked(&a.body), "🔒 **Access revoked**");
        assert_eq!(unmarked("no mark"), "no mark");
        // Someone else's text that merely looks like a mark is left as it is.
        let lookalike = "hi\n\n<!-- breakglass-note nothex!!nothex!! -->";
        assert_eq!(unmarked(lookalike), lookalike);
    }
}
