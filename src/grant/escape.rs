//! Escaping of the values rendered into grant files, by the file's format.
//!
//! A grant file is code that the requests repo's IaC pipeline applies, and some of the values
//! in it (the `reason` above all) are free text from whoever opened the request. A value that
//! could close its string and write on would add resources of its own, so every value is
//! escaped for use *inside a double-quoted string* of the file's format, whatever the template
//! does with it. The format is known from the output path's extension; a path whose format is
//! not known is refused rather than rendered unescaped.
//!
//! The formats share JSON's string escapes, which YAML double-quoted scalars and HCL quoted
//! templates also read: `"` and `\` are escaped, line breaks and other invisible characters
//! become `\n`, `\r`, `\t` or `\uXXXX`. HCL strings are templates, and so are the strings of
//! Terraform's JSON syntax once decoded, so for those nothing in a value may start an
//! interpolation (`${`) or a directive (`%{`) either.

use std::fmt::Write as _;
use std::path::Path;

/// The formats grant files can have, each with its own escaping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// Terraform / HCL (`.tf`, `.hcl`).
    Hcl,
    /// YAML (`.yaml`, `.yml`), values in double-quoted scalars.
    Yaml,
    /// JSON (`.json`).
    Json,
    /// Terraform's JSON syntax (`.tf.json`): JSON whose strings Terraform reads as templates.
    TerraformJson,
}

impl FileFormat {
    /// The format of a grant file, from the extension of its path. The message of the error
    /// says which extensions are known.
    pub fn of_path(path: &str) -> Result<Self, String> {
        if path.ends_with(".tf.json") {
            return Ok(Self::TerraformJson);
        }
        let extension = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        match extension {
            "tf" | "hcl" => Ok(Self::Hcl),
            "yaml" | "yml" => Ok(Self::Yaml),
            "json" => Ok(Self::Json),
            _ => Err(format!(
                "`{path}` has no extension whose format breakglass can escape values for; end it \
                 in .tf or .hcl (HCL), .yaml or .yml (YAML), or .json (JSON)"
            )),
        }
    }

    /// `value` made safe to stand anywhere inside a double-quoted string of this format.
    pub fn escape(self, value: &str) -> String {
        match self {
            Self::Json | Self::Yaml => json_string_body(value),
            Self::Hcl => hcl_string_body(value),
            Self::TerraformJson => json_string_body(&hcl_template_literal(value)),
        }
    }
}

/// The body of a JSON string (without its quotes). The same text is a valid YAML double-quoted
/// scalar body, since YAML 1.2 reads every JSON escape.
fn json_string_body(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        push_escaped_char(&mut out, c);
    }
    out
}

/// The body of an HCL quoted template (without its quotes): JSON's escapes, and no `${` or
/// `%{` that HCL would read as template syntax (see [`escape_template_markers`]). The edge
/// characters are `\u` escapes, which HCL decodes only after it has found the template
/// markers, so they are never part of one.
fn hcl_string_body(value: &str) -> String {
    escape_template_markers(
        value,
        |out, c| {
            let _ = write!(out, "\\u{:04X}", u32::from(c));
        },
        push_escaped_char,
    )
}

/// `value` as an HCL template (the text a `.tf.json` string holds once JSON has decoded it)
/// that evaluates to `value` itself. JSON decodes `\u` escapes before Terraform reads the
/// template, so here the edge characters are interpolations of a one-character string
/// (`${"$"}`) instead, which nothing next to them can extend.
fn hcl_template_literal(value: &str) -> String {
    escape_template_markers(
        value,
        |out, c| {
            let _ = write!(out, "${{\"{c}\"}}");
        },
        String::push,
    )
}

/// Writes `value` for an HCL template: `${` and `%{` inside it become `$${` and `%%{`, HCL's
/// own escapes, and every other character goes through `plain`.
///
/// The edges need more, because the template puts other text next to the value: a value that
/// ends in `$` followed by one that starts with `{` would make `${` together. So a `$` or `%`
/// at the end and a `{` at the start are written by `edge`, in a form that cannot combine.
fn escape_template_markers(
    value: &str,
    edge: impl Fn(&mut String, char),
    plain: impl Fn(&mut String, char),
) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let mut chars = value.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('{', _) if first => edge(&mut out, c),
            ('$' | '%', Some('{')) => {
                out.push(c);
                out.push(c);
            }
            ('$' | '%', None) => edge(&mut out, c),
            _ => plain(&mut out, c),
        }
        first = false;
    }
    out
}

