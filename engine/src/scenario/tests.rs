//! The scenario parser on small files: defaults, every kind of error with its
//! line and key, overrides validated like the file, and arbitrary input
//! (property tests: never a panic, always the file in the error).

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use super::*;

fn parse_text(text: &str) -> Result<Plan, String> {
    parse_with(Path::new("scenarios/t.toml"), text, &Overrides::default()).map_err(|e| e.to_string())
}

/// A built-in scenario's plan from `text`.
fn parse_with(path: &Path, text: &str, overrides: &Overrides) -> Result<Plan, ScenarioError> {
    parse(path, text, overrides).map(|scenario| scenario.builtin().expect("a built-in scenario"))
}

const MINIMAL: &str = "description = \"d\"\n[client]\npolicy = \"reused\"\n";

#[test]
fn minimal_file_gets_small_safe_defaults() {
    let plan = parse_text(MINIMAL).unwrap();
    assert_eq!(plan.name, "t");
    assert_eq!(plan.policy, ChannelPolicy::Reused);
    assert_eq!(plan.load.max_requests.get(), defaults::REQUESTS as u64);
    assert_eq!(plan.load.concurrency.get(), defaults::CONCURRENCY as usize);
    assert_eq!(plan.load.request.payload.len(), defaults::PAYLOAD_BYTES as usize);
    assert_eq!(plan.sampling.interval, Some(defaults::SAMPLE_INTERVAL));
    assert!(plan.load.warmup_requests < plan.load.max_requests.get());
}

#[test]
fn every_server_setting_is_read_from_its_key() {
    use leaklab_wire::settings::{Kind, SERVER_OPTIONS, ServerSettings, Value};
    let defaults = ServerSettings::default();
    for option in &SERVER_OPTIONS {
        let (written, value) = match (option.kind, option.get(&defaults)) {
            (Kind::Switch, _) => ("true", Value::Switch(true)),
            (Kind::Duration | Kind::DurationLimit, Value::Off) => {
                ("\"1500ms\"", Value::Duration(Duration::from_millis(1500)))
            }
            (Kind::SizeLimit, Value::Off) => ("\"3MiB\"", Value::Number(3 << 20)),
            (_, Value::Off) => ("7", Value::Number(7)),
            (Kind::Count, _) => ("9000", Value::Number(9000)),
            _ => ("\"off\"", Value::Off),
        };
        let needed = option.needs.map(|(needed, _)| format!("{needed} = \"1s\"\n")).unwrap_or_default();
        let text = format!("{MINIMAL}[server]\n{needed}{} = {written}\n", option.name);
        let plan = parse_text(&text).unwrap_or_else(|error| panic!("{text}: {error}"));
        assert_eq!(option.get(&plan.server.settings), value, "{text}");
        assert!(plan.server.args().contains(&format!("--{}", option.flag())), "{text}: {:?}", plan.server.args());
    }
    let err = parse_text(&format!("{MINIMAL}[server]\nmax_concurency_streams = 3\n")).unwrap_err();
    assert!(err.starts_with("scenarios/t.toml:5: server.max_concurency_streams: unknown field"), "{err}");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = parse_text("description = \"d\"\n[client]\npolicy = \"reused\"\n[load]\nconcurency = 3\n").unwrap_err();
    assert!(err.starts_with("scenarios/t.toml:5: load.concurency: unknown field `concurency`"), "{err}");
}

#[test]
fn wrong_type_names_the_key() {
    let err =
        parse_text("description = \"d\"\n[client]\npolicy = \"reused\"\n[load]\nrequests = \"many\"\n").unwrap_err();
    assert!(err.starts_with("scenarios/t.toml:5: load.requests: "), "{err}");
    assert!(err.contains("invalid type: string \"many\", expected i64"), "{err}");
}

#[test]
fn zero_and_negative_values_are_refused_with_the_key() {
    let err = parse_text(&format!("{MINIMAL}[load]\nconcurrency = 0\n")).unwrap_err();
    assert_eq!(err, "scenarios/t.toml:5: load.concurrency: must be at least 1, got 0");
    let err = parse_text(&format!("{MINIMAL}[load]\nrequests = -5\n")).unwrap_err();
    assert_eq!(err, "scenarios/t.toml:5: load.requests: must be at least 1, got -5");
    let err = parse_text(&format!("{MINIMAL}[sampling]\ninterval = \"0s\"\n")).unwrap_err();
    assert_eq!(err, "scenarios/t.toml:5: sampling.interval: must be longer than 0");
}

