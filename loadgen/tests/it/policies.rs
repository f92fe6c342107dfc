//! Each channel policy against a server running in this process on port 0:
//! how many connections it opens and keeps, and whether the server answered
//! exactly the requests the load generator counted.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leaklab_engine::halt::{Halt, HaltReason, StopReason};
use leaklab_engine::load::{self, Boundary, BoxFuture, Channels, LoadCounters, LoadReport, Method, PhaseListener};
use leaklab_engine::scenario::{self, Overrides, Plan};
use leaklab_server::{Server, ServerConfig};

/// `plan`'s load of the toy server's Echo, with its request shape.
async fn echo_load(
    channels: Arc<Channels>,
    plan: &Plan,
    counters: Arc<LoadCounters>,
    phases: Arc<dyn PhaseListener>,
    halt: Arc<Halt>,
) -> LoadReport {
    load::drive(channels, Method::Echo(plan.load.request.clone()), &plan.load, counters, phases, halt).await
}

/// Records each boundary with the requests completed by then.
#[derive(Default)]
struct Boundaries {
    counters: Arc<LoadCounters>,
    seen: Mutex<Vec<(Boundary, u64)>>,
}

impl PhaseListener for Boundaries {
    fn checkpoint(&self, boundary: Boundary) -> BoxFuture {
        let done = self.counters.ok() + self.counters.failed();
        self.seen.lock().unwrap().push((boundary, done));
        Box::pin(async {})
    }
}

async fn start_server() -> Server {
    Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), ServerConfig::default()).await.unwrap()
}

/// Runs `requests` requests with `client` settings (a TOML fragment) through two workers.
async fn run(server: &Server, client: &str, requests: u64) -> (Arc<Channels>, LoadReport) {
    let text = format!(
        "description = \"test\"\n[client]\n{client}\n[load]\nconcurrency = 2\nrequests = {requests}\nwarmup_requests = 0\n"
    );
    let plan = parse(&text);
    let channels = Arc::new(
        Channels::connect_from(plan.policy, &server.addr.to_string(), Vec::new(), &plan.client).await.unwrap(),
    );
    let stop = Arc::new(Halt::default());
    let boundaries = Arc::new(Boundaries::default());
    let report =
        echo_load(Arc::clone(&channels), &plan, Arc::clone(&boundaries.counters), boundaries.clone(), stop).await;
    assert_eq!(report.failed, 0, "errors: {:?}", report.errors);
    assert_eq!(report.ok, requests);
    (channels, report)
}

#[tokio::test]
async fn rounds_pause_with_nothing_in_flight() {
    let server = start_server().await;
    let text = "description = \"t\"\n[client]\npolicy = \"reused\"\n[load]\nconcurrency = 3\nrequests = 130\n\
                warmup_requests = 10\nrounds = 6\n";
    let plan = parse(text);
    let channels = Arc::new(Channels::connect(plan.policy, &server.addr.to_string()).await.unwrap());
    let boundaries = Arc::new(Boundaries::default());
    let stop = Arc::new(Halt::default());
    let report = echo_load(channels, &plan, Arc::clone(&boundaries.counters), boundaries.clone(), stop).await;
    assert_eq!(report.ok, 130);
    let seen = boundaries.seen.lock().unwrap().clone();
    // At each boundary exactly the requests of the finished segments are done: none in flight.
    let expected: Vec<(Boundary, u64)> = std::iter::once((Boundary::WarmupDone, 10))
        .chain((1..6).map(|round| (Boundary::RoundDone(round), 10 + 20 * u64::from(round))))
        .chain(std::iter::once((Boundary::LoadDone, 130)))
        .collect();
    assert_eq!(seen, expected);
    server.shutdown(Duration::from_secs(1)).await;
}

/// The built-in plan of scenario `text`.
fn parse(text: &str) -> Plan {
    scenario::parse(Path::new("t.toml"), text, &Overrides::default()).unwrap().builtin().unwrap()
}

