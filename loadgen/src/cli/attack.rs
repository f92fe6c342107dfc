//! `loadgen attack`'s flags: the attack a scenario's `[attack]` describes, on a target, with a good
//! client of its own; checked by the same bounds a scenario's are.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use leaklab_engine::attack::{self, AttackKind, AttackPlan};
use leaklab_engine::scenario::{self, AttackSpec};

#[derive(Debug, Args)]
pub(crate) struct AttackArgs {
    /// slow-streams, unread-responses, declared-size, held-headers or rapid-reset.
    #[arg(long)]
    pub(crate) kind: AttackKind,
    /// The server, HOST:PORT on loopback (127.0.0.0/8 or ::1).
    #[arg(long)]
    pub(crate) target: SocketAddr,
    /// Connections the attack keeps open (at most 1000); each is dialled again when the server ends it.
    #[arg(long, default_value_t = 200)]
    pub(crate) connections: u32,
    /// The attack ends this long after it starts (at most 60s).
    #[arg(long, default_value = "10s", value_parser = super::duration)]
    pub(crate) duration: Duration,
    /// Streams held open at once over all connections, at most [default: 20000, or fewer so that
    /// they ask a server for at most 4 GiB of responses or declared messages].
    #[arg(long)]
    pub(crate) max_streams: Option<u64>,
    /// New streams per second over all connections [default: as fast as the server takes them].
    #[arg(long)]
    pub(crate) streams_per_second: Option<f64>,
    /// unread-responses: the response size each call asks for, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub(crate) response_bytes: u32,
    /// declared-size: the message length each stream declares, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub(crate) declared_bytes: u32,
    /// A well-behaved client calls this often during the attack, each call with a 1 s deadline, and
    /// once more on a new connection after it; `off` for none.
    #[arg(long, default_value = "20ms", value_parser = good_client_interval)]
    pub(crate) good_client: GoodClientInterval,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct GoodClientInterval(Option<Duration>);

fn good_client_interval(text: &str) -> Result<GoodClientInterval, String> {
    if text == "off" {
        return Ok(GoodClientInterval(None));
    }
    let every = scenario::parse_duration(text)?;
    if every < Duration::from_millis(1) {
        return Err(format!("{text}: at least 1ms between calls, or `off`"));
    }
    Ok(GoodClientInterval(Some(every)))
}

impl AttackArgs {
    /// The attack, checked by the bounds every attack keeps; an error names the flag.
    pub(crate) fn plan(&self) -> anyhow::Result<AttackPlan> {
        attack::check_target(self.target).map_err(|error| anyhow::anyhow!("--target: {error}"))?;
        let spec = AttackSpec {
            kind: self.kind,
            connections: self.connections,
            max_streams: self.max_streams.unwrap_or_else(|| {
                AttackSpec::default_max_streams(self.kind, self.response_bytes, self.declared_bytes)
            }),
            streams_per_second: self.streams_per_second,
            response_bytes: self.response_bytes,
            declared_bytes: self.declared_bytes,
            duration: self.duration,
        };
        spec.check().map_err(|error| {
            let reason = error.reason.replace('_', "-");
            anyhow::anyhow!("--{}: {reason}", error.field.replace('_', "-"))
        })?;
        Ok(AttackPlan { good_client: self.good_client.0, ..AttackPlan::of(&spec, self.target) })
    }
}
