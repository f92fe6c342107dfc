//! Every shipped scenario file becomes a plan; every broken one in
//! `tests/bad-scenarios/` fails with the message its first line expects.

use std::path::{Path, PathBuf};

use leaklab_loadgen::scenario::{self, Catalog, ChannelPolicy, Overrides, Scenario};

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
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Teaches:"), "{} must open with a comment saying what it teaches", path.display());
        match scenario::load_any(&path, &Overrides::default()).unwrap_or_else(|e| panic!("{e}")) {
            Scenario::Builtin(plan) => {
                assert!(plan.load.max_requests.get() <= 10_000, "{}: default runs stay small", path.display());
                assert!(
                    plan.verdict.expect_client.is_some() && plan.verdict.expect_server.is_some(),
                    "{}: a shipped scenario says what each process's memory should do",
                    path.display()
                );
                assert!(plan.load.rounds.get() >= 6, "{}: at least 6 rounds", path.display());
            }
            Scenario::External(plan) => {
                assert!(
                    plan.command[0].starts_with("target/peers/"),
                    "{}: peers are built by `make peers`",
                    path.display()
                );
                assert!(
                    plan.command.iter().any(|arg| arg.contains("{addr}")),
                    "{}: the command gets the server's address",
                    path.display()
                );
                assert!(
                    plan.verdict.expect_client.is_some() && plan.verdict.expect_server.is_some(),
                    "{}",
                    path.display()
                );
                assert!(
                    plan.duration <= std::time::Duration::from_secs(120),
                    "{}: runs stop by themselves",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn external_scenarios_are_checked_like_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str, overrides: &Overrides| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        scenario::load_any(&path, overrides).map(|_| ()).map_err(|e| e.to_string())
    };
    let good = "description = \"d\"\n[external]\ncommand = [\"peer\", \"{addr}\"]\n";
    assert_eq!(check("good", good, &Overrides::default()), Ok(()));
    let err =
        check("no-command", "description = \"d\"\n[external]\nduration = \"5s\"\n", &Overrides::default()).unwrap_err();
    assert!(err.contains("no-command.toml: external.command: missing"), "{err}");
    let err = check("both", &format!("{good}[client]\npolicy = \"leak\"\n"), &Overrides::default()).unwrap_err();
    assert!(err.contains("client.policy: an external scenario's client is its command"), "{err}");
    let err = check("flags", good, &Overrides { requests: Some(10), ..Overrides::default() }).unwrap_err();
    assert!(err.contains("flags.toml: external: an external client runs its own load"), "{err}");
    let err = check("warm", &format!("{good}duration = \"2s\"\nwarmup = \"3s\"\n"), &Overrides::default()).unwrap_err();
    assert!(err.contains("external.warmup: must be shorter than external.duration"), "{err}");
    // The built-in path refuses it with a pointer to `loadgen run`.
    let path = dir.path().join("good.toml");
    let err = scenario::load(&path, &Overrides::default()).unwrap_err().to_string();
    assert!(err.contains("runs an external client"), "{err}");
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
