//! Where scenarios are found by name: `./scenarios`, else the source tree's.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Overrides, ScenarioError};

/// Where scenario names are looked up.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub dir: PathBuf,
}

/// One line of `loadgen list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    /// The description, or why the file does not load.
    pub description: Result<String, String>,
}

impl Catalog {
    /// `./scenarios` when it exists, else the `scenarios/` of the source tree this binary was built from.
    pub fn locate(explicit: Option<PathBuf>) -> Self {
        let dir = explicit.unwrap_or_else(|| {
            let here = PathBuf::from("scenarios");
            if here.is_dir() { here } else { Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios") }
        });
        Self { dir }
    }

    /// A path (anything with a `/` or ending in `.toml`) is used as is; a name is looked up in the catalog.
    pub fn resolve(&self, name_or_path: &str) -> Result<PathBuf, ScenarioError> {
        if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
            return Ok(PathBuf::from(name_or_path));
        }
        let path = self.dir.join(format!("{name_or_path}.toml"));
        if path.is_file() {
            return Ok(path);
        }
        Err(ScenarioError::UnknownName {
            name: name_or_path.to_owned(),
            dir: self.dir.clone(),
            available: self.entries().into_iter().map(|entry| entry.name).collect(),
        })
    }

    /// What `loadgen list` prints: each scenario with its description (or why it does not load);
    /// `None` when the catalog holds no scenario.
    pub fn listing(&self) -> Option<String> {
        let entries = self.entries();
        let width = entries.iter().map(|e| e.name.len()).max()?;
        let lines = entries.into_iter().map(|entry| {
            let description = entry.description.unwrap_or_else(|error| format!("(invalid: {error})"));
            format!("{:width$}  {description}\n", entry.name)
        });
        Some(lines.collect())
    }

    /// Every `*.toml` in the catalog, sorted by name.
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(dir) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut entries: Vec<Entry> = dir
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .map(|path| Entry {
                name: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                description: super::load(&path, &Overrides::default())
                    .map(|scenario| scenario.description().to_owned())
                    .map_err(|e| e.to_string()),
                path,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }
}
