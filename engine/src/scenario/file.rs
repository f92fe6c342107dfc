//! A scenario file as written: one struct per table, every key optional
//! (absent means the default its doc gives), unknown keys refused. serde reads
//! it, durations, sizes and names included; schemars turns the same types and
//! doc comments into `schema/scenario.schema.json` and `docs/scenarios.md`.
//! Integers are signed so that a negative value gets "must be at least 1"
//! rather than a type error; ranges and contradictions are checked when the
//! file becomes a [`Plan`](super::Plan).

use std::collections::BTreeMap;
use std::time::Duration;

use leaklab_wire::settings::{Kind, SERVER_OPTIONS};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde_json::json;

use super::attack::AttackKind;
use super::client::Transport;
use super::defaults;
use super::foreign::RuntimeChoice;
use super::values::{self, Argv, PolicyName, format_duration};
use leaklab_verdict::Expectation;

/// A leaklab scenario: a client, its load, the server it runs against, and what each process's memory should do.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "leaklab scenario")]
pub struct ScenarioFile {
    /// One line saying what the scenario shows; `loadgen list` prints it. Required.
    #[schemars(required)]
    pub description: Option<String>,
    /// The built-in client: how it gets a channel for each request and how its channels connect.
    #[serde(default)]
    pub client: ClientSection,
    /// The built-in client's load: how many requests, how fast, in how many rounds.
    #[serde(default)]
    pub load: LoadSection,
    /// The method the built-in client calls, when it is not the toy server's `Echo`: any unary or
    /// server-streaming method of any service, its request messages given as JSON.
    pub call: Option<CallSection>,
    /// How both processes are sampled.
    #[serde(default)]
    pub sampling: SamplingSection,
    /// Flags of the toy server the run starts (ignored with `--target`).
    #[serde(default)]
    pub server: ServerSection,
    /// Network faults: the client goes through a loopback proxy that misbehaves on schedule, timed from the start of the load.
    #[serde(default)]
    pub fault: FaultSection,
    /// An abusive client run against the toy server beside the load, which plays the well-behaved client.
    pub attack: Option<AttackSection>,
    /// Where the load stops, so a leak never endangers the machine (exit code 5).
    #[serde(default)]
    pub caps: CapsSection,
    /// How growth is judged.
    #[serde(default)]
    pub verdict: VerdictSection,
    /// What each process's memory should do; a verdict that contradicts it fails the run (exit code 1).
    #[serde(default)]
    pub expect: ExpectSection,
    /// A client command of its own (a grpc-go or Python client) instead of the built-in load generator,
    /// started against the toy server and watched from outside. `[client]`, `[load]` and `[fault]` do not apply.
    pub external: Option<ExternalSection>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// How the client gets a channel for each request: one reused channel, a new one per request that is
    /// kept (`leak`) or dropped after its call (`per-request-close`), or a fixed `pool`. Or, on one reused
    /// channel, a server stream per request that is read to its first message and then kept unfinished
    /// (`stream-leak`) or dropped, which cancels it (`stream-cancel`). Required.
    // An Option for serde, so that a missing policy gets the validator's error naming the key.
    #[schemars(required)]
    pub policy: Option<PolicyName>,
    /// Channels in the pool, used round-robin. Required with `policy = "pool"`, refused otherwise.
    #[schemars(range(min = 1, max = 10000))]
    pub pool_size: Option<i64>,
    /// The stream policies: the server sends a message on each stream every this long, until the client
    /// finishes or cancels it. Refused with other policies.
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema", extend("default" = "30s"))]
    pub stream_interval: Option<Duration>,
    /// Loopback source addresses the connections are spread over, 127.0.0.2 … 127.0.0.(N+1), each with its own
    /// ephemeral ports; 0: one address, chosen by the kernel.
    #[schemars(range(min = 0, max = 253), extend("default" = 0))]
    pub source_addresses: Option<i64>,
    /// Dialling a connection fails after this long. Default: tonic's (no limit).
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema")]
    pub connect_timeout: Option<Duration>,
    /// HTTP/2 keepalive: ping every this long. Default: no pings.
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema")]
    pub keepalive_interval: Option<Duration>,
    /// A ping unanswered this long closes the connection. Needs `keepalive_interval`. Default: tonic's (20 s).
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema")]
    pub keepalive_timeout: Option<Duration>,
    /// Ping even with no call in flight. Needs `keepalive_interval`.
    #[schemars(extend("default" = false))]
    pub keepalive_while_idle: Option<bool>,
    /// SO_KEEPALIVE on every connection, with this idle time. Default: off.
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema")]
    pub tcp_keepalive: Option<Duration>,
    /// What carries the calls: tonic's `Channel`, as Rust clients are written, or `h2`, the tonic client straight
    /// on one h2 connection for pushing a server hard (`reused` only, no keepalive pings, never redialled).
    #[schemars(extend("default" = "channel"))]
    pub transport: Option<Transport>,
    /// TLS on every connection. The table alone turns it on, verified against the Mozilla roots; a server
    /// with `[server.tls] generate = true` turns it on by itself, trusting the throwaway CA.
    pub tls: Option<ClientTlsSection>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsSection {
    /// `false` turns TLS off, for a file that has the table.
    #[schemars(extend("default" = true))]
    pub enabled: Option<bool>,
    /// PEM CA certificates the server's certificate must chain to. Default: the Mozilla roots (or the
    /// throwaway CA of `[server.tls] generate`).
    pub cacert: Option<String>,
    /// PEM certificate chain the client presents (mutual TLS). Needs `key`.
    pub cert: Option<String>,
    /// PEM private key of `cert`.
    pub key: Option<String>,
    /// The name the server's certificate must be valid for. Default: the target's host.
    pub cname: Option<String>,
    /// Skip verifying the server's certificate (still TLS, still encrypted). Only when asked.
    #[schemars(extend("default" = false))]
    pub insecure: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSection {
    /// Workers, each with at most one request in flight.
    #[schemars(range(min = 1, max = 10000), extend("default" = defaults::CONCURRENCY))]
    pub concurrency: Option<i64>,
    /// Requests in all, warm-up included; the load stops after this many…
    #[schemars(range(min = 1), extend("default" = defaults::REQUESTS))]
    pub requests: Option<i64>,
    /// …or after this long, whichever comes first (at most 1 h).
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema", extend("default" = format_duration(defaults::DURATION)))]
    pub duration: Option<Duration>,
    /// Open loop: requests per second, request `i` sent no sooner than `start + i / rate`. Default: closed loop,
    /// each worker sending as soon as its last call returned.
    #[schemars(range(min = 0.0))]
    pub rate: Option<f64>,
    /// Requests whose memory is not judged (connection set-up, allocator warm-up). Default: 200, or half the
    /// requests when there are fewer than 400. Must be less than `requests`.
    #[schemars(range(min = 0), extend("default" = defaults::WARMUP_REQUESTS))]
    pub warmup_requests: Option<i64>,
    /// The requests after warm-up run in this many rounds, with a checkpoint at rest after each (6 or more).
    /// Unset, a tiny run gets fewer, and its verdict says so.
    #[schemars(range(min = 6, max = 10000), extend("default" = defaults::ROUNDS))]
    pub rounds: Option<i64>,
    /// Bytes of payload in each request (at most 4 MiB).
    #[schemars(range(min = 0, max = 4194304), extend("default" = defaults::PAYLOAD_BYTES))]
    pub payload_bytes: Option<i64>,
    /// Bytes in each response; 0 echoes the payload (at most 4 MiB).
    #[schemars(range(min = 0, max = 4194304), extend("default" = 0))]
    pub response_bytes: Option<i64>,
    /// Milliseconds the server waits before answering (at most 60,000)…
    #[schemars(range(min = 0, max = 60000), extend("default" = 0))]
    pub delay_ms: Option<i64>,
    /// …on every N-th request only: a stall on a share of requests. Needs `delay_ms`.
    #[schemars(range(min = 1), extend("default" = 1))]
    pub delay_every: Option<i64>,
    /// Each call's deadline: a call not answered this long fails as `deadline_exceeded`.
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(
        schema_with = "values::duration_schema",
        extend("default" = format_duration(defaults::REQUEST_TIMEOUT))
    )]
    pub request_timeout: Option<Duration>,
    /// After warm-up and after each round the client sends nothing for this long before the checkpoint
    /// (its channels may ping; the server may reap). At most 1 min.
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema", extend("default" = "0s"))]
    pub idle_between_rounds: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallSection {
    /// The method: `package.Service/Method`, or `package.Service.Method` as ghz also accepts. Unary or
    /// server-streaming. Required.
    #[schemars(required)]
    pub method: Option<String>,
    /// `.proto` files that define the method's service, compiled when the run starts; relative paths are taken
    /// from the scenario file's directory. Default: none, and the server's reflection service is asked instead.
    pub proto: Option<Vec<String>>,
    /// Directories the files' imports are found in, searched before each file's own directory.
    pub import_paths: Option<Vec<String>>,
    /// The request message as JSON, in the canonical protobuf mapping (what ghz and grpcurl take). Default: `{}`.
    pub data: Option<String>,
    /// A file of request messages, one JSON object per line, sent in turn and cycled through. Not with `data`.
    pub data_file: Option<String>,
    /// Metadata (headers) sent with every call; a `-bin` header's value is base64.
    #[serde(default)]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// A server-streaming call reads this many messages, then cancels the stream. Default: every message.
    #[schemars(range(min = 1))]
    pub stream_messages: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamplingSection {
    /// Time between two samples of both processes (at least 10 ms).
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(
        schema_with = "values::duration_schema",
        extend("default" = format_duration(defaults::SAMPLE_INTERVAL))
    )]
    pub interval: Option<Duration>,
    /// Sampling goes on this long after the load, with no load: does memory come back?
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema", extend("default" = format_duration(defaults::COOLDOWN)))]
    pub cooldown: Option<Duration>,
    /// jemalloc heap profiles of both processes after warm-up and at the end, and where the memory that grew
    /// was allocated.
    #[schemars(extend("default" = false))]
    pub heap_profile: Option<bool>,
}

/// The toy server's settings, one key per row of `leaklab_wire::SERVER_OPTIONS` (which `leaklab-server`'s
/// flags come from too), and its TLS.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerSection {
    /// Every key but `tls`, as written: each is checked against its option when the plan is made, so that an
    /// error names its key and line.
    #[serde(flatten)]
    pub settings: BTreeMap<String, toml::Value>,
    /// TLS on the toy server: from files, or made at run time (`generate`).
    #[serde(default)]
    pub tls: Option<ServerTlsSection>,
}

/// The schema of `[server]`, from the options' table: each key's type by its kind, its doc, and `tls`.
impl JsonSchema for ServerSection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ServerSection".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut properties = serde_json::Map::new();
        for option in &SERVER_OPTIONS {
            let mut property = serde_json::Map::new();
            property.insert("description".to_owned(), option.doc.into());
            let kind = match option.kind {
                Kind::Count => json!({ "type": "integer", "format": "int64", "minimum": 1, "maximum": u32::MAX }),
                Kind::CountLimit => {
                    json!({ "oneOf": [{ "type": "integer", "minimum": 1, "maximum": u32::MAX }, { "const": "off" }] })
                }
                Kind::SizeLimit => json!({ "type": ["string", "integer"], "format": "size", "minimum": 1 }),
                Kind::DurationLimit | Kind::Duration => json!({ "type": "string", "format": "duration" }),
                Kind::Switch => json!({ "type": "boolean", "default": false }),
            };
            property.extend(kind.as_object().into_iter().flatten().map(|(key, value)| (key.clone(), value.clone())));
            properties.insert(option.name.to_owned(), property.into());
        }
        let tls = generator.subschema_for::<ServerTlsSection>();
        let mut tls_property = serde_json::Map::new();
        tls_property.insert(
            "description".to_owned(),
            "TLS on the toy server: from files, or made at run time (`generate`).".into(),
        );
        tls_property.extend(tls.as_object().into_iter().flatten().map(|(key, value)| (key.clone(), value.clone())));
        properties.insert("tls".to_owned(), tls_property.into());
        json_schema!({
            "description": "The server's connection policy follows grpc-go's `keepalive.ServerParameters` and `EnforcementPolicy`.",
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsSection {
    /// A throwaway CA and a certificate for `localhost` and 127.0.0.1 it signed, made when the run starts and
    /// written into the run directory; the client trusts that CA. Not with `cert`.
    #[schemars(extend("default" = false))]
    pub generate: Option<bool>,
    /// Mutual TLS: the server requires a client certificate; with `generate`, the throwaway CA signs one for the
    /// client too. Without `generate`, use `client_ca`.
    #[schemars(extend("default" = false))]
    pub client_auth: Option<bool>,
    /// PEM certificate chain of the server (relative paths from the scenario file). Needs `key`.
    pub cert: Option<String>,
    /// PEM private key of `cert`.
    pub key: Option<String>,
    /// PEM CA certificates client certificates must chain to: requires client certificates.
    pub client_ca: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSection {
    /// The connections open at this time after the load starts stop forwarding in both directions, silently…
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema")]
    pub blackhole_at: Option<Duration>,
    /// …for this long. Needs `blackhole_at`. Default: until the run ends.
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema")]
    pub blackhole_for: Option<Duration>,
    /// Every open connection is reset (RST to both ends) at this time after the load starts.
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema")]
    pub reset_at: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttackSection {
    /// What the abusive client does: `slow-streams` (headers, never a request), `unread-responses` (a zero
    /// flow-control window, calls asking for `response_bytes`), `declared-size` (a prefix declaring
    /// `declared_bytes`, then 16 bytes), `held-headers` (HEADERS without END_HEADERS) or `rapid-reset`
    /// (HEADERS then RST_STREAM). Required. It runs from the load's start until the load ends.
    pub kind: Option<AttackKind>,
    /// Connections it keeps open, each dialled again when the server ends it.
    #[schemars(range(min = 1, max = 1_000), extend("default" = 20))]
    pub connections: Option<i64>,
    /// Streams it holds open at once over all connections. Default: 20,000, or fewer so that they ask the
    /// server for at most 4 GiB of responses or declared messages, which is also the most allowed.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_streams: Option<i64>,
    /// New streams per second over all connections, so that memory a server keeps climbs visibly.
    /// Default: as fast as the server takes them.
    pub streams_per_second: Option<f64>,
    /// `unread-responses`: the response size each call asks for.
    #[serde(default, deserialize_with = "values::size")]
    #[schemars(schema_with = "values::size_schema", extend("default" = "1MiB"))]
    pub response_bytes: Option<u64>,
    /// `declared-size`: the message length each stream declares.
    #[serde(default, deserialize_with = "values::size")]
    #[schemars(schema_with = "values::size_schema", extend("default" = "4MiB"))]
    pub declared_bytes: Option<u64>,
    /// The attack stops after this long even if the load goes on (at most 60s).
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema", extend("default" = "60s"))]
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapsSection {
    /// The load stops when the client's resident set size reaches this (at least 16 MiB).
    #[serde(default, deserialize_with = "values::size")]
    #[schemars(schema_with = "values::size_schema", extend("default" = "2GiB"))]
    pub client_rss: Option<u64>,
    /// The load stops when the server's resident set size reaches this (at least 16 MiB).
    #[serde(default, deserialize_with = "values::size")]
    #[schemars(schema_with = "values::size_schema", extend("default" = "2GiB"))]
    pub server_rss: Option<u64>,
    /// The load stops when either process has this many open file descriptors (at least 64).
    #[schemars(range(min = 64), extend("default" = defaults::CAP_FDS))]
    pub fds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictSection {
    /// Growth at or below this many bytes per request is not a leak.
    #[schemars(range(min = 0.0), extend("default" = defaults::TOLERANCE_BYTES_PER_REQUEST))]
    pub tolerance: Option<f64>,
    /// Growth at or below this many bytes per second is not a leak: for an external client that reports no
    /// requests, which is judged against time.
    #[schemars(range(min = 0.0), extend("default" = defaults::TOLERANCE_BYTES_PER_SECOND))]
    pub tolerance_per_second: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectSection {
    /// What the client's memory should do.
    pub client: Option<Expectation>,
    /// What the server's memory should do.
    pub server: Option<Expectation>,
    /// At most this many of the load's requests may fail (under an `[attack]`: 0, the well-behaved client
    /// is not to notice it).
    #[schemars(range(min = 0))]
    pub failed_requests: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalSection {
    /// The client's argv; `{addr}` in any argument becomes the toy server's HOST:PORT. Required. A client that
    /// prints `leaklab-progress ok=N failed=M` lines is judged per request, else per second.
    #[schemars(with = "Argv")]
    pub command: Option<Vec<String>>,
    /// The command is stopped if it runs longer than this (at most 10 min).
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(schema_with = "values::duration_schema", extend("default" = format_duration(defaults::DURATION)))]
    pub duration: Option<Duration>,
    /// Samples from the first this-long are not judged: the process is still starting.
    #[serde(default, deserialize_with = "values::duration")]
    #[schemars(
        schema_with = "values::duration_schema",
        extend("default" = format_duration(defaults::FOREIGN_WARMUP))
    )]
    pub warmup: Option<Duration>,
    /// Nor are samples before the client reported this many requests on its progress lines (answered and
    /// failed), however long that takes within `duration`: a garbage-collected runtime (V8, the JVM, Go)
    /// sizes its heap over its first thousands of requests. 0: the warm-up is `warmup` alone.
    pub warmup_requests: Option<i64>,
    /// The client's `net/http/pprof` base URL, like `http://{pprof_addr}/debug/pprof`: its heap (`heap?gc=1`)
    /// and goroutine profiles are fetched when warm-up ends, at the load's checkpoints and when the watch
    /// ends, and diffed down to the client's own call sites (a Rust service's jemalloc heap profile is read
    /// the same way). `{pprof_addr}` here and in `command` becomes a free loopback HOST:PORT.
    pub pprof: Option<String>,
    /// Find the client's own call sites with its runtime's profiler, which leaklab arranges: V8's sampling
    /// heap profiler in Node and `tracemalloc` in Python (leaklab's agent, loaded through `NODE_OPTIONS`
    /// and `PYTHONPATH`), grpc-java's orphaned-channel reports and class histograms in a JVM. Profiles
    /// are taken as warm-up ends and at every checkpoint of the load, so a client that ends its own load
    /// and exits keeps them. A Go or Rust client is profiled through `pprof` instead.
    pub call_sites: Option<bool>,
    /// With `pprof` or `call_sites`: the client's own code, as function name prefixes (`["main."]`,
    /// `["com.shop."]`) or parts of file paths (`["app/"]`); by default everything outside the runtime,
    /// its standard library, gRPC and installed packages (`node_modules`, `site-packages`).
    pub own_code: Option<Vec<String>>,
    /// The client's gRPC channelz service, like `{channelz_addr}`: its channels, subchannels and sockets
    /// as its gRPC runtime counts them are read beside every sample and kept as the counters
    /// `channelz_channels`, `channelz_subchannels` and `channelz_sockets`. `{channelz_addr}` here and in
    /// `command` becomes a free loopback HOST:PORT.
    pub channelz: Option<String>,
    /// Whose garbage-collected heap is read and judged: `auto` (a `java` or `node` process, recognised
    /// from its executable), `jvm`, `v8`, or `none` (anonymous RSS, as for any process). A runtime's
    /// heap is read after a full collection leaklab asks for twice a second; the verdict judges what
    /// stays alive.
    #[schemars(extend("enum" = RuntimeChoice::NAMES, "default" = "auto"))]
    pub runtime: Option<String>,
}
