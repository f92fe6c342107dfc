//! Every shipped scenario file becomes a plan; every broken one in
//! `tests/bad-scenarios/` fails with the message its first line expects.

use std::path::{Path, PathBuf};

use leaklab_loadgen::scenario::{self, Catalog, ChannelPolicy, Overrides};

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn every_shipped_scenario_parses() {
    let files = toml_files(&shipped());
    assert!(files.len() >= 4, "expected the four core scenarios, found {files:?}");
    for path in files {
        let plan = scenario::load(&path, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Teaches:"), "{} must open with a comment saying what it teaches", path.display());
        assert!(plan.load.max_requests.get() <= 10_000, "{}: default runs stay small", path.display());
        assert!(
            plan.verdict.expect_client.is_some() && plan.verdict.expect_server.is_some(),
            "{}: a shipped scenario says what each process's memory should do",
            path.display()
        );
        assert!(plan.load.rounds.get() >= 6, "{}: at least 6 rounds", path.display());
    }
}

#[test]
fn the_core_scenarios_are_there_with_their_policies() {
    let catalog = Catalog { dir: shipped() };
    for (name, policy) in
        [("reused", "reused"), ("leak", "leak"), ("per-request-close", "per-request-close"), ("pool", "pool")]
    {
        let plan = scenario::load(&catalog.resolve(name).unwrap(), &Overrides::default()).unwrap();
        assert_eq!(plan.policy.name(), policy);
    }
    let pool = scenario::load(&catalog.resolve("pool").unwrap(), &Overrides::default()).unwrap();
    assert!(matches!(pool.policy, ChannelPolicy::Pool { size } if size.get() > 1));
}

#[test]
fn listing_shows_every_scenario_with_its_description() {
    let entries = Catalog { dir: shipped() }.entries();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    for name in ["leak", "per-request-close", "pool", "reused"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(entries.iter().all(|e| e.description.as_ref().is_ok_and(|d| !d.is_empty())), "{entries:?}");
}

#[test]
fn an_unknown_name_lists_what_exists() {
    let err = Catalog { dir: shipped() }.resolve("leek").unwrap_err().to_string();
    assert!(err.contains("no scenario named \"leek\""), "{err}");
    assert!(err.contains("leak") && err.contains("reused"), "{err}");
}

#[test]
fn broken_scenarios_fail_with_file_key_and_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-scenarios");
    let files = toml_files(&dir);
    assert!(files.len() >= 10, "fixtures missing: {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} must start with `# expect: <message>`", path.display()));
        let name = path.file_name().unwrap().to_str().unwrap();
        let error = scenario::parse(Path::new(name), &text, &Overrides::default())
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"))
            .to_string();
        assert!(error.starts_with(expected), "{name}:\n  expected: {expected}\n  got:      {error}");
    }
}
