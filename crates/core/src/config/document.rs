//! The parsed `portcullis.toml`: its top-level sections with their positions, so that each
//! owner (the core, the gateway) reads its own sections and every error names its line.

use super::ConfigError;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// A configuration file parsed once; sections are read from it by whoever owns them.
pub struct Document<'t> {
    path: PathBuf,
    text: &'t str,
    root: DeTable<'t>,
}

impl<'t> Document<'t> {
    /// Parses `text`, read from `path`; every TOML syntax error found is returned.
    pub fn parse(text: &'t str, path: &Path) -> Result<Self, Vec<ConfigError>> {
        let (root, errors) = DeTable::parse_recoverable(text);
        let doc = Document {
            path: path.to_path_buf(),
            text,
            root: root.into_inner(),
        };
        if errors.is_empty() {
            Ok(doc)
        } else {
            Err(errors.iter().map(|e| doc.syntax(e)).collect())
        }
    }

    /// The file the text came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One error for each top-level key that is not in `known`, at its line and column.
    pub fn unknown_sections(&self, known: &[&str]) -> Vec<ConfigError> {
        let expected = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
        self.root
            .keys()
            .filter(|k| !known.contains(&k.get_ref().as_ref()))
            .map(|k| {
                let (line, column) = self.line_col(k.span().start);
                ConfigError::Syntax {
                    path: self.path.clone(),
                    line,
                    column,
                    message: format!("unknown field `{}`, expected one of {expected}", k.get_ref()),
                }
            })
            .collect()
    }

    /// Reads `[name]` (its default when absent); on a mistyped or unknown key the error is
    /// added to `errors` and `None` returned.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str, errors: &mut Vec<ConfigError>) -> Option<T> {
        let Some(value) = self.root.get(name) else {
            return Some(T::default());
        };
        let value: toml::Spanned<DeValue<'t>> = value.clone();
        match T::deserialize(toml::de::ValueDeserializer::from(value)) {
            Ok(section) => Some(section),
            Err(e) => {
                errors.push(self.mistyped(name, &e));
                None
            }
        }
    }

    /// A value outside its allowed range: `section.key = value: reason`, at the key's line.
    pub fn invalid(&self, section: &str, key: &str, value: String, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            line: self.line_of(section, key),
            key: format!("{section}.{key}"),
            value,
            reason: reason.to_string(),
        }
    }

    /// 1-based line where `key` is set inside `[section]`, or 0 when it is not written.
    pub fn line_of(&self, section: &str, key: &str) -> usize {
        let mut current = String::new();
        for (i, raw) in self.text.lines().enumerate() {
            let line = raw.trim();
            if line.starts_with('[') {
                current = line.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            } else if current == section
                && line
                    .split_once('=')
                    .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
            {
                return i + 1;
            }
        }
        0
    }

    fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let (line, column) = e.span().map_or((0, 0), |s| self.line_col(s.start));
        ConfigError::Syntax {
            path: self.path.clone(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    }

    /// A section that does not deserialize: the error at its line, naming `section.key`
    /// (serde names only the type it wanted) and what to write instead.
    fn mistyped(&self, section: &str, e: &toml::de::Error) -> ConfigError {
        let mut error = self.syntax(e);
        if let ConfigError::Syntax { line, message, .. } = &mut error {
            let key = self
                .text
                .lines()
                .nth(line.saturating_sub(1))
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim().trim_matches('"'))
                .filter(|k| !k.is_empty() && !k.starts_with('['));
            if let Some(key) = key {
                *message = format!("{section}.{key}: {}", humane(message));
            }
        }
        error
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset.min(self.text.len())).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.len(), |p| before.len() - p - 1) + 1;
        (line, column)
    }
}

/// serde's type words as a person writes TOML, with what to do.
fn humane(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("expected u64", "expected a whole number, 0 or more (no quotes)"),
        ("expected u32", "expected a whole number, 0 or more (no quotes)"),
        ("expected u16", "expected a whole number, 0 to 65535 (no quotes)"),
        ("expected i64", "expected a whole number (no quotes)"),
        ("expected a boolean", "expected true or false (no quotes)"),
        ("expected a string", "expected text in double quotes"),
        ("expected a sequence", "expected a list such as [\"a\", \"b\"]"),
    ];
    let mut out = message.to_string();
    for (serde, person) in WORDS {
        out = out.replace(serde, person);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[allow(dead_code)]
        ttl: u64,
    }

    #[test]
    fn a_mistyped_value_names_its_key_and_what_to_write() {
        let text = "[invite]\n\nttl = -5\n";
        let doc = Document::parse(text, Path::new("/etc/p.toml")).unwrap();
        let mut errors = Vec::new();
        assert!(doc.section::<Section>("invite", &mut errors).is_none());
        let e = errors[0].to_string();
        assert!(
            e.starts_with(
                "/etc/p.toml:3:7: invite.ttl: invalid value: integer `-5`, expected a whole number, 0 or more"
            ),
            "{e}"
        );
    }
}
