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
                errors.push(self.syntax(&e));
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

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset.min(self.text.len())).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.len(), |p| before.len() - p - 1) + 1;
        (line, column)
    }
}
