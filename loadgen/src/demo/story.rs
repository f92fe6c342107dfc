//! The story `loadgen demo` tells, from `demo/story.toml`: chapters that each
//! run a scenario, and rules of thumb that each name the chapters proving
//! them. The file becomes a [`Story`] (every scenario found and validated
//! with the overrides it will run with) before anything runs.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use leaklab_engine::scenario::{self, Catalog, Document, Opt, Overrides, RunPlan, ScenarioError, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoryFile {
    title: String,
    intro: String,
    chapter: Vec<ChapterFile>,
    #[serde(default)]
    rule: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChapterFile {
    scenario: String,
    title: String,
    lesson: String,
    explain: String,
    rust: Option<String>,
    go: Option<String>,
    java: Option<String>,
    #[serde(default)]
    heap_profile: bool,
    /// Another scenario run after the chapter's, whose call sites the chapter shows beside its own (the
    /// same step in another runtime).
    beside: Option<String>,
    /// The `loadgen run` options the chapter takes under `--fast`, by flag name (`warmup_requests = 50`).
    #[serde(default)]
    fast: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: String,
    why: String,
    proven_by: Vec<String>,
}

/// The story, ready to run.
#[derive(Debug, Clone)]
pub(crate) struct Story {
    /// The file it came from.
    pub source: PathBuf,
    pub title: String,
    /// The incident, in a paragraph.
    pub intro: String,
    pub chapters: Vec<Chapter>,
    pub rules: Vec<Rule>,
}

/// One chapter: a scenario and the words around it.
#[derive(Debug, Clone)]
pub(crate) struct Chapter {
    /// 1-based, in the story's order.
    pub number: usize,
    /// The scenario's name (its file's stem).
    pub name: String,
    /// The scenario as it will run, overrides applied.
    pub scenario: RunPlan,
    /// What the child `loadgen run` gets on its command line.
    pub overrides: Overrides,
    pub title: String,
    /// One line, shown while the chapter runs.
    pub lesson: String,
    /// Two or three sentences for the page.
    pub explain: String,
    /// The client code the scenario models.
    pub rust: Option<String>,
    pub go: Option<String>,
    pub java: Option<String>,
    /// The scenario run beside the chapter's for its call sites: its name and plan.
    pub beside: Option<(String, RunPlan)>,
}

/// A rule of thumb and the chapters that measure it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub rule: String,
    pub why: String,
    /// Scenario names of chapters.
    pub proven_by: Vec<String>,
}