#[test]
fn contradictions_are_refused() {
    let err = parse_text(&format!("{MINIMAL}pool_size = 3\n")).unwrap_err();
    assert!(err.contains("client.pool_size: only applies to policy \"pool\""), "{err}");
    let err = parse_text(&format!("{MINIMAL}[load]\nrequests = 100\nwarmup_requests = 100\n")).unwrap_err();
    assert!(err.contains("load.warmup_requests: (100) must be less than load.requests (100)"), "{err}");
    let err = parse_text(&format!("{MINIMAL}[server]\nkeepalive_timeout = \"1s\"\n")).unwrap_err();
    assert!(err.contains("server.keepalive_timeout: needs server.keepalive_time"), "{err}");
    let err = parse_text(&format!("{MINIMAL}[server]\nmax_connection_age_grace = \"1s\"\n")).unwrap_err();
    assert!(err.contains("server.max_connection_age_grace: needs server.max_connection_age"), "{err}");
    let err = parse_text(&format!("{MINIMAL}[server]\npermit_without_stream = true\n")).unwrap_err();
    assert!(err.contains("server.permit_without_stream: needs server.min_ping_interval"), "{err}");
    let err = parse_text(&format!("{MINIMAL}keepalive_timeout = \"1s\"\n")).unwrap_err();
    assert!(err.contains("client.keepalive_timeout: needs client.keepalive_interval"), "{err}");
    let err = parse_text(&format!("{MINIMAL}[fault]\nblackhole_for = \"1s\"\n")).unwrap_err();
    assert!(err.contains("fault.blackhole_for: needs fault.blackhole_at"), "{err}");
    let err = parse_text(&format!("{MINIMAL}[load]\nidle_between_rounds = \"2h\"\n")).unwrap_err();
    assert!(err.contains("load.idle_between_rounds: must be at most 1m"), "{err}");
}

#[test]
fn pool_needs_its_size() {
    let err = parse_text("description = \"d\"\n[client]\npolicy = \"pool\"\n").unwrap_err();
    assert!(err.contains("client.pool_size: missing"), "{err}");
    let plan = parse_text("description = \"d\"\n[client]\npolicy = \"pool\"\npool_size = 3\n").unwrap();
    assert_eq!(plan.policy, ChannelPolicy::Pool { size: NonZeroUsize::new(3).unwrap() });
}

#[test]
fn the_h2_transport_is_for_one_reused_connection_without_pings() {
    let plan = parse_text("description = \"d\"\n[client]\npolicy = \"reused\"\ntransport = \"h2\"\n").unwrap();
    assert_eq!(plan.client.transport, Transport::H2);
    assert_eq!(parse_text(MINIMAL).unwrap().client.transport, Transport::Channel);
    let err = parse_text("description = \"d\"\n[client]\npolicy = \"leak\"\ntransport = \"h2\"\n").unwrap_err();
    assert!(err.contains("client.transport: \"h2\" carries one connection") && err.contains("not \"leak\""), "{err}");
    let err = parse_text(
        "description = \"d\"\n[client]\npolicy = \"reused\"\ntransport = \"h2\"\nkeepalive_interval = \"1s\"\n",
    )
    .unwrap_err();
    assert!(err.contains("client.transport: \"h2\" sends no keepalive pings"), "{err}");
    let err = parse_text("description = \"d\"\n[client]\npolicy = \"reused\"\ntransport = \"quic\"\n").unwrap_err();
    assert!(err.contains("client.transport: unknown transport \"quic\"; expected one of channel, h2"), "{err}");
}

#[test]
fn bad_duration_and_unknown_policy_say_what_is_expected() {
    let err = parse_text(&format!("{MINIMAL}[load]\nduration = \"3 parsecs\"\n")).unwrap_err();
    assert!(err.contains("load.duration: \"3 parsecs\" is not a duration"), "{err}");
    let err = parse_text("description = \"d\"\n[client]\npolicy = \"leaky\"\n").unwrap_err();
    assert!(err.contains("client.policy: unknown policy \"leaky\""), "{err}");
}

