//! The architecture, checked from the source: which crate may depend on which,
//! the top-level modules of each crate importing each other without a cycle,
//! and the engine's foundations standing on their own. A new dependency or
//! `use` that breaks a rule fails here, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each of the workspace's crates (by directory) and the crates of the workspace it may depend on.
const ALLOWED: [(&str, &[&str]); 7] = [
    ("proto", &[]),
    ("probe", &[]),
    ("wire", &[]),
    ("verdict", &[]),
    ("server", &["leaklab-proto", "leaklab-probe", "leaklab-wire"]),
    ("engine", &["leaklab-proto", "leaklab-probe", "leaklab-wire", "leaklab-verdict"]),
    ("loadgen", &["leaklab-probe", "leaklab-verdict", "leaklab-engine"]),
];

/// Crates of the command line's side: the engine returns results and never writes outputs or shows
/// anything, so it needs none of them.
const COMMAND_LINE: [&str; 6] = ["clap", "plotters", "indicatif", "console", "inferno", "png"];

/// What the verdict crate may use: it is pure, so that tests anywhere can depend on it.
const PURE: [&str; 2] = ["schemars", "serde"];

/// Modules of the engine that import no other module of it.
const FOUNDATIONS: [&str; 5] = ["scenario", "latency", "halt", "heap", "http"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `[dependencies]` of the crate in `dir`, by name (dev-dependencies may be anything a test needs).
fn dependencies(dir: &str) -> BTreeSet<String> {
    let path = root().join(dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()) {
        if entry.is_dir() {
            files.extend(files_of(&entry));
        } else if entry.extension().is_some_and(|ext| ext == "rs") {
            files.push(entry);
        }
    }
    files
}

/// The top-level modules a source text names through `crate::`.
fn imports(text: &str) -> BTreeSet<String> {
    let ident = |rest: &str| rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split(',').map(|item| ident(item.trim())).filter(|name| !name.is_empty()));
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

/// Each top-level module of the crate in `dir` and the top-level modules it imports; the crate's root
/// files (`lib.rs`, `main.rs`), this test and test modules in their own files (`tests.rs`, which may
/// import anything to test with) are left out.
fn graph(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join(dir).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files_of(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let top =
            relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        if ["lib", "main", "modules"].contains(&top.as_str()) || file.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let imported: Vec<String> =
            imports(&text).into_iter().filter(|name| *name != top && !name.is_empty()).collect();
        graph.entry(top).or_default().extend(imported);
    }
    graph
}

/// A cycle through `start`, if any, as the modules along it.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if visit(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    visit(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn each_crate_depends_only_on_the_crates_below_it() {
    let workspace: BTreeSet<&str> = ALLOWED.iter().map(|(dir, _)| *dir).collect();
    for (dir, allowed) in ALLOWED {
        let ours: BTreeSet<String> =
            dependencies(dir).into_iter().filter(|name| name.starts_with("leaklab-")).collect();
        let extra: Vec<&String> = ours.iter().filter(|name| !allowed.contains(&name.as_str())).collect();
        assert!(extra.is_empty(), "{dir} depends on {extra:?}; it may depend on {allowed:?} of {workspace:?}");
    }
    let engine = dependencies("engine");
    let command_line: Vec<&str> = COMMAND_LINE.into_iter().filter(|name| engine.contains(*name)).collect();
    assert!(command_line.is_empty(), "the engine depends on {command_line:?}, crates of the command line's side");
    let verdict = dependencies("verdict");
    assert!(verdict.iter().all(|name| PURE.contains(&name.as_str())), "the verdict crate depends on {verdict:?}");
}

#[test]
fn the_engine_names_nothing_of_the_command_line() {
    for file in files_of(&root().join("engine/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for name in ["leaklab_loadgen", "clap::", "plotters::", "indicatif::"] {
            assert!(!text.contains(name), "{} names {name}", file.display());
        }
    }
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    for dir in ["engine", "loadgen", "server", "probe", "verdict", "wire"] {
        let graph = graph(dir);
        assert!(!graph.is_empty(), "the source tree of {dir} was not read");
        for module in graph.keys() {
            if let Some(cycle) = cycle_from(&graph, module) {
                panic!("import cycle in {dir}: {}", cycle.join(" → "));
            }
        }
    }
    let engine = graph("engine");
    for module in FOUNDATIONS {
        let imported = &engine[module];
        assert!(imported.is_empty(), "engine's {module} imports {imported:?}: it must stand on its own");
    }
}

