//! Each kind of abuse against the toy server, at a small scale: with the
//! server's limits on, what it holds stays bounded, each attacking connection
//! is closed once a limit ends one of its streams, and a well-behaved client
//! calling every 20 ms with a 1 s deadline sees no failure; with the relevant
//! limit off, the same abuse makes the server hold more, call after call.
//!
//! The process's allocations are counted by a wrapper around the system
//! allocator, so the figures are the server's, the good client's and the
//! attacker's together; the attacker keeps little (a few bytes per stream).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use leaklab_engine::attack::{self, AttackKind, AttackPlan, AttackReport};
use leaklab_server::{Limits, Server, ServerConfig, ServerLifecycle};

struct Counting;

static ALLOCATED: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call goes to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> i64 {
    ALLOCATED.load(Ordering::Relaxed)
}

/// The limits the tests run under: the defaults, scaled down to a small attack.
fn small_limits() -> Limits {
    Limits {
        max_concurrent_streams: Some(100),
        request_timeout: Some(Duration::from_millis(500)),
        max_incomplete_requests: Some(100),
        unread_response_timeout: Some(Duration::from_secs(1)),
        max_unread_response_bytes: Some(2 << 20),
        max_unread_response_bytes_total: Some(4 << 20),
        ..Limits::default()
    }
}

struct UnderAttack {
    attack: AttackReport,
    good_failures: Vec<String>,
    /// The most the process allocated during the attack, above where it was before.
    peak_growth: i64,
    counts: ServerLifecycle,
}

/// Runs `kind` against a server under `limits` while a good client calls every 20 ms.
async fn under_attack(kind: AttackKind, limits: Limits, streams: u64) -> UnderAttack {
    let config = ServerConfig { limits, ..ServerConfig::default() };
    let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.unwrap();
    let plan = AttackPlan {
        kind,
        target: server.addr,
        connections: 4,
        duration: Duration::from_secs(3),
        streams_per_second: None,
        max_streams: streams,
        response_bytes: 1 << 20,
        declared_bytes: 4 << 20,
        good_client: Some(Duration::from_millis(20)),
    };
    let before = allocated();
    let mut attack = tokio::spawn(async move { attack::run(&plan).await });
    let mut peak_growth = 0;
    let mut sample = tokio::time::interval(Duration::from_millis(20));
    let report = loop {
        tokio::select! {
            report = &mut attack => break report.unwrap().unwrap(),
            _ = sample.tick() => peak_growth = peak_growth.max(allocated() - before),
        }
    };
    let good = report.good_client.clone().expect("the plan has a good client");
    assert!(good.served_after, "a new connection after the attack was not served");
    let good_failures: Vec<String> = good.failures.iter().map(|(code, n)| format!("{code} × {n}")).collect();
    let good_calls = good.calls;
    let counts = server.metrics.lifecycle.counts();
    eprintln!(
        "{}: peak +{:.1} MiB; good calls {good_calls}, failed {}; {report:?}; {counts:?}",
        kind.name(),
        mib(peak_growth),
        good_failures.len()
    );
    assert!(server.shutdown(Duration::from_secs(10)).await, "the server did not shut down after the attack");
    UnderAttack { attack: report, good_failures, peak_growth, counts }
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_streams_are_reset_and_without_the_limits_they_pile_up() {
    let limited = under_attack(AttackKind::SlowStreams, small_limits(), 1_000).await;
    assert!(limited.good_failures.is_empty(), "good client failed: {:?}", limited.good_failures);
    assert!(limited.counts.streams_reset_incomplete > 0, "{:?} {:?}", limited.counts, limited.attack);
    // Each connection whose stream a limit ended is closed, so the attack must dial again to refill what was freed.
    assert!(limited.counts.goaway_limit_exceeded >= 4, "{:?}", limited.counts);
    assert!(limited.attack.connections_ended >= 4, "{:?}", limited.attack);

    let unlimited = under_attack(AttackKind::SlowStreams, Limits::unlimited(), 1_000).await;
    assert_eq!(unlimited.counts.streams_reset_incomplete, 0);
    assert_eq!(unlimited.attack.peak_held, 1_000, "{:?}", unlimited.attack);
    assert!(
        unlimited.peak_growth > 3 * limited.peak_growth,
        "held {:.1} MiB without limits, {:.1} MiB with",
        mib(unlimited.peak_growth),
        mib(limited.peak_growth)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_responses_are_bounded_and_without_the_limits_they_pile_up() {
    let limited = under_attack(AttackKind::UnreadResponses, small_limits(), 40).await;
    assert!(limited.good_failures.is_empty(), "good client failed: {:?}", limited.good_failures);
    assert!(limited.counts.responses_reset_unread > 0, "{:?} {:?}", limited.counts, limited.attack);
    assert!(limited.counts.goaway_limit_exceeded >= 4, "{:?}", limited.counts);
    assert!(mib(limited.peak_growth) < 16.0, "held {:.1} MiB", mib(limited.peak_growth));

    let unlimited = under_attack(AttackKind::UnreadResponses, Limits::unlimited(), 40).await;
    assert_eq!(unlimited.counts.responses_reset_unread, 0);
    assert!(mib(unlimited.peak_growth) > 35.0, "40 responses of 1 MiB held {:.1} MiB", mib(unlimited.peak_growth));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_size_reserves_nothing_until_its_bytes_come() {
    let limited = under_attack(AttackKind::DeclaredSize, small_limits(), 40).await;
    assert!(limited.good_failures.is_empty(), "good client failed: {:?}", limited.good_failures);
    assert!(limited.counts.streams_reset_incomplete > 0, "{:?}", limited.counts);
    assert!(limited.counts.goaway_limit_exceeded >= 4, "{:?}", limited.counts);
    assert!(mib(limited.peak_growth) < 16.0, "held {:.1} MiB", mib(limited.peak_growth));

    let trusting = Limits { gather_messages: false, ..small_limits() };
    let trusted = under_attack(AttackKind::DeclaredSize, trusting, 40).await;
    assert!(
        mib(trusted.peak_growth) > 100.0,
        "40 declared messages of 4 MiB reserved only {:.1} MiB",
        mib(trusted.peak_growth)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_headers_and_rapid_resets_hold_nothing() {
    let held = under_attack(AttackKind::HeldHeaders, small_limits(), 4).await;
    assert!(held.good_failures.is_empty(), "good client failed: {:?}", held.good_failures);
    assert_eq!(held.attack.streams_opened, 4);
    assert!(mib(held.peak_growth) < 16.0, "held {:.1} MiB", mib(held.peak_growth));

    let reset = under_attack(AttackKind::RapidReset, small_limits(), 20_000).await;
    assert!(reset.good_failures.is_empty(), "good client failed: {:?}", reset.good_failures);
    assert!(reset.attack.connections_ended >= 1, "h2 did not end a rapid-reset connection: {:?}", reset.attack);
    assert!(mib(reset.peak_growth) < 16.0, "held {:.1} MiB", mib(reset.peak_growth));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_server_wide_bound_are_refused_and_the_good_client_still_served() {
    let limits = Limits { max_concurrent_streams_total: Some(50), ..small_limits() };
    let bounded = under_attack(AttackKind::SlowStreams, limits, 1_000).await;
    assert!(bounded.good_failures.is_empty(), "good client failed: {:?}", bounded.good_failures);
    assert!(bounded.counts.streams_refused > 0, "{:?}", bounded.counts);
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