/// The story at `path`; each chapter's scenario is looked up in `catalog` and
/// validated with the overrides it runs with (`fast` adds each chapter's `fast` table).
/// Both profiles are validated, so a mistake in one shows whichever is run.
pub(crate) fn load(path: &Path, catalog: &Catalog, fast: bool) -> Result<Story, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.to_owned(), source })?;
    let document = Document::parse(path, &text)?;
    let file: StoryFile = document.read(path, document.table.clone())?;
    let invalid = |key: String, line: Option<usize>, reason: String| ScenarioError::Invalid {
        path: path.to_owned(),
        line,
        key,
        reason,
    };
    for (key, value) in [("title", &file.title), ("intro", &file.intro)] {
        if value.trim().is_empty() {
            return Err(invalid(key.to_owned(), None, "must not be empty".to_owned()));
        }
    }
    if file.chapter.is_empty() {
        return Err(invalid("chapter".to_owned(), None, "a story needs at least one [[chapter]]".to_owned()));
    }
    let mut chapters: Vec<Chapter> = Vec::new();
    for (index, chapter) in file.chapter.into_iter().enumerate() {
        let key = |field: &str| format!("chapter[{index}].{field}");
        let line = document.line(&format!("chapter[{index}]"));
        for (field, value) in [("title", &chapter.title), ("lesson", &chapter.lesson), ("explain", &chapter.explain)] {
            if value.trim().is_empty() {
                return Err(invalid(key(field), line, "must not be empty".to_owned()));
            }
        }
        let source =
            catalog.resolve(&chapter.scenario).map_err(|error| invalid(key("scenario"), line, error.to_string()))?;
        let name =
            source.file_stem().map_or_else(|| chapter.scenario.clone(), |stem| stem.to_string_lossy().into_owned());
        if chapters.iter().any(|earlier| earlier.name == name) {
            return Err(invalid(
                key("scenario"),
                line,
                format!("{name} already has a chapter; rules name chapters by scenario"),
            ));
        }
        let mut normal = Overrides::default();
        if chapter.heap_profile {
            normal.set(Opt::HeapProfile, Value::On);
        }
        let fast_table = Overrides::from_table(&chapter.fast).map_err(|(field, reason)| {
            let key = key(&format!("fast.{field}"));
            invalid(key.clone(), document.line(&key).or(line), reason)
        })?;
        let with_fast = normal.clone().merged(&fast_table);
        let validated = |overrides: &Overrides, table: &str| {
            scenario::load(&source, overrides).map_err(|error| invalid(key(table), line, error.to_string()))
        };
        let full = validated(&normal, "scenario")?;
        let short = validated(&with_fast, "fast")?;
        let (scenario, overrides) = if fast { (short, with_fast) } else { (full, normal) };
        let beside = match &chapter.beside {
            Some(other) => Some(beside(catalog, other).map_err(|reason| invalid(key("beside"), line, reason))?),
            None => None,
        };
        chapters.push(Chapter {
            number: index + 1,
            name,
            scenario,
            overrides,
            title: chapter.title.trim().to_owned(),
            lesson: chapter.lesson.trim().to_owned(),
            explain: chapter.explain.trim().to_owned(),
            rust: chapter.rust.map(|code| code.trim_matches('\n').to_owned()).filter(|code| !code.is_empty()),
            go: chapter.go.map(|code| code.trim_matches('\n').to_owned()).filter(|code| !code.is_empty()),
            java: chapter.java.map(|code| code.trim_matches('\n').to_owned()).filter(|code| !code.is_empty()),
            beside,
        });
    }
    let rules = rules(file.rule, &chapters, &document, &invalid)?;
    Ok(Story {
        source: path.to_owned(),
        title: file.title.trim().to_owned(),
        intro: file.intro.trim().to_owned(),
        chapters,
        rules,
    })
}

/// The story's rules, each naming chapters that exist.
fn rules(
    file: Vec<RuleFile>,
    chapters: &[Chapter],
    document: &Document,
    invalid: &dyn Fn(String, Option<usize>, String) -> ScenarioError,
) -> Result<Vec<Rule>, ScenarioError> {
    let mut rules = Vec::new();
    for (index, rule) in file.into_iter().enumerate() {
        let key = |field: &str| format!("rule[{index}].{field}");
        let line = document.line(&format!("rule[{index}]"));
        if rule.rule.trim().is_empty() {
            return Err(invalid(key("rule"), line, "must not be empty".to_owned()));
        }
        if rule.proven_by.is_empty() {
            return Err(invalid(key("proven_by"), line, "name at least one chapter's scenario".to_owned()));
        }
        if let Some(unknown) = rule.proven_by.iter().find(|name| !chapters.iter().any(|c| &&c.name == name)) {
            let names: Vec<&str> = chapters.iter().map(|c| c.name.as_str()).collect();
            return Err(invalid(
                key("proven_by"),
                line,
                format!("{unknown:?} is not a chapter's scenario; the chapters are {}", names.join(", ")),
            ));
        }
        rules.push(Rule {
            rule: rule.rule.trim().to_owned(),
            why: rule.why.trim().to_owned(),
            proven_by: rule.proven_by,
        });
    }
    Ok(rules)
}

/// The scenario `name` run beside a chapter's, found in `catalog` and validated as it runs: its name and plan.
fn beside(catalog: &Catalog, name: &str) -> Result<(String, RunPlan), String> {
    let source = catalog.resolve(name).map_err(|error| error.to_string())?;
    let plan = scenario::load(&source, &Overrides::default()).map_err(|error| error.to_string())?;
    let stem = source.file_stem().map_or_else(|| name.to_owned(), |stem| stem.to_string_lossy().into_owned());
    Ok((stem, plan))
}