/// Polls `condition` until it holds: closing a connection is asynchronous (the bound only guards against a hang).
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reused_sends_everything_over_one_connection() {
    let server = start_server().await;
    let (channels, report) = run(&server, "policy = \"reused\"", 50).await;
    let client = channels.connections().counts();
    assert_eq!((client.opened, client.open), (1, 1), "client: {client:?}");
    let server_side = server.metrics.connections.counts();
    assert_eq!((server_side.opened, server_side.open), (1, 1), "server: {server_side:?}");
    assert_eq!(server.metrics.requests_served(), report.ok);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn reused_on_the_h2_transport_sends_everything_over_one_connection() {
    let server = start_server().await;
    let (channels, report) = run(&server, "policy = \"reused\"\ntransport = \"h2\"", 50).await;
    let client = channels.connections().counts();
    assert_eq!((client.opened, client.open), (1, 1), "client: {client:?}");
    assert_eq!(channels.created(), 1);
    let server_side = server.metrics.connections.counts();
    assert_eq!((server_side.opened, server_side.open), (1, 1), "server: {server_side:?}");
    assert_eq!(server.metrics.requests_served(), report.ok);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn pool_opens_exactly_its_size() {
    let server = start_server().await;
    let (channels, report) = run(&server, "policy = \"pool\"\npool_size = 3", 60).await;
    let client = channels.connections().counts();
    assert_eq!((client.opened, client.open), (3, 3), "client: {client:?}");
    assert_eq!(server.metrics.connections.counts().open, 3);
    assert_eq!(server.metrics.requests_served(), report.ok);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn leak_keeps_one_more_connection_per_request() {
    let server = start_server().await;
    let (channels, report) = run(&server, "policy = \"leak\"", 40).await;
    let client = channels.connections().counts();
    assert_eq!((client.opened, client.open), (40, 40), "client: {client:?}");
    // Every call was answered, so the server accepted all 40, and nothing closed them.
    let server_side = server.metrics.connections.counts();
    assert_eq!((server_side.opened, server_side.open), (40, 40), "server: {server_side:?}");
    assert_eq!(server.metrics.requests_served(), report.ok);

    // The leak lives exactly as long as the cache that holds the channels.
    drop(channels);
    eventually("the server saw the leaked connections close", || server.metrics.connections.counts().open == 0).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn per_request_close_returns_to_baseline() {
    let server = start_server().await;
    let (channels, report) = run(&server, "policy = \"per-request-close\"", 40).await;
    assert_eq!(channels.connections().counts().opened, 40);
    eventually("the client closed every connection", || channels.connections().counts().open == 0).await;
    eventually("the server saw every connection close", || server.metrics.connections.counts().open == 0).await;
    assert_eq!(server.metrics.connections.counts().opened, 40);
    assert_eq!(server.metrics.requests_served(), report.ok);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_stopped_load_sends_nothing_more() {
    let server = start_server().await;
    let plan =
        parse("description = \"t\"\n[client]\npolicy = \"reused\"\n[load]\nrequests = 1000000\nwarmup_requests = 0\n");
    let channels = Arc::new(Channels::connect(plan.policy, &server.addr.to_string()).await.unwrap());
    let stop = Arc::new(Halt::default());
    stop.trigger(HaltReason::Interrupted);
    let report =
        echo_load(channels, &plan, Arc::new(LoadCounters::default()), Arc::new(Boundaries::default()), stop).await;
    assert_eq!(report.ok + report.failed, 0);
    assert_eq!(report.stopped_by, StopReason::Interrupted);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn requests_to_a_closed_port_fail_as_connection_refused() {
    // Bind then drop a listener: its port is free, and nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let plan = parse(
        "description = \"t\"\n[client]\npolicy = \"per-request-close\"\n[load]\nconcurrency = 1\nrequests = 3\nwarmup_requests = 0\n",
    );
    let channels = Arc::new(Channels::connect(plan.policy, &format!("127.0.0.1:{port}")).await.unwrap());
    let stop = Arc::new(Halt::default());
    let report =
        echo_load(channels, &plan, Arc::new(LoadCounters::default()), Arc::new(Boundaries::default()), stop).await;
    assert_eq!(report.failed, 3);
    assert_eq!(report.errors.get("connection_refused"), Some(&3), "{:?}", report.errors);
    assert_eq!(report.first_error.as_ref().map(|(kind, _)| kind.as_str()), Some("connection_refused"));
}

#[tokio::test]
async fn open_loop_latency_counts_the_wait_a_stall_causes() {
    let server = start_server().await;
    // One worker at 300 requests/s; every 15th request makes the server wait 50 ms, so the
    // worker falls 15 requests behind each time and is behind most of each round.
    let text = "description = \"t\"\n[client]\npolicy = \"reused\"\n[load]\nconcurrency = 1\nrequests = 300\n\
                warmup_requests = 0\nrounds = 6\nrate = 300\ndelay_ms = 50\ndelay_every = 15\n";
    let plan = parse(text);
    let channels = Arc::new(Channels::connect(plan.policy, &server.addr.to_string()).await.unwrap());
    let report = echo_load(channels, &plan, Arc::default(), Arc::new(Boundaries::default()), Arc::default()).await;
    assert_eq!(report.ok, 300);
    let sent = &report.latency_us;
    let intended = report.latency_from_intended_us.as_ref().expect("an open loop measures from intended times");
    assert_eq!(intended.len(), sent.len());
    // Every request was due no later than it was sent, so every quantile is at least as large.
    for quantile in [0.5, 0.9, 0.99, 1.0] {
        assert!(intended.value_at_quantile(quantile) >= sent.value_at_quantile(quantile), "q{quantile}");
    }
    // Lower bounds that follow from the schedule, not from how fast this machine is: request k of each
    // 15 is due k × 3.3 ms after the stalled one, which the worker cannot send before its 50 ms answer
    // came, so 13 of 15 wait at least 6.7 ms; and the stalled ones waited 50 ms at the server.
    assert!(intended.value_at_quantile(0.5) > 5_000, "median from intended {} µs", intended.value_at_quantile(0.5));
    assert!(sent.max() >= 50_000, "the stalled requests took at least the server's 50 ms");

    let closed =
        parse("description = \"t\"\n[client]\npolicy = \"reused\"\n[load]\nrequests = 10\nwarmup_requests = 0\n");
    let channels = Arc::new(Channels::connect(closed.policy, &server.addr.to_string()).await.unwrap());
    let report = echo_load(channels, &closed, Arc::default(), Arc::new(Boundaries::default()), Arc::default()).await;
    assert!(report.latency_from_intended_us.is_none(), "a closed loop has no intended send times");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_held_stream_keeps_the_servers_stream_count_up_and_a_dropped_one_brings_it_down() {
    let server = start_server().await;
    let streams = || server.metrics.streams.open_now();

    // stream-leak: every stream is read to its first message and kept, unfinished, on one connection.
    let (channels, _) = run(&server, "policy = \"stream-leak\"\nstream_interval = \"50ms\"", 40).await;
    assert_eq!(channels.streams().open_now(), 40, "the client holds every stream it opened");
    assert_eq!(streams(), 40, "the server is still streaming on each");
    assert_eq!(channels.created(), 1);
    assert_eq!(server.metrics.connections.counts().open, 1, "one connection carries them all");
    drop(channels);
    eventually("the server saw the held streams go with their channel", || streams() == 0).await;

    // stream-cancel: the same streams, each dropped after its first message, which cancels it.
    let (channels, _) = run(&server, "policy = \"stream-cancel\"\nstream_interval = \"50ms\"", 40).await;
    assert_eq!(channels.streams().open_now(), 0, "the client holds none");
    eventually("the server saw every cancelled stream end", || streams() == 0).await;
    assert_eq!(server.metrics.connections.counts().open, 1, "and the channel is still there");
}
