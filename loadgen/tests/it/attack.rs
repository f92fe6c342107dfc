//! Each kind of abuse against the toy server, at a small scale: with the server's limits on, what it
//! holds stays within what its limits allow, each attacking connection is closed once a limit ends one
//! of its streams, and a well-behaved client calling every 20 ms with a 1 s deadline is never refused
//! nor reset; with the relevant limit off, the same abuse makes the server hold far more.
//!
//! The server under attack is the real `leaklab-server`, a process of its own, read through its side
//! channel: jemalloc's allocated bytes are that process's alone, whatever else the machine runs (the
//! other tests of this binary run as threads of this process, the attacker among them). Each attack
//! ends on an event the server reports (its limits ended so many connections, it holds every stream the
//! attack opened, …); its duration only guards against a hang. Each memory assertion compares the
//! limited server with the same attack on a server without the limit, or with a bound that follows
//! from counts (the limits', the attack's), never with how fast either server got somewhere.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use leaklab_engine::attack::{self, AttackKind, AttackPlan, AttackReport, GOOD_DEADLINE, GoodClient};
use leaklab_engine::scenario::ServerPlan;
use leaklab_engine::target::{self, ServerControl, ServerProcess};
use leaklab_probe::control::{ServerLifecycle, ServerStats};
use leaklab_server::Limits;

/// How often the server's figures are read during an attack.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// An attack ends on its event; this only guards against a hang (or a limit that never acts).
const GUARD: Duration = Duration::from_secs(20);
/// How long the server may take to exit once told to: a guard against a hang too.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// The attack's connections, each dialled again when the server ends it.
const CONNECTIONS: u64 = 4;
/// Calls the server answers after a limit first acts, before the attack ends: the good client was
/// served while the limit was at work.
const SERVED_AFTER_HIT: u64 = 10;
const MIB: u64 = 1 << 20;
/// `unread-responses`: the response each attacking call asks for.
const RESPONSE_BYTES: u32 = 1 << 20;
/// `declared-size`: the message length each attacking stream declares.
const DECLARED_BYTES: u32 = 4 << 20;

/// The limits the tests run under: the defaults, scaled down to a small attack.
fn small_limits() -> Limits {
    Limits {
        max_concurrent_streams: Some(100),
        request_timeout: Some(Duration::from_millis(500)),
        max_incomplete_requests: Some(100),
        unread_response_timeout: Some(Duration::from_secs(1)),
        max_unread_response_bytes: Some(2 * MIB),
        max_unread_response_bytes_total: Some(4 * MIB),
        ..Limits::default()
    }
}

/// The `leaklab-server` arguments that set `limits`, as a run hands them to the server it starts.
fn server_args(limits: Limits) -> Vec<String> {
    let mut plan = ServerPlan::default();
    plan.settings.limits = limits;
    plan.args()
}

/// What the limited server may hold under an attack of 40 streams on 4 connections whose limits keep
/// the bytes it is made to hold small (`unread-responses`, `declared-size`), and under the floods h2
/// sheds (`held-headers`, `rapid-reset`). The bound follows from counts, not from speed: at most 4 MiB
/// of waiting responses (`max_unread_response_bytes_total`, each counting 16 KiB more for its stream)
/// or nothing reserved for a declared length; at most 40 streams (a few KiB of h2 and task state
/// each); at most 4 attacking connections at once (the attack dials again only once the server has
/// ended one; four held ones cost the server a fraction of a MiB); the good client's calls. That is
/// under 8 MiB (the most seen is 5.6 MiB); 16 MiB leaves as much again to spare. Without the limit,
/// one connection's 10 declared messages alone reserve 40 MiB, and the attack's 40 responses of 1 MiB
/// wait whole: a limit that stops working passes the bound at once.
const BOUND: i64 = 16 << 20;

/// The server's figures at one sample, against where they were before the attack.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// jemalloc's allocated bytes above their level before the attack.
    growth: i64,
    /// What the server's limits and policies did since it started.
    counts: ServerLifecycle,
    /// RPCs in flight now.
    streams: u64,
    /// Connections open now.
    open: u64,
    /// Connections closed since the attack started.
    closed: u64,
    /// RPCs answered OK since the attack started: the good client's, and under `unread-responses` the
    /// attack's too (a response counts when its handler returns, before it is sent).
    served: u64,
}

