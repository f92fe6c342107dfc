//! The options' table: distinct names, values kept exactly, and written where a file keeps them.

use super::*;

fn every_option() -> Overrides {
    let mut overrides = Overrides::default();
    for spec in &OPTIONS {
        let value = match spec.kind {
            Kind::Count => Value::Count(7),
            Kind::Duration => Value::Duration(Duration::from_millis(1500)),
            Kind::Rate => Value::Rate(50.5),
            Kind::Size => Value::Size(1 << 20),
            Kind::Switch => Value::On,
            Kind::Text => Value::Text("{\"a\": [1, 2]}".to_owned()),
            Kind::Path => Value::Text("/data/requests.jsonl".to_owned()),
            Kind::Paths => Value::Paths(vec!["/protos/a.proto".to_owned(), "/protos/b c.proto".to_owned()]),
            Kind::Metadata => Value::Metadata([("x-team".to_owned(), "a, b".to_owned())].into()),
        };
        overrides.set(spec.opt, value);
    }
    overrides
}

/// The names that appear more than once in `names`, wherever they stand.
fn repeated<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    let mut repeated: Vec<&str> = names.windows(2).filter(|pair| pair[0] == pair[1]).map(|pair| pair[0]).collect();
    repeated.dedup();
    repeated
}

#[test]
fn a_name_repeated_anywhere_is_found() {
    // `dedup` alone only drops neighbours: a flag declared twice, rows apart, went unnoticed.
    assert_eq!(repeated(["rate", "requests", "rate"]), ["rate"]);
    assert_eq!(repeated(["a", "b", "c"]), Vec::<&str>::new());
}

#[test]
fn every_option_has_a_distinct_flag_key_and_letter() {
    assert_eq!(repeated(OPTIONS.iter().map(|spec| spec.flag)), Vec::<&str>::new());
    assert_eq!(repeated(OPTIONS.iter().filter_map(|spec| spec.key)), Vec::<&str>::new());
    assert_eq!(OPTIONS.iter().filter(|spec| spec.key.is_none()).count(), 1, "all but no-caps set a key");
    let letters: Vec<String> = OPTIONS.iter().filter_map(|spec| spec.short).map(String::from).collect();
    assert_eq!(repeated(letters.iter().map(String::as_str)), Vec::<&str>::new());
}

#[test]
fn run_json_keeps_every_option_exactly() {
    let overrides = every_option();
    let text = serde_json::to_string(&overrides).unwrap();
    assert_eq!(serde_json::from_str::<Overrides>(&text).unwrap(), overrides, "{text}");
}

#[test]
fn overrides_are_written_where_the_file_keeps_them() {
    let mut file: toml::Table = "[load]\nrate = 400\nrequests = 10\n".parse().unwrap();
    let overrides = Overrides::default()
        .with(Opt::Requests, Value::Count(9))
        .with(Opt::Rate, Value::Rate(0.0))
        .with(Opt::Cooldown, Value::Duration(Duration::from_secs(1)))
        .with(Opt::HeapProfile, Value::On);
    overrides.apply(&mut file);
    assert_eq!(file["load"]["requests"].as_integer(), Some(9));
    assert!(file["load"].get("rate").is_none(), "--rate 0 means closed loop");
    assert_eq!(file["sampling"]["cooldown"].as_str(), Some("1s"));
    assert_eq!(file["sampling"]["heap_profile"].as_bool(), Some(true));
}

#[test]
fn a_fast_table_uses_the_flags_names() {
    let table: toml::Table = "requests = 500\ncooldown = \"1s\"\nrate = 2500.0\nwarmup_requests = 50".parse().unwrap();
    let overrides = Overrides::from_table(&table).unwrap();
    assert_eq!(overrides.get(Opt::Requests), Some(&Value::Count(500)));
    assert_eq!(overrides.get(Opt::WarmupRequests), Some(&Value::Count(50)));
    assert_eq!(overrides.get(Opt::Cooldown), Some(&Value::Duration(Duration::from_secs(1))));
    let (key, reason) = Overrides::from_table(&"speed = 2".parse().unwrap()).unwrap_err();
    assert_eq!(key, "speed");
    assert!(reason.starts_with("unknown option; expected one of requests, duration"), "{reason}");
    let (key, reason) = Overrides::from_table(&"cooldown = \"soon\"".parse().unwrap()).unwrap_err();
    assert_eq!(key, "cooldown");
    assert!(reason.starts_with("\"soon\" is not a duration"), "{reason}");
}

#[test]
fn child_run_arguments_name_each_flag_once() {
    let args = every_option().to_args();
    for spec in &OPTIONS {
        assert_eq!(args.iter().filter(|arg| **arg == format!("--{}", spec.flag)).count(), 1, "{args:?}");
    }
}