#[test]
fn syntax_errors_carry_the_line() {
    let err = parse_text("description = \"d\"\n[client\n").unwrap_err();
    assert!(err.starts_with("scenarios/t.toml:2: invalid TOML"), "{err}");
}

#[test]
fn overrides_are_validated_like_the_file() {
    let overrides =
        Overrides::default().with(Opt::Requests, Value::Count(50)).with(Opt::WarmupRequests, Value::Count(60));
    let err = parse_with(Path::new("t.toml"), MINIMAL, &overrides).unwrap_err().to_string();
    assert_eq!(
        err,
        "t.toml: load.warmup_requests (set by --warmup-requests): (60) must be less than load.requests (50), \
         or no request would be measured"
    );
    let overrides = Overrides::default().with(Opt::Requests, Value::Count(50)).with(Opt::Rate, Value::Rate(10.0));
    let plan = parse_with(Path::new("t.toml"), MINIMAL, &overrides).unwrap();
    assert_eq!(plan.load.max_requests.get(), 50);
    assert_eq!(plan.load.rate_per_s, Some(10.0));
    let idle = Overrides::default().with(Opt::IdleBetweenRounds, Value::Duration(Duration::from_secs(3600)));
    let err = parse_with(Path::new("t.toml"), MINIMAL, &idle).unwrap_err().to_string();
    assert_eq!(err, "t.toml: load.idle_between_rounds (set by --idle-between-rounds): must be at most 1m");
    let idle = Overrides::default().with(Opt::IdleBetweenRounds, Value::Duration(Duration::from_millis(3500)));
    let plan = parse_with(Path::new("t.toml"), MINIMAL, &idle).unwrap();
    assert_eq!(plan.load.idle_between_rounds, Duration::from_millis(3500));
    let closed = Overrides::default().with(Opt::Rate, Value::Rate(0.0));
    let plan = parse_with(Path::new("t.toml"), &format!("{MINIMAL}[load]\nrate = 400\n"), &closed).unwrap();
    assert_eq!(plan.load.rate_per_s, None, "--rate 0 means closed loop");
}

#[test]
fn rounds_split_the_measured_requests() {
    let plan = parse_text(&format!("{MINIMAL}[load]\nrequests = 1000\nwarmup_requests = 100\nrounds = 7\n")).unwrap();
    let ends = plan.load.round_ends();
    assert_eq!(ends.len(), 7);
    assert_eq!(*ends.last().unwrap(), 1000);
    let sizes: Vec<u64> =
        std::iter::once(100).chain(ends.iter().copied()).collect::<Vec<_>>().windows(2).map(|w| w[1] - w[0]).collect();
    assert!(sizes.iter().all(|&size| size == 128 || size == 129), "{sizes:?}");

    let err = parse_text(&format!("{MINIMAL}[load]\nrounds = 5\n")).unwrap_err();
    assert!(err.contains("load.rounds: must be at least 6, got 5"), "{err}");
    let err = parse_text(&format!("{MINIMAL}[load]\nrequests = 10\nwarmup_requests = 5\nrounds = 6\n")).unwrap_err();
    assert!(err.contains("load.rounds: (6) must not exceed the requests after warm-up (5)"), "{err}");
    // Unset, rounds shrink to fit a tiny run instead of refusing it.
    let plan = parse_text(&format!("{MINIMAL}[load]\nrequests = 4\nwarmup_requests = 1\n")).unwrap();
    assert_eq!(plan.load.rounds.get(), 3);
}

#[test]
fn the_quick_profile_caps_requests_and_cooldown_and_stays_valid() {
    let text = format!(
        "{MINIMAL}[load]\nrequests = 10000\nwarmup_requests = 400\nrounds = 8\n[sampling]\ncooldown = \"5s\"\n"
    );
    let quick = parse_text(&text).unwrap().quick();
    assert_eq!(quick.load.max_requests.get(), 400 + QUICK_MEASURED_REQUESTS);
    assert_eq!(quick.load.rounds.get(), 8);
    assert_eq!(quick.sampling.cooldown, QUICK_COOLDOWN);
    // A scenario already smaller than the profile is left as it is.
    let small = parse_text(&format!("{MINIMAL}[load]\nrequests = 100\nwarmup_requests = 10\n")).unwrap();
    assert_eq!(small.clone().quick().load, small.load);
}