impl Progress {
    fn between(before: &ServerStats, now: &ServerStats) -> Progress {
        let allocated =
            |stats: &ServerStats| stats.process.jemalloc.expect("the toy server reads jemalloc").allocated_bytes;
        let connections = |stats: &ServerStats| stats.process.connections.expect("the toy server counts connections");
        let closed = |stats: &ServerStats| connections(stats).closed.expect("the toy server counts closed connections");
        let served = |stats: &ServerStats| stats.requests_served.expect("the toy server counts requests");
        Progress {
            growth: allocated(now) as i64 - allocated(before) as i64,
            counts: now.lifecycle,
            streams: now.process.streams.expect("the toy server counts its RPCs in flight"),
            open: connections(now).open,
            closed: closed(now) - closed(before),
            served: served(now) - served(before),
        }
    }
}

/// When an attack has shown what it is run for: a condition on the server's figures, looked at once
/// per sample until it holds.
type Event = Box<dyn FnMut(&Progress) -> bool + Send>;

/// `hit`, then [`SERVED_AFTER_HIT`] calls answered: the attack lasts until its limit has acted and the
/// good client has been calling while it did.
fn then_served(mut hit: impl FnMut(&Progress) -> bool + Send + 'static) -> Event {
    let mut served_at_hit = None;
    Box::new(move |progress| {
        if served_at_hit.is_none() && hit(progress) {
            served_at_hit = Some(progress.served);
        }
        served_at_hit.is_some_and(|at| progress.served >= at + SERVED_AFTER_HIT)
    })
}

#[derive(Debug)]
struct UnderAttack {
    attack: AttackReport,
    good: GoodClient,
    /// The most the server allocated during the attack, above its level before.
    peak_growth: i64,
    /// The most RPCs the server had in flight at once during the attack.
    peak_streams: u64,
    /// Whether the attack's event came before [`GUARD`] ended it.
    reached: bool,
    /// The server's counts once the attack was over.
    counts: ServerLifecycle,
}

/// Runs `kind` (at most `max_streams` held at once, on 4 connections) against a `leaklab-server` under
/// `limits` while a good client calls every 20 ms, until `event` holds or [`GUARD`] passes.
async fn under_attack(kind: AttackKind, limits: Limits, max_streams: u64, event: Event) -> UnderAttack {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (server, control) = ServerProcess::spawn(&crate::common::server_bin(), &server_args(limits), &log)
        .unwrap_or_else(|error| panic!("{error}: {}", std::fs::read_to_string(&log).unwrap_or_default()));
    target::wait_until_serving(&server.addr.to_string(), target::READY_TIMEOUT, None).await.unwrap();
    // The side channel blocks (up to a second an answer): it is read off the runtime, whose threads
    // close the readiness probe's connection and run the attack meanwhile.
    let (control, before) = tokio::task::spawn_blocking(move || settled(control)).await.unwrap();
    let plan = AttackPlan {
        kind,
        target: server.addr,
        connections: CONNECTIONS as u32,
        duration: GUARD,
        streams_per_second: None,
        max_streams,
        response_bytes: RESPONSE_BYTES,
        declared_bytes: DECLARED_BYTES,
        good_client: Some(Duration::from_millis(20)),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (attack_over, over) = mpsc::channel();
    let started = Instant::now();
    let sampler = std::thread::spawn(move || sample(control, &before, event, &stop, &over));
    let report = attack::run_until(&plan, stopped).await.unwrap();
    let lasted = started.elapsed();
    let _ = attack_over.send(());
    let (sampled, after, exit) = tokio::task::spawn_blocking(move || {
        let (mut control, sampled) = sampler.join().expect("the sampler panicked");
        let after = control.stats();
        // Closing the side channel asks the server to stop.
        drop(control);
        (sampled, after, server.stop(EXIT_GRACE))
    })
    .await
    .unwrap();
    let counts = after.expect("the server answered no stats after the attack").lifecycle;
    let good = report.good_client.clone().expect("the plan has a good client");
    eprintln!(
        "{} {}: {} after {lasted:.1?}; peak +{:.1} MiB, {} RPCs in flight; good calls {}, failed {:?}, slowest {} ms, \
         served after: {}; {report:?}; {counts:?}",
        kind.name(),
        if limits == Limits::unlimited() { "unlimited".to_owned() } else { format!("{:?}", server_args(limits)) },
        if sampled.reached { "event reached" } else { "guard reached" },
        mib(sampled.peak_growth),
        sampled.peak_streams,
        good.calls,
        good.failures,
        good.slowest_ms,
        good.served_after,
    );
    let exit = exit.unwrap();
    assert!(
        exit.success(),
        "the server did not stop after the attack ({exit}): {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    UnderAttack {
        attack: report,
        good,
        peak_growth: sampled.peak_growth,
        peak_streams: sampled.peak_streams,
        reached: sampled.reached,
        counts,
    }
}

/// Waits until the server counts no open connection (the readiness probe's has closed), and returns
/// its figures then: the level the attack is measured from. The deadline only guards against a hang.
fn settled(mut control: ServerControl) -> (ServerControl, ServerStats) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = control.stats();
        if let Some(stats) = stats.filter(|stats| stats.process.open_connections() == Some(0)) {
            return (control, stats);
        }
        assert!(Instant::now() < deadline, "the server still counts the readiness probe's connection: {stats:?}");
        std::thread::sleep(SAMPLE_EVERY);
    }
}