/// One character of a string body, escaped if it would end the string, break the line, or
/// be invisible to a reviewer of the grant file.
fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_unicode_escape(c) => {
            // Only BMP characters get here, so four hex digits always suffice.
            let _ = write!(out, "\\u{:04X}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// Characters written as `\uXXXX`: control characters (which YAML does not allow raw), the
/// Unicode line and paragraph separators (line breaks to YAML 1.1 and JavaScript), the byte
/// order mark and non-characters (not allowed inside a YAML document), and the bidirectional
/// controls that can make a line read differently from what it is ("Trojan Source").
fn needs_unicode_escape(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1F}'
            | '\u{7F}'..='\u{9F}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFFE}'
            | '\u{FFFF}'
    )
}

/// Whether `value` may be rendered into an output path: only `[A-Za-z0-9._/-]`, so that no
/// value can bring a space, a quote or a control character into a path in the repo.
pub fn is_path_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_extension() {
        assert_eq!(FileFormat::of_path("grants/p/r.tf"), Ok(FileFormat::Hcl));
        assert_eq!(FileFormat::of_path("grants/p/r.hcl"), Ok(FileFormat::Hcl));
        assert_eq!(FileFormat::of_path("grants/p/r.json"), Ok(FileFormat::Json));
        assert_eq!(
            FileFormat::of_path("grants/p/r.tf.json"),
            Ok(FileFormat::TerraformJson)
        );
        assert_eq!(FileFormat::of_path("k8s/r.yaml"), Ok(FileFormat::Yaml));
        assert_eq!(FileFormat::of_path("k8s/r.yml"), Ok(FileFormat::Yaml));
        for unknown in ["grants/r.txt", "grants/r", "grants/r.TF", "grants.tf/r"] {
            let err = FileFormat::of_path(unknown).unwrap_err();
            assert!(err.contains(".tf or .hcl"), "{unknown}: {err}");
        }
    }

    #[test]
    fn json_escaping_keeps_a_value_inside_its_string() {
        assert_eq!(
            FileFormat::Json.escape("a\"b\\c\nd\re\tf\u{1}g\u{7F}"),
            r#"a\"b\\c\nd\re\tf\u0001g\u007F"#
        );
        assert_eq!(FileFormat::Yaml.escape("--- ... ${x} é"), "--- ... ${x} é");
        assert_eq!(FileFormat::Json.escape("\u{2028}\u{202E}"), r"\u2028\u202E");
    }

    #[test]
    fn hcl_escaping_leaves_no_template_marker() {
        assert_eq!(
            FileFormat::Hcl.escape("${file(\"/etc/passwd\")}"),
            r#"$${file(\"/etc/passwd\")}"#
        );
        assert_eq!(
            FileFormat::Hcl.escape("%{ if true }x%{ endif }"),
            "%%{ if true }x%%{ endif }"
        );
        assert_eq!(FileFormat::Hcl.escape("$${x}"), "$$${x}");
        // The edges: nothing a neighbour could complete into a marker.
        assert_eq!(FileFormat::Hcl.escape("cost: 5$"), r"cost: 5\u0024");
        assert_eq!(FileFormat::Hcl.escape("50%"), r"50\u0025");
        assert_eq!(FileFormat::Hcl.escape("{x}"), r"\u007Bx}");
        assert_eq!(FileFormat::Hcl.escape("a {b} $ % c"), "a {b} $ % c");
    }

    #[test]
    fn terraform_json_escaping_is_json_around_an_inert_template() {
        assert_eq!(
            FileFormat::TerraformJson.escape("a\"\n${x} %{y}"),
            r#"a\"\n$${x} %%{y}"#
        );
        assert_eq!(
            FileFormat::TerraformJson.escape("{x}$"),
            r#"${\"{\"}x}${\"$\"}"#
        );
    }

    #[test]
    fn path_values_are_limited_to_a_narrow_alphabet() {
        assert!(is_path_safe("20261126-0214-alice-prod"));
        assert!(is_path_safe("team/sub_dir.v2"));
        for bad in ["a b", "a\"b", "a\nb", "a\\b", "é", "a:b", "${x}"] {
            assert!(!is_path_safe(bad), "{bad:?}");
        }
    }
}