#[test]
fn caps_have_safe_defaults_take_sizes_and_can_be_lifted() {
    let plan = parse_text(MINIMAL).unwrap();
    assert_eq!(plan.caps.client_rss_bytes, Some(2 << 30));
    assert_eq!(plan.caps.fds, Some(10_000));
    let plan = parse_text(&format!("{MINIMAL}[caps]\nclient_rss = \"300MiB\"\nfds = 500\n")).unwrap();
    assert_eq!((plan.caps.client_rss_bytes, plan.caps.fds), (Some(300 << 20), Some(500)));
    let err = parse_text(&format!("{MINIMAL}[caps]\nserver_rss = \"3 lots\"\n")).unwrap_err();
    assert!(err.contains(":5: caps.server_rss: \"3 lots\": unknown unit \"lots\""), "{err}");
    let err = parse_text(&format!("{MINIMAL}[caps]\nclient_rss = \"1MiB\"\n")).unwrap_err();
    assert!(err.contains("caps.client_rss: must be at least 16MiB"), "{err}");
    let lifted = parse_with(Path::new("t.toml"), MINIMAL, &Overrides::default().with(Opt::NoCaps, Value::On)).unwrap();
    assert_eq!(lifted.caps.fds, None);
    assert!(lifted.caps.client_rss_bytes.unwrap() > 2 << 30, "half of this machine's 24 GiB");
}

#[test]
fn expectations_and_tolerance_are_checked() {
    let plan = parse_text(&format!("{MINIMAL}[expect]\nclient = \"leak\"\n[verdict]\ntolerance = 100\n")).unwrap();
    assert_eq!(plan.verdict.expect_client, Some(Expectation::Leak));
    assert_eq!(plan.verdict.expect_server, None);
    assert_eq!(plan.verdict.tolerance_bytes_per_request, 100.0);
    let err = parse_text(&format!("{MINIMAL}[expect]\nserver = \"leaks\"\n")).unwrap_err();
    assert!(err.contains(":5: expect.server: unknown expectation \"leaks\""), "{err}");
    let err = parse_text(&format!("{MINIMAL}[verdict]\ntolerance = -1\n")).unwrap_err();
    assert!(err.contains(":5: verdict.tolerance: must be a positive number"), "{err}");
    let err = parse_text(&format!("{MINIMAL}[expect]\nclients = \"leak\"\n")).unwrap_err();
    assert!(err.contains("expect.clients: unknown field"), "{err}");
}

/// Keys a fuzzed file draws from: every real one, and near misses.
const KEYS: &[&str] = &[
    "description",
    "[client]",
    "policy",
    "pool_size",
    "[load]",
    "concurrency",
    "requests",
    "duration",
    "rate",
    "warmup_requests",
    "rounds",
    "payload_bytes",
    "response_bytes",
    "delay_ms",
    "request_timeout",
    "[sampling]",
    "interval",
    "cooldown",
    "[server]",
    "max_message_size",
    "max_concurrent_streams",
    "keepalive_time",
    "keepalive_timeout",
    "max_connection_idle",
    "min_ping_interval",
    "permit_without_stream",
    "[fault]",
    "blackhole_at",
    "idle_between_rounds",
    "keepalive_interval",
    "transport",
    "[verdict]",
    "tolerance",
    "[expect]",
    "client",
    "server",
    "[load",
    "polcy",
    "",
];
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "6",
    "400",
    "9223372036854775807",
    "99999999999999999999",
    "1.5",
    "-0.0",
    "nan",
    "inf",
    "\"reused\"",
    "\"leak\"",
    "\"pool\"",
    "\"h2\"",
    "\"no-leak\"",
    "\"bounded\"",
    "\"100ms\"",
    "\"0s\"",
    "\"3 parsecs\"",
    "\"\"",
    "true",
    "[1, 2]",
    "{ a = 1 }",
    "\"\\u00e9\"",
    "'''",
    "=",
];

