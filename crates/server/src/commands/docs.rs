//! `portcullis completions` and `portcullis man`: shell completions and manual pages, made
//! from the command-line definition (clap) and, for portcullis.toml(5) and
//! pam_portcullis(8), from the README's configuration and module-option tables, so the
//! pages say what the README says.

use crate::cli::Cli;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::Path;
use std::process::ExitCode;

/// The README, whose reference tables become manual pages.
const README: &str = include_str!("../../../../README.md");

/// Writes the completion script for `shell` to standard output.
pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    clap_complete::generate(shell, &mut Cli::command(), "portcullis", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Writes man1/portcullis.1 with a page per subcommand, man5/portcullis.toml.5 and
/// man8/pam_portcullis.8 under `out`.
pub fn man(out: &Path) -> Result<ExitCode> {
    let dir = |section: &str| -> Result<std::path::PathBuf> {
        let d = out.join(section);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        Ok(d)
    };
    let man1 = dir("man1")?;
    let version: &'static str = env!("CARGO_PKG_VERSION");
    clap_mangen::generate_to(Cli::command().version(version), &man1)
        .with_context(|| format!("cannot write the pages into {}", man1.display()))?;
    let write = |path: std::path::PathBuf, text: String| -> Result<()> {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(dir("man5")?.join("portcullis.toml.5"), config_page(version))?;
    write(dir("man8")?.join("pam_portcullis.8"), pam_page(version))?;
    let pages = count_pages(out)?;
    println!("wrote {pages} manual pages under {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn count_pages(out: &Path) -> Result<usize> {
    let mut n = 0;
    for section in ["man1", "man5", "man8"] {
        n += std::fs::read_dir(out.join(section))?.count();
    }
    Ok(n)
}

/// The README's text from the heading `start` (a line) to the next heading of its level
/// or above (a `#` line inside a code block is no heading).
fn section<'r>(readme: &'r str, start: &str) -> &'r str {
    let Some(at) = readme.find(&format!("\n{start}\n")) else {
        return "";
    };
    let level = start.len() - start.trim_start_matches('#').len();
    let body = &readme[at + start.len() + 2..];
    let mut fenced = false;
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let hashes = line.len() - line.trim_start_matches('#').len();
        if !fenced && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            return &body[..offset];
        }
        offset += line.len();
    }
    body
}

/// Text for roff: backslashes escaped, a leading `.` or `'` made literal, Markdown's
/// backticks and emphasis dropped.
fn roff(text: &str) -> String {
    let t: String = text
        .replace('\\', "\\e")
        .replace("`", "")
        .replace("**", "")
        .chars()
        // groff reads ASCII; any other character by its Unicode name.
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\[u{:04X}]", u32::from(c))
            }
        })
        .collect();
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// A Markdown table's rows (header and rule left out), each split into its cells (`\|` is
/// a `|` inside a cell).
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .skip(1)
        .map(|l| {
            let inner = l.trim().trim_start_matches('|').trim_end_matches('|');
            inner
                .replace("\\|", "\u{1}")
                .split('|')
                .map(|c| c.trim().replace('\u{1}', "|"))
                .collect()
        })
        .collect()
}

/// Paragraphs of a section up to its first table or code block, as roff paragraphs.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for para in text.split("\n\n") {
        let p = para.trim();
        if p.is_empty() || p.starts_with('|') || p.starts_with("```") {
            break;
        }
        out.push_str(".PP\n");
        out.push_str(&roff(&p.replace('\n', " ")));
        out.push('\n');
    }
    out
}

/// The code blocks of a section, as literal roff blocks.
fn examples(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("```") {
            out.push_str(if inside { ".fi\n.RE\n" } else { ".PP\n.RS 4\n.nf\n" });
            inside = !inside;
        } else if inside {
            out.push_str(&roff(line));
            out.push('\n');
        }
    }
    out
}

fn header(name: &str, section: u8, version: &str, what: &str) -> String {
    format!(
        ".TH {} {section} \"\" \"portcullis {version}\" \"portcullis\"\n.SH NAME\n{} \\- {what}\n",
        name.to_uppercase().replace('-', "\\-"),
        name.replace('-', "\\-")
    )
}

/// portcullis.toml(5): the README's configuration reference, every key with its default.
pub fn config_page(version: &str) -> String {
    let text = section(README, "## Configuration reference");
    let mut page = header(
        "portcullis.toml",
        5,
        version,
        "configuration of the portcullis two-factor gateway",
    );
    page.push_str(".SH DESCRIPTION\n");
    page.push_str(&prose(text));
    page.push_str(".SH KEYS\nEach key is section.key; write it as key = value under [section].\n");
    for row in table_rows(text) {
        if let [key, default, meaning] = row.as_slice() {
            page.push_str(&format!(
                ".TP\n.B {}\n(default: {})\n{}\n",
                roff(key),
                roff(default),
                roff(meaning)
            ));
        }
    }
    page.push_str(".SH EXAMPLE\n");
    page.push_str(&examples(text));
    page.push_str(".SH SEE ALSO\nportcullis(1), pam_portcullis(8)\n");
    page
}

/// pam_portcullis(8): the README's sshd section, with every module option.
pub fn pam_page(version: &str) -> String {
    let text = section(README, "### sshd");
    let mut page = header(
        "pam_portcullis",
        8,
        version,
        "PAM module asking for a portcullis one-time code",
    );
    page.push_str(
        ".SH SYNOPSIS\n.B auth required pam_portcullis.so\n[config=PATH] [combined] [nullok] [trusted_networks=CIDR,...] [timeout=S] ...\n",
    );
    page.push_str(".SH DESCRIPTION\n");
    page.push_str(&prose(text));
    page.push_str(".SH OPTIONS\n");
    for row in table_rows(text) {
        if let [option, meaning] = row.as_slice() {
            page.push_str(&format!(".TP\n.B {}\n{}\n", roff(option), roff(meaning)));
        }
    }
    page.push_str(".SH EXAMPLES\n");
    page.push_str(&examples(text));
    page.push_str(".SH SEE ALSO\nportcullis(1), portcullis.toml(5), pam(8), sshd_config(5)\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configuration_key_of_the_readme_is_in_the_page() {
        let page = config_page("0");
        let rows = table_rows(section(README, "## Configuration reference"));
        assert!(rows.len() > 60, "{} rows", rows.len());
        for row in rows {
            assert!(page.contains(&roff(&row[0])), "{}", row[0]);
        }
        for key in ["duo.failmode", "ldap.url", "store.backend", "otp.linger"] {
            assert!(page.contains(key), "{key}");
        }
        assert!(page.contains("[[access.rules]]"), "the rules example");
    }

    #[test]
    fn every_module_option_is_in_the_pam_page() {
        let page = pam_page("0");
        let source = include_str!("../../../pam/src/options.rs");
        // Each `("name", …) =>` arm of the option parser.
        let options: Vec<&str> = source
            .lines()
            .filter_map(|l| l.trim().strip_prefix("(\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert!(options.len() >= 12, "{options:?}");
        for o in options {
            assert!(page.contains(o), "option {o} is not in pam_portcullis(8)");
        }
    }

    #[test]
    fn roff_text_cannot_start_a_request() {
        assert_eq!(roff(".x `y` a\\b"), "\\&.x y a\\eb");
        assert_eq!(roff("'q"), "\\&'q");
        assert_eq!(roff("a – b"), "a \\[u2013] b");
    }
}
