//! The command line's flags: consistent, converted as documented, and read back when handed on.

use std::time::Duration;

use clap::{CommandFactory, Parser};
use leaklab_engine::attack::{AttackKind, AttackPlan};
use leaklab_engine::run::{ServerMetrics, ServerPprof, TargetChoice};
use leaklab_engine::scenario::{Kind, OPTIONS, Opt, Overrides, Value};

use super::*;

#[test]
fn cli_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn target_must_be_host_and_port() {
    let cli = Cli::try_parse_from(["loadgen", "run", "leak", "--target", "localhost"]).unwrap();
    let Command::Run(args) = cli.command else { panic!("run expected") };
    let err = args.common.target().unwrap_err().to_string();
    assert!(err.contains("--target \"localhost\": expected HOST:PORT"), "{err}");
}

#[test]
fn compare_takes_names_and_the_quick_profile() {
    let cli =
        Cli::try_parse_from(["loadgen", "compare", "leak", "reused", "--quick", "--baseline", "main", "--bisect"])
            .unwrap();
    let Command::Compare(args) = cli.command else { panic!("run expected") };
    assert_eq!(args.scenarios, ["leak", "reused"]);
    assert!(args.quick && args.verdict.bisect);
    assert_eq!(args.verdict.baseline.as_deref(), Some("main"));
}

#[test]
fn a_value_that_is_not_one_is_a_usage_error_naming_the_flag() {
    let err = Cli::try_parse_from(["loadgen", "run", "leak", "--requests", "many"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--requests"), "{err}");
    let err = Cli::try_parse_from(["loadgen", "run", "leak", "--no-caps", "--cap-fds", "10"]).unwrap_err();
    assert!(err.to_string().contains("--no-caps") && err.to_string().contains("--cap-fds"), "{err}");
}

/// `loadgen run`'s arguments, parsed.
fn run_args(args: &[String]) -> Box<RunArgs> {
    let argv = ["loadgen", "run", "leak"].into_iter().map(String::from).chain(args.iter().cloned());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|error| panic!("{args:?}: {error}"));
    let Command::Run(run) = cli.command else { panic!("run expected") };
    run
}

/// Every argument list leaklab hands a child process reads back, through that child's own flags, as what
/// it was made from: a scenario's overrides and a comparison's target and view (`loadgen run`), and a
/// scenario's attack (`loadgen attack`). The toy server's settings are the server's own test.
#[test]
fn every_argument_list_a_child_is_given_reads_back() {
    let every = OPTIONS.iter().fold(Overrides::default(), |overrides, spec| {
        let value = match spec.kind {
            Kind::Count => Value::Count(9),
            Kind::Duration => Value::Duration(Duration::from_millis(1500)),
            Kind::Rate => Value::Rate(50.5),
            Kind::Size => Value::Size(1 << 20),
            Kind::Switch => Value::On,
            Kind::Text => Value::Text("{\"name\": \"a b\"}".to_owned()),
            Kind::Path => Value::Text("/data/requests.jsonl".to_owned()),
            Kind::Paths => Value::Paths(vec!["/protos/a.proto".to_owned(), "/protos/b.proto".to_owned()]),
            Kind::Metadata => Value::Metadata([("x-team".to_owned(), "a".to_owned())].into()),
        };
        // --data-file conflicts with --data, --insecure with --cacert.
        if matches!(spec.opt, Opt::DataFile | Opt::Insecure) {
            return overrides;
        }
        // --no-caps refuses the caps it lifts.
        if spec.opt == Opt::NoCaps { overrides } else { overrides.with(spec.opt, value) }
    });
    let lifted = Overrides::default().with(Opt::NoCaps, Value::On).with(Opt::Rate, Value::Rate(0.0));
    for overrides in [every, lifted, Overrides::default()] {
        assert_eq!(run_args(&overrides.to_args()).overrides.0, overrides, "{:?}", overrides.to_args());
    }

    let external = TargetChoice::External {
        authority: "127.0.0.1:50051".to_owned(),
        server_pid: Some(std::process::id()),
        server_metrics: Some(ServerMetrics {
            url: "http://127.0.0.1:9090/metrics".to_owned(),
            named: vec!["a_total".to_owned(), "b".to_owned()],
        }),
        server_pprof: Some(ServerPprof {
            url: "http://127.0.0.1:6060/debug/pprof".to_owned(),
            own_code: vec!["main.".to_owned(), "example.com/app".to_owned()],
        }),
    };
    let spawned = TargetChoice::Spawn { server_bin: "/opt/leaklab/leaklab-server".into() };
    for (target, view) in [(external, ["--quiet"]), (spawned, ["--dashboard"])] {
        let common = &run_args(&view.map(String::from)).common;
        let args = common.forwarded(&target);
        let child = run_args(&args);
        assert_eq!(child.common.choice().unwrap(), target, "{args:?}");
        assert_eq!(child.common.view(), common.view(), "{args:?}");
    }

    let attack = AttackPlan {
        kind: AttackKind::UnreadResponses,
        target: "127.0.0.1:50051".parse().unwrap(),
        connections: 12,
        duration: Duration::from_millis(2500),
        streams_per_second: Some(250.5),
        max_streams: 300,
        response_bytes: 65_536,
        declared_bytes: 1 << 20,
        good_client: None,
    };
    for plan in [attack.clone(), AttackPlan { good_client: Some(Duration::from_millis(20)), ..attack }] {
        let args = plan.args();
        let cli = Cli::try_parse_from(std::iter::once("loadgen".to_owned()).chain(args.clone()))
            .unwrap_or_else(|error| panic!("{args:?}: {error}"));
        let Command::Attack(parsed) = cli.command else { panic!("attack expected") };
        assert_eq!(parsed.plan().unwrap(), plan, "{args:?}");
    }
}

#[test]
fn an_attack_outside_the_bounds_every_attack_keeps_is_named_by_its_flag() {
    let plan = |extra: &[&str]| {
        let argv = ["loadgen", "attack", "--kind", "unread-responses", "--target", "127.0.0.1:1"];
        let cli = Cli::try_parse_from(argv.iter().chain(extra)).unwrap();
        let Command::Attack(args) = cli.command else { panic!("attack expected") };
        args.plan().map_err(|error| error.to_string())
    };
    assert!(plan(&[]).is_ok());
    assert!(plan(&["--connections", "0"]).unwrap_err().starts_with("--connections: must be between 1 and 1000"));
    assert!(plan(&["--duration", "2m"]).unwrap_err().starts_with("--duration: an attack lasts"));
    assert!(
        plan(&["--streams-per-second", "0"])
            .unwrap_err()
            .starts_with("--streams-per-second: must be a positive number")
    );
    let exposed = plan(&["--max-streams", "5000"]).unwrap_err();
    assert!(exposed.starts_with("--max-streams: max-streams 5000 × response-bytes"), "{exposed}");
}

#[test]
fn a_watch_without_a_command_or_with_a_long_warmup_is_refused() {
    let cli =
        Cli::try_parse_from(["loadgen", "watch", "--warmup", "5s", "--duration", "2s", "--", "sleep", "1"]).unwrap();
    let Command::Watch(args) = cli.command else { panic!("watch expected") };
    assert!(args.plan().unwrap_err().to_string().contains("--warmup"));
}