/// `./demo/story.toml`, else the source tree's.
pub(crate) fn default_path() -> PathBuf {
    let here = PathBuf::from("demo/story.toml");
    if here.is_file() { here } else { Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/story.toml") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::locate(Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")))
    }

    fn load_text(text: &str, fast: bool) -> Result<Story, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("story.toml");
        std::fs::write(&path, text).unwrap();
        load(&path, &catalog(), fast)
            .map_err(|error| error.to_string().replace(&path.display().to_string(), "story.toml"))
    }

    const HEAD: &str = "title = \"t\"\nintro = \"i\"\n";
    const CHAPTER: &str = "[[chapter]]\nscenario = \"leak\"\ntitle = \"t\"\nlesson = \"l\"\nexplain = \"e\"\n";

    #[test]
    fn the_shipped_story_loads_in_both_profiles() {
        for fast in [false, true] {
            let story = load(&default_path(), &catalog(), fast).unwrap();
            let names: Vec<&str> = story.chapters.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "reused",
                    "leak",
                    "leak-connect-timeout",
                    "leak-server-idle",
                    "keepalive-mismatch",
                    "per-request-close",
                    "stream-leak",
                    "recommended",
                    "go-leak",
                    "go-app-leak",
                    "java-leak"
                ]
            );
            assert_eq!(story.rules.len(), 5, "the four rules of thumb, and one for streams");
            let leak = &story.chapters[1];
            assert!(leak.overrides.is_set(Opt::HeapProfile), "the leak chapter has the heap table");
            assert_eq!(leak.overrides.is_set(Opt::Requests), fast, "fast overrides apply only under --fast");
        }
    }

    #[test]
    fn fast_overrides_are_validated_by_the_scenario_with_the_flag_named() {
        let err = load_text(&format!("{HEAD}{CHAPTER}fast = {{ requests = 10, warmup_requests = 20 }}\n"), false)
            .unwrap_err();
        assert!(err.starts_with("story.toml:3: chapter[0].fast: "), "{err}");
        assert!(err.contains("load.warmup_requests (set by --warmup-requests)"), "{err}");
        let err = load_text(&format!("{HEAD}{CHAPTER}fast = {{ cooldown = \"soon\" }}\n"), true).unwrap_err();
        assert!(err.starts_with("story.toml:8: chapter[0].fast.cooldown: \"soon\""), "{err}");
        let err = load_text(&format!("{HEAD}{CHAPTER}fast = {{ speed = 2 }}\n"), true).unwrap_err();
        assert!(
            err.starts_with("story.toml:8: chapter[0].fast.speed: unknown option; expected one of requests"),
            "{err}"
        );
        // Any option of `loadgen run` is a fast override, by its flag's name.
        let story = load_text(&format!("{HEAD}{CHAPTER}fast = {{ concurrency = 2, no_caps = true }}\n"), true).unwrap();
        assert_eq!(story.chapters[0].overrides.get(Opt::Concurrency), Some(&Value::Count(2)));
    }

    #[test]
    fn bad_chapters_and_rules_name_their_key() {
        let unknown = CHAPTER.replace("\"leak\"", "\"no-such\"");
        let err = load_text(&format!("{HEAD}{unknown}"), false).unwrap_err();
        assert!(err.starts_with("story.toml:3: chapter[0].scenario: no scenario named \"no-such\""), "{err}");
        let err = load_text(&format!("{HEAD}{CHAPTER}{CHAPTER}"), false).unwrap_err();
        assert!(err.contains("chapter[1].scenario: leak already has a chapter"), "{err}");
        let rule = "[[rule]]\nrule = \"r\"\nwhy = \"w\"\nproven_by = [\"reused\"]\n";
        let err = load_text(&format!("{HEAD}{CHAPTER}{rule}"), false).unwrap_err();
        assert!(
            err.contains("rule[0].proven_by: \"reused\" is not a chapter's scenario; the chapters are leak"),
            "{err}"
        );
        let err = load_text(HEAD, false).unwrap_err();
        assert!(err.contains("chapter"), "{err}");
        let empty = CHAPTER.replace("lesson = \"l\"", "lesson = \" \"");
        let err = load_text(&format!("{HEAD}{empty}"), false).unwrap_err();
        assert!(err.contains("chapter[0].lesson: must not be empty"), "{err}");
    }

    #[test]
    fn an_external_client_takes_no_overrides() {
        let go = "[[chapter]]\nscenario = \"go-leak\"\ntitle = \"t\"\nlesson = \"l\"\nexplain = \"e\"\nheap_profile = true\n";
        let err = load_text(&format!("{HEAD}{go}"), false).unwrap_err();
        assert!(err.contains("chapter[0].scenario: ") && err.contains("an external client runs its own load"), "{err}");
    }
}
