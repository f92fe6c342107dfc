//! Every shipped scenario file becomes a plan and fits the committed scenario
//! schema; every broken one in `tests/bad-scenarios/` fails with the message
//! its first line expects.

use std::path::{Path, PathBuf};

use leaklab_engine::scenario::{self, Catalog, ChannelPolicy, ForeignClient, Overrides, RunPlan};

/// The schema line every shipped scenario opens with, for TOML editors.
const SCHEMA_LINE: &str = "#:schema ../schema/scenario.schema.json";

/// A scenario file's values as JSON, checked against `schema/scenario.schema.json`; the errors, if any.
fn schema_errors(text: &str) -> Vec<String> {
    let table: toml::Table = text.parse().expect("valid TOML");
    crate::common::schema_errors_against("scenario.schema.json", &serde_json::to_value(table).unwrap())
}

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
        let teaching = text.strip_prefix(SCHEMA_LINE).map(str::trim_start);
        assert!(
            teaching.is_some_and(|rest| rest.starts_with("# Teaches:")),
            "{} must open with `{SCHEMA_LINE}`, then a comment saying what it teaches",
            path.display()
        );
        let errors = schema_errors(&text);
        assert!(errors.is_empty(), "{} does not fit the scenario schema: {errors:?}", path.display());
        match scenario::load(&path, &Overrides::default()).unwrap_or_else(|e| panic!("{e}")) {
            RunPlan::Builtin(plan) => {
                assert!(plan.load.max_requests.get() <= 10_000, "{}: default runs stay small", path.display());
                assert!(
                    plan.verdict.expect_client.is_some() && plan.verdict.expect_server.is_some(),
                    "{}: a shipped scenario says what each process's memory should do",
                    path.display()
                );
                assert!(plan.load.rounds.get() >= 6, "{}: at least 6 rounds", path.display());
            }
            RunPlan::Foreign(plan) => {
                let ForeignClient::Command(command) = &plan.client else { panic!("{}: a command", path.display()) };
                // A peer built by `make peers`, or an interpreter on PATH running a peer's script (`node … FILE`).
                let built = command[0].starts_with("target/peers/")
                    || command[1..]
                        .iter()
                        .find(|arg| !arg.starts_with('-'))
                        .is_some_and(|s| s.starts_with("target/peers/"));
                assert!(built, "{}: peers are built by `make peers`", path.display());
                assert!(
                    command.iter().any(|arg| arg.contains("{addr}")),
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
        scenario::load(&path, overrides).map(|_| ()).map_err(|e| e.to_string())
    };
    let good = "description = \"d\"\n[external]\ncommand = [\"peer\", \"{addr}\"]\n";
    assert_eq!(check("good", good, &Overrides::default()), Ok(()));
    let err =
        check("no-command", "description = \"d\"\n[external]\nduration = \"5s\"\n", &Overrides::default()).unwrap_err();
    assert!(err.contains("no-command.toml: external.command: missing"), "{err}");
    let err = check("both", &format!("{good}[client]\npolicy = \"leak\"\n"), &Overrides::default()).unwrap_err();
    assert!(err.contains("client.policy: an external scenario's client is its command"), "{err}");
    let ten = Overrides::default().with(scenario::Opt::Requests, scenario::Value::Count(10));
    let err = check("flags", good, &ten).unwrap_err();
    assert!(err.contains("flags.toml:2: external: an external client runs its own load"), "{err}");
    let err = check("warm", &format!("{good}duration = \"2s\"\nwarmup = \"3s\"\n"), &Overrides::default()).unwrap_err();
    assert!(err.contains("external.warmup: must be shorter than external.duration"), "{err}");
}

#[test]
fn the_schema_refuses_an_unknown_key_and_a_wrong_type() {
    let good = "description = \"d\"\n[client]\npolicy = \"leak\"\n[load]\nrequests = 10\n";
    assert_eq!(schema_errors(good), Vec::<String>::new());
    let unknown = schema_errors("description = \"d\"\n[load]\nconcurency = 3\n");
    assert!(unknown.iter().any(|e| e.contains("concurency")), "{unknown:?}");
    let wrong_type = schema_errors("description = \"d\"\n[load]\nrequests = \"many\"\n");
    assert!(wrong_type.iter().any(|e| e.contains("/load/requests")), "{wrong_type:?}");
    let unknown_policy = schema_errors("description = \"d\"\n[client]\npolicy = \"leaky\"\n");
    assert!(unknown_policy.iter().any(|e| e.contains("/client/policy")), "{unknown_policy:?}");
    assert!(!schema_errors("[client]\npolicy = \"leak\"\n").is_empty(), "description is required");
    let no_policy = schema_errors("description = \"d\"\n[client]\nsource_addresses = 2\n");
    assert!(no_policy.iter().any(|e| e.contains("policy")), "a [client] table needs its policy: {no_policy:?}");
}

#[test]
fn the_committed_schema_and_reference_are_generated_from_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, generated) in [
        ("schema/scenario.schema.json", scenario::reference::json_schema()),
        ("docs/scenarios.md", scenario::reference::markdown()),
    ] {
        let committed = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        assert!(committed == generated, "{file} is out of date: run `make schema` and commit the result");
    }
}

#[test]
fn the_core_scenarios_are_there_with_their_policies() {
    let catalog = Catalog { dir: shipped() };
    for (name, policy) in
        [("reused", "reused"), ("leak", "leak"), ("per-request-close", "per-request-close"), ("pool", "pool")]
    {
        let plan = scenario::load(&catalog.resolve(name).unwrap(), &Overrides::default()).unwrap().builtin().unwrap();
        assert_eq!(plan.policy.name(), policy);
    }
    let pool = scenario::load(&catalog.resolve("pool").unwrap(), &Overrides::default()).unwrap().builtin().unwrap();
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