/// The most lines a source file may have, and a function outside the tests: past them, a file or a
/// function holds more than one screenful of responsibilities and splits.
const MOST_FILE_LINES: usize = 600;
const MOST_FUNCTION_LINES: usize = 100;

/// Every Rust file of the workspace's crates: sources, benches and tests.
fn workspace_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (dir, _) in ALLOWED {
        for part in ["src", "benches", "tests"] {
            let path = root().join(dir).join(part);
            if path.is_dir() {
                files.extend(files_of(&path));
            }
        }
    }
    files
}

/// Each function of `text` before its tests (`#[cfg(test)]`), as (lines, first line, name): from its `fn`
/// line to the brace that closes it, braces in strings, characters and comments left out.
fn functions(text: &str) -> Vec<(usize, usize, String)> {
    let lines: Vec<&str> = text.lines().take_while(|line| line.trim() != "#[cfg(test)]").collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        let mut depth = 0i64;
        let mut opened = false;
        for (at, code) in lines[start..].iter().map(|line| code_of(line)).enumerate() {
            if !opened && code.contains(';') && !code.contains('{') {
                break;
            }
            for c in code.chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth <= 0 {
                found.push((at + 1, start + 1, name));
                break;
            }
        }
    }
    found
}

/// The name a line declares a function by, if it does.
fn fn_name(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    let mut word = words.next()?;
    while ["pub", "pub(crate)", "pub(super)", "async", "const", "unsafe", "extern"].contains(&word)
        || word.starts_with("pub(")
    {
        word = words.next()?;
    }
    (word == "fn").then(|| words.next()).flatten().map(|name| name.split(['<', '(']).next().unwrap_or(name).to_owned())
}

/// A line without its strings, characters and comment.
fn code_of(line: &str) -> String {
    let mut code = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(s) = chars.next() {
                    match s {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' if chars.clone().nth(1) == Some('\'') || chars.peek() == Some(&'\\') => {
                while let Some(s) = chars.next() {
                    match s {
                        '\\' => {
                            chars.next();
                        }
                        '\'' => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => break,
            _ => code.push(c),
        }
    }
    code
}

/// No file outgrows [`MOST_FILE_LINES`] nor function [`MOST_FUNCTION_LINES`]. With `--nocapture` it
/// prints the longest ten of each: `cargo test -p leaklab-loadgen --bin loadgen sizes -- --nocapture`.
#[test]
fn no_file_or_function_outgrows_a_screenful_sizes() {
    let mut files = Vec::new();
    let mut functions_found = Vec::new();
    for file in workspace_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
        for (lines, line, name) in functions(&text) {
            functions_found.push((lines, format!("{shown}:{line} {name}")));
        }
        files.push((text.lines().count(), shown));
    }
    files.sort_by(|a, b| b.cmp(a));
    functions_found.sort_by(|a, b| b.cmp(a));
    assert!(functions_found.len() > 1_000, "the sources were not read: {} functions", functions_found.len());
    for (title, list) in [("files", &files), ("functions", &functions_found)] {
        eprintln!("longest {title}:");
        list.iter().take(10).for_each(|(lines, place)| eprintln!("{lines:>6}  {place}"));
    }
    let long_files: Vec<_> = files.iter().filter(|(lines, _)| *lines > MOST_FILE_LINES).collect();
    assert!(long_files.is_empty(), "over {MOST_FILE_LINES} lines: {long_files:?}");
    let long_functions: Vec<_> = functions_found.iter().filter(|(lines, _)| *lines > MOST_FUNCTION_LINES).collect();
    assert!(long_functions.is_empty(), "functions over {MOST_FUNCTION_LINES} lines: {long_functions:?}");
}

#[test]
fn a_function_is_measured_from_its_fn_to_its_closing_brace() {
    let text = "pub(crate) async fn first<T>(x: T) {\n    let s = \"}}\"; // }\n    if x { '{' }\n}\nfn second();\n\
                #[cfg(test)]\nfn third() {\n}\n";
    assert_eq!(
        functions(text),
        vec![(4, 1, "first".to_owned())],
        "the declaration alone and the tests are not counted"
    );
}

#[test]
fn the_reader_finds_paths_and_groups_and_the_search_finds_a_cycle() {
    let text =
        "use crate::sample::{Phase, Sample};\nuse crate::{halt, stats::Span};\nlet x = crate::report::units::mib(1);";
    assert_eq!(imports(text), ["halt", "report", "sample", "stats"].map(String::from).into_iter().collect());
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), [to.to_owned()].into_iter().collect()))
        .collect();
    assert_eq!(cycle_from(&graph, "a"), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
}