proptest::proptest! {
    /// Whatever the file holds, parsing ends in a plan or an error naming the file: never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        if let Err(error) = parse(Path::new("fuzz.toml"), &text, &Overrides::default()) {
            proptest::prop_assert!(error.to_string().starts_with("fuzz.toml"), "{}", error);
        }
    }

    /// Files made of real keys and awkward values, in any order: a plan, or an error naming the file.
    #[test]
    fn arbitrary_key_value_files_never_panic(
        lines in proptest::collection::vec((0..KEYS.len(), 0..VALUES.len(), proptest::bool::ANY), 0..24),
    ) {
        let text: String = lines
            .iter()
            .map(|&(key, value, header)| {
                let key = KEYS[key];
                if header || key.starts_with('[') { format!("{key}\n") } else { format!("{key} = {}\n", VALUES[value]) }
            })
            .collect();
        if let Err(error) = parse(Path::new("fuzz.toml"), &text, &Overrides::default()) {
            proptest::prop_assert!(error.to_string().starts_with("fuzz.toml"), "{}", error);
        }
    }
}

#[test]
fn missing_file_names_the_path() {
    let err = load(Path::new("no/such/scenario.toml"), &Overrides::default()).unwrap_err().to_string();
    assert!(err.starts_with("no/such/scenario.toml: cannot read"), "{err}");
}

#[test]
fn server_plan_becomes_server_flags() {
    let plan =
        parse_text(&format!("{MINIMAL}[server]\nmax_concurrent_streams = 10\nkeepalive_time = \"2s\"\nmax_connection_idle = \"500ms\"\nmin_ping_interval = \"5s\"\npermit_without_stream = true\n"))
            .unwrap();
    assert_eq!(
        plan.server.args(),
        [
            "--max-concurrent-streams",
            "10",
            "--max-connection-idle",
            "500ms",
            "--keepalive-time",
            "2s",
            "--min-ping-interval",
            "5s",
            "--permit-without-stream"
        ]
    );
}

#[test]
fn lines_come_from_the_parser_not_from_a_text_search() {
    // The same leaf key in two tables, and a key on an inline table: each error names the right line.
    let text = "description = \"d\"\n[client]\npolicy = \"reused\"\nkeepalive_interval = \"1s\"\n\
                keepalive_timeout = \"1s\"\n[server]\nkeepalive_timeout = \"1s\"\n";
    let err = parse_text(text).unwrap_err();
    assert!(err.starts_with("scenarios/t.toml:7: server.keepalive_timeout: needs server.keepalive_time"), "{err}");
    let inline =
        "description = \"d\"\nclient = { policy = \"reused\" }\nload = { requests = 10, warmup_requests = 20 }\n";
    let err = parse_text(inline).unwrap_err();
    assert!(err.starts_with("scenarios/t.toml:3: load.warmup_requests: (20) must be less than"), "{err}");
}

#[test]
fn sizes_take_a_number_of_bytes_too() {
    let plan = parse_text(&format!("{MINIMAL}[caps]\nclient_rss = 314572800\n")).unwrap();
    assert_eq!(plan.caps.client_rss_bytes, Some(300 << 20));
    let err = parse_text(&format!("{MINIMAL}[caps]\nclient_rss = -1\n")).unwrap_err();
    assert!(err.contains(":5: caps.client_rss: -1 is not a size"), "{err}");
}

#[test]
fn an_external_clients_channelz_is_an_address_or_leaklabs_free_port() {
    let external = "description = \"d\"\n[external]\ncommand = [\"peer\", \"{channelz_addr}\"]\n";
    let channelz = |value: &str| {
        let text = format!("{external}channelz = \"{value}\"\n");
        match parse(Path::new("x.toml"), &text, &Overrides::default()) {
            Ok(RunPlan::Foreign(plan)) => Ok(plan.channelz.unwrap()),
            Ok(RunPlan::Builtin(_)) => panic!("an external scenario"),
            Err(error) => Err(error.to_string()),
        }
    };
    assert_eq!(channelz("{channelz_addr}").unwrap(), "{channelz_addr}");
    assert_eq!(channelz("127.0.0.1:9901").unwrap(), "127.0.0.1:9901");
    assert_eq!(channelz("[::1]:9901").unwrap(), "[::1]:9901");
    for bad in ["9901", "127.0.0.1", "127.0.0.1:port", ":9901", "127.0.0.1:0", "http://127.0.0.1:9901/"] {
        let error = channelz(bad).unwrap_err();
        assert!(
            error.contains("x.toml:4: external.channelz: ") && error.contains("is not HOST:PORT"),
            "{bad}: {error}"
        );
    }
}