struct Sampled {
    peak_growth: i64,
    peak_streams: u64,
    reached: bool,
}

/// Reads the server's figures every [`SAMPLE_EVERY`] until the attack is `over`; tells the attack to
/// `stop` once `event` holds. Hands the side channel back.
fn sample(
    mut control: ServerControl,
    before: &ServerStats,
    mut event: Event,
    stop: &tokio::sync::watch::Sender<bool>,
    over: &Receiver<()>,
) -> (ServerControl, Sampled) {
    let (mut peak_growth, mut peak_streams, mut reached) = (0, 0, false);
    loop {
        if let Some(now) = control.stats() {
            let progress = Progress::between(before, &now);
            peak_growth = peak_growth.max(progress.growth);
            peak_streams = peak_streams.max(progress.streams);
            if !reached && event(&progress) {
                reached = true;
                let _ = stop.send(true);
            }
        }
        match over.recv_timeout(SAMPLE_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    (control, Sampled { peak_growth, peak_streams, reached })
}

/// The good client's failures that are the server's doing. The limits promise that a client with one
/// call in flight is never refused nor reset; they cannot promise that a loaded machine answers within
/// the 1 s deadline. tonic reports an expired deadline as `Cancelled` ("Timeout expired"), the code a
/// limit's RST_STREAM CANCEL gets too, and the attack's report keeps only the code: so `Cancelled` (or
/// `DeadlineExceeded`) is excused only when some call did take its whole deadline. Any other code
/// (`Unavailable` for a refused stream, `ResourceExhausted` for a refused response, `Internal` or
/// `Unknown` for a reset connection) is always the server's.
fn refused_or_reset(good: &GoodClient) -> Vec<String> {
    let a_deadline_expired = u128::from(good.slowest_ms) >= GOOD_DEADLINE.as_millis();
    (good.failures.iter())
        .filter(|(code, _)| !(a_deadline_expired && matches!(code.as_str(), "Cancelled" | "DeadlineExceeded")))
        .map(|(code, n)| format!("{code} × {n}"))
        .collect()
}

/// The good client called during the attack, no limit refused or reset its calls, and a call on a new
/// connection after the attack was answered.
fn assert_good_client_served(run: &UnderAttack) {
    let good = &run.good;
    assert!(good.calls > 0, "the good client made no call: {good:?}");
    let failures = refused_or_reset(good);
    assert!(failures.is_empty(), "the good client's calls were refused or reset: {failures:?}; {good:?}");
    assert!(good.served_after, "a new connection after the attack was not served: {good:?}");
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / MIB as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_streams_are_reset_and_without_the_limits_they_pile_up() {
    const STREAMS: u64 = 2_000;
    // Until the limits have ended two rounds of connections: the attack dialled again what they freed.
    let limited = under_attack(
        AttackKind::SlowStreams,
        small_limits(),
        STREAMS,
        then_served(|progress| progress.counts.goaway_limit_exceeded >= 2 * CONNECTIONS),
    )
    .await;
    assert!(limited.reached, "the limits did not end {} connections: {limited:?}", 2 * CONNECTIONS);
    assert!(limited.counts.streams_reset_incomplete > 0, "{limited:?}");
    // The attack dials a connection again only once it saw the server end it: of the 8 or more it
    // dialled, it saw at least 4 end.
    assert!(limited.attack.connections_ended >= CONNECTIONS, "{:?}", limited.attack);
    assert_good_client_served(&limited);

    let unlimited = under_attack(
        AttackKind::SlowStreams,
        Limits::unlimited(),
        STREAMS,
        Box::new(|progress| progress.streams >= STREAMS),
    )
    .await;
    assert!(
        unlimited.reached,
        "the unlimited server held at most {} of the attack's {STREAMS} streams at once: {unlimited:?}",
        unlimited.peak_streams
    );
    assert_eq!(unlimited.counts.streams_reset_incomplete, 0, "{unlimited:?}");
    assert_eq!(unlimited.counts.goaway_limit_exceeded, 0, "{unlimited:?}");
    // The limited server holds at most max_incomplete_requests (100) of the streams, the unlimited one
    // all 2000: a twentieth of their state. A quarter leaves five times that for the connections'
    // buffers and for reset streams whose tasks have not run yet, however slowly the server gets to them.
    // With its limits off, the limited server would hold all 2000 too.
    assert!(
        4 * limited.peak_growth < unlimited.peak_growth,
        "held {:.1} MiB with the limits, {:.1} MiB without",
        mib(limited.peak_growth),
        mib(unlimited.peak_growth)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_responses_are_bounded_and_without_the_limits_they_pile_up() {
    let limited = under_attack(
        AttackKind::UnreadResponses,
        small_limits(),
        40,
        then_served(|progress| {
            progress.counts.responses_reset_unread > 0 && progress.counts.goaway_limit_exceeded >= 2 * CONNECTIONS
        }),
    )
    .await;
    assert!(limited.reached, "the limits did not reset responses on {} connections: {limited:?}", 2 * CONNECTIONS);
    assert_good_client_served(&limited);
    assert!(limited.peak_growth < BOUND, "held {:.1} MiB", mib(limited.peak_growth));

    // Until every response asked for waits, whole, in the server.
    let all_waiting = 40 * i64::from(RESPONSE_BYTES);
    let unlimited = under_attack(
        AttackKind::UnreadResponses,
        Limits::unlimited(),
        40,
        Box::new(move |progress| progress.growth >= all_waiting),
    )
    .await;
    assert!(unlimited.reached, "40 responses of 1 MiB never waited at once: {unlimited:?}");
    assert_eq!(unlimited.counts.responses_reset_unread, 0, "{unlimited:?}");
    assert!(unlimited.peak_growth > BOUND, "without the limits, held only {:.1} MiB", mib(unlimited.peak_growth));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_size_reserves_nothing_until_its_bytes_come() {
    // Each stream is held until request_timeout ends it, 500 ms: long enough to see what it reserves.
    let limited = under_attack(
        AttackKind::DeclaredSize,
        small_limits(),
        40,
        then_served(|progress| {
            progress.counts.streams_reset_incomplete > 0 && progress.counts.goaway_limit_exceeded >= 2 * CONNECTIONS
        }),
    )
    .await;
    assert!(limited.reached, "the limits did not end {} connections: {limited:?}", 2 * CONNECTIONS);
    assert_good_client_served(&limited);
    assert!(limited.peak_growth < BOUND, "held {:.1} MiB", mib(limited.peak_growth));

    // The same server trusting the prefix, and with no request timeout, so that what it reserves stays
    // whatever its speed: until every declared length is reserved at once.
    let trusting = Limits { gather_messages: false, request_timeout: None, ..small_limits() };
    let all_declared = 40 * i64::from(DECLARED_BYTES);
    let trusted =
        under_attack(AttackKind::DeclaredSize, trusting, 40, Box::new(move |progress| progress.growth >= all_declared))
            .await;
    assert!(trusted.reached, "40 declared messages of 4 MiB were never reserved at once: {trusted:?}");
    assert!(trusted.peak_growth > BOUND, "trusting the prefix, held only {:.1} MiB", mib(trusted.peak_growth));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_headers_and_rapid_resets_hold_nothing() {
    // Nothing of the toy server's limits is at work here: h2 buffers at most its header list size of a
    // header block, and ends a connection that resets streams faster than it accepts them. Until the 4
    // half header blocks (and the good client's connection) are held and the good client has been served.
    let held =
        under_attack(AttackKind::HeldHeaders, small_limits(), 4, then_served(|progress| progress.open > CONNECTIONS))
            .await;
    assert!(held.reached, "the server never held the 4 connections: {held:?}");
    assert_eq!(held.attack.streams_opened, 4, "each connection holds its half header block: {:?}", held.attack);
    assert_good_client_served(&held);
    assert!(held.peak_growth < BOUND, "held {:.1} MiB", mib(held.peak_growth));

    // Until the server has closed two rounds of connections.
    let reset = under_attack(
        AttackKind::RapidReset,
        small_limits(),
        20_000,
        then_served(|progress| progress.closed >= 2 * CONNECTIONS),
    )
    .await;
    assert!(reset.reached, "h2 did not end {} rapid-reset connections: {reset:?}", 2 * CONNECTIONS);
    // Of the 8 or more closed, at most 4 were the first ones: the attack dialled again, so saw one end.
    assert!(reset.attack.connections_ended >= 1, "h2 did not end a rapid-reset connection: {:?}", reset.attack);
    assert_good_client_served(&reset);
    assert!(reset.peak_growth < BOUND, "held {:.1} MiB", mib(reset.peak_growth));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_server_wide_bound_are_refused_and_the_good_client_still_served() {
    let limits = Limits { max_concurrent_streams_total: Some(50), ..small_limits() };
    let bounded = under_attack(
        AttackKind::SlowStreams,
        limits,
        1_000,
        then_served(|progress| progress.counts.streams_refused > 0),
    )
    .await;
    assert!(bounded.reached, "no stream was refused over max_concurrent_streams_total: {bounded:?}");
    assert_good_client_served(&bounded);
}

#[test]
fn an_attack_never_asks_a_server_for_more_than_its_exposure_bound() {
    let plan = AttackPlan {
        kind: AttackKind::UnreadResponses,
        target: "127.0.0.1:1".parse().unwrap(),
        connections: 200,
        duration: Duration::from_secs(10),
        streams_per_second: None,
        max_streams: AttackPlan::default_max_streams(AttackKind::UnreadResponses, 1 << 20, 4 << 20),
        response_bytes: 1 << 20,
        declared_bytes: 4 << 20,
        good_client: None,
    };
    assert_eq!(plan.max_streams, 4_096, "4 GiB of 1 MiB responses");
    assert!(plan.check_exposure().is_ok());
    let err = AttackPlan { max_streams: 4_097, ..plan.clone() }.check_exposure().unwrap_err();
    assert!(err.contains("max_streams 4097 × response_bytes 1048576"), "{err}");
    assert_eq!(AttackPlan::default_max_streams(AttackKind::SlowStreams, 1 << 20, 4 << 20), 20_000);
}

#[test]
fn an_attack_on_another_machine_is_refused() {
    let err = attack::check_target("10.1.2.3:50051".parse().unwrap()).unwrap_err();
    assert!(err.contains("10.1.2.3:50051: not a loopback address"), "{err}");
    assert!(attack::check_target("[::1]:1".parse().unwrap()).is_ok());
}
