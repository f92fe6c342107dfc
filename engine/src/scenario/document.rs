//! A TOML file read once: its values, and the line each key sits on from the
//! parser's spans, so that an error about a key names the line that sets it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::ScenarioError;

/// A parsed TOML file.
#[derive(Debug, Clone)]
pub struct Document {
    pub table: toml::Table,
    /// `load.requests`, `chapter[3]`, `chapter[3].fast` → the line its key (or table header) is on.
    lines: BTreeMap<String, usize>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn record(text: &str, prefix: &str, table: &DeTable<'_>, lines: &mut BTreeMap<String, usize>) {
    for (key, value) in table {
        let name = if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
        lines.insert(name.clone(), line_of(text, key.span().start));
        match value.get_ref() {
            DeValue::Table(inner) => record(text, &name, inner, lines),
            DeValue::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let element = format!("{name}[{index}]");
                    lines.insert(element.clone(), line_of(text, item.span().start));
                    if let DeValue::Table(inner) = item.get_ref() {
                        record(text, &element, inner, lines);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Document {
    pub fn parse(path: &Path, text: &str) -> Result<Document, ScenarioError> {
        let syntax = |error: toml::de::Error| ScenarioError::Syntax {
            path: path.to_owned(),
            line: error.span().map(|span| line_of(text, span.start)),
            reason: format!("invalid TOML: {}", error.message()),
        };
        let spanned = DeTable::parse(text).map_err(syntax)?;
        let mut lines = BTreeMap::new();
        record(text, "", spanned.get_ref(), &mut lines);
        let table = toml::Table::deserialize(toml::de::Deserializer::from(spanned)).map_err(syntax)?;
        Ok(Document { table, lines })
    }

    /// The line that sets `key`; for an element of an array (`external.command[0]`), the array's.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied().or_else(|| {
            let array = key.strip_suffix(']').and_then(|rest| rest.rsplit_once('[')).map(|(array, _)| array)?;
            self.line(array)
        })
    }

    /// `table` (this document's, or it with overrides written in) read as a `T`;
    /// an error names the key and the line that sets it.
    pub fn read<T: DeserializeOwned>(&self, path: &Path, table: toml::Table) -> Result<T, ScenarioError> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
            let key = error.path().to_string();
            let reason = error.into_inner().message().to_owned();
            if key == "." {
                ScenarioError::Syntax { path: path.to_owned(), line: None, reason }
            } else {
                ScenarioError::Invalid { path: path.to_owned(), line: self.line(&key), key, reason }
            }
        })
    }
}