#[test]
fn an_external_scenario_refuses_what_only_the_built_in_client_has() {
    let external = "description = \"d\"\n[external]\ncommand = [\"peer\", \"{addr}\"]\n";
    let refused = |extra: &str| {
        parse(Path::new("x.toml"), &format!("{external}{extra}"), &Overrides::default()).unwrap_err().to_string()
    };
    assert!(
        refused("[load]\nrequests = 5\n").contains("x.toml:5: load.requests: an external client runs its own load")
    );
    assert!(refused("[fault]\nreset_at = \"1s\"\n").contains("fault.reset_at: faults are injected"));
    assert!(
        refused("[sampling]\ncooldown = \"1s\"\n").contains("sampling.cooldown: does not apply to an external client")
    );
    let RunPlan::Foreign(plan) = parse(Path::new("x.toml"), external, &Overrides::default()).unwrap() else {
        panic!("an external scenario")
    };
    assert_eq!(plan.client, ForeignClient::Command(vec!["peer".into(), "{addr}".into()]));
    assert_eq!(plan.warmup, defaults::FOREIGN_WARMUP);
    assert_eq!(plan.channelz, None);
    assert_eq!(plan.verdict.tolerance_bytes_per_second, defaults::TOLERANCE_BYTES_PER_SECOND);
}

#[test]
fn a_limit_is_a_value_or_off_and_only_changed_ones_become_flags() {
    let plan = parse_text(&format!(
        "{MINIMAL}[server]\nrequest_timeout = \"off\"\nmax_unread_response_bytes = \"1MiB\"\nmax_concurrent_streams = 100\n"
    ))
    .unwrap();
    assert_eq!(plan.server.args(), ["--request-timeout", "off", "--max-unread-response-bytes", "1048576"]);
    let err = parse_text(&format!("{MINIMAL}[server]\nmax_connections = 0\n")).unwrap_err();
    assert!(err.contains("server.max_connections") && err.contains("write \"off\" for no limit"), "{err}");
}

#[test]
fn segments_split_the_load_into_shares_that_add_up_and_keep_the_rounds() {
    let text = "description = \"d\"\n[client]\npolicy = \"leak\"\n\
                [load]\nconcurrency = 5\nrequests = 4000\nwarmup_requests = 1001\nrounds = 6\nrate = 300.0\n";
    let whole = parse_text(text).unwrap();
    let parts: Vec<Plan> = (1..=3).map(|index| whole.clone().segment(Segment { index, count: 3 }).unwrap()).collect();
    let sum = |pick: fn(&Plan) -> u64| parts.iter().map(pick).sum::<u64>();
    assert_eq!(sum(|p| p.load.max_requests.get()), 4000);
    assert_eq!(sum(|p| p.load.warmup_requests), 1001);
    assert_eq!(sum(|p| p.load.concurrency.get() as u64), 5);
    assert!(parts.iter().all(|p| p.load.rounds == whole.load.rounds && p.load.rate_per_s == Some(100.0)));
    assert_eq!(parts[1].origin.segment, Some(Segment { index: 2, count: 3 }));
    let too_many = whole.segment(Segment { index: 1, count: 6 }).unwrap_err();
    assert!(too_many.contains("load.concurrency (5) is less than the segments"), "{too_many}");
}

#[test]
fn a_segment_is_i_of_n_from_1() {
    assert_eq!(Segment::parse("2/3"), Ok(Segment { index: 2, count: 3 }));
    for bad in ["0/3", "4/3", "1/0", "3", "a/b"] {
        let error = Segment::parse(bad).unwrap_err();
        assert!(error.starts_with(&format!("{bad:?}:")), "{error}");
    }
    assert_eq!(Segment { index: 1, count: 2 }.to_string(), "1/2");
}
