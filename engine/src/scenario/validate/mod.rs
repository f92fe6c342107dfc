//! A scenario file's values checked and turned into a plan. Each check names
//! its key, the line that sets it, or the flag that set it instead.

mod call;
mod peers;

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use leaklab_verdict::VerdictPlan;

use super::file::{
    CapsSection, ClientSection, ExpectSection, FaultSection, LoadSection, SamplingSection, ScenarioFile, VerdictSection,
};
use super::plan::{
    Blackhole, CapsPlan, ChannelPolicy, FaultPlan, LoadPlan, Origin, Plan, RequestShape, SamplingPlan, ServerTlsPlan,
};
use super::values::{PolicyName, format_duration};
use super::{Document, ForeignClient, ForeignPlan, MIN_ROUNDS, Opt, Overrides, RuntimeChoice, ScenarioError, defaults};

const MAX_MESSAGE_BYTES: i64 = 4 << 20;
/// The longest single load phase a scenario may ask for.
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
/// Longest idle spell between rounds: a run must stop by itself in reasonable time.
const MAX_IDLE_BETWEEN_ROUNDS: Duration = Duration::from_secs(60);
/// The longest an external client may run: it must stop by itself in reasonable time.
const MAX_EXTERNAL_DURATION: Duration = Duration::from_secs(600);
/// The longest an attack may run: the machine is shared.
/// The smallest RSS cap: below it a process could not even start its load.
const MIN_RSS_CAP: u64 = 16 << 20;

/// Turns a file's values into a plan, naming the key of the first bad one.
pub(crate) struct Validator<'a> {
    path: &'a Path,
    document: &'a Document,
    /// Keys whose value came from a command-line flag, and that flag.
    overridden: Vec<(&'static str, String)>,
    no_caps: bool,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(path: &'a Path, document: &'a Document, overrides: &Overrides) -> Self {
        Self { path, document, overridden: overrides.keys(), no_caps: overrides.is_set(Opt::NoCaps) }
    }

    /// An error on `key`, pointing at the line that sets it, or at the flag when one did.
    pub(crate) fn invalid(&self, key: &str, reason: impl fmt::Display) -> ScenarioError {
        let flag = self.overridden.iter().find(|(overridden, _)| *overridden == key).map(|(_, flag)| flag);
        ScenarioError::Invalid {
            path: self.path.to_owned(),
            line: if flag.is_some() { None } else { self.document.line(key) },
            key: flag.map_or_else(|| key.to_owned(), |flag| format!("{key} (set by {flag})")),
            reason: reason.to_string(),
        }
    }

    /// Where `key`'s value came from, for an error found later: the flag that set it, or the file, line and key.
    fn origin(&self, key: &str) -> String {
        match self.overridden.iter().find(|(overridden, _)| *overridden == key) {
            Some((_, flag)) => flag.clone(),
            None => {
                let line = self.document.line(key).map(|line| format!(":{line}")).unwrap_or_default();
                format!("{}{line}: {key}", self.path.display())
            }
        }
    }

    /// `key` is set, in the file or by a flag.
    fn is_set(&self, key: &str) -> bool {
        self.document.line(key).is_some() || self.overridden.iter().any(|(overridden, _)| *overridden == key)
    }

    fn range(&self, key: &str, value: Option<i64>, default: i64, min: i64, max: i64) -> Result<i64, ScenarioError> {
        let value = value.unwrap_or(default);
        if value < min {
            return Err(self.invalid(key, format!("must be at least {min}, got {value}")));
        }
        if value > max {
            return Err(self.invalid(key, format!("must be at most {max}, got {value}")));
        }
        Ok(value)
    }

    /// `value` (or `default`), refused if it is zero or above `max`.
    fn positive(
        &self,
        key: &str,
        value: Option<Duration>,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, ScenarioError> {
        let duration = value.unwrap_or(default);
        if duration.is_zero() {
            return Err(self.invalid(key, "must be longer than 0"));
        }
        self.at_most(key, duration, max)
    }

    fn at_most(&self, key: &str, duration: Duration, max: Duration) -> Result<Duration, ScenarioError> {
        if duration > max {
            return Err(self.invalid(key, format!("must be at most {}", format_duration(max))));
        }
        Ok(duration)
    }

    /// An optional duration that, when given, must be longer than 0.
    fn optional(&self, key: &str, value: Option<Duration>) -> Result<Option<Duration>, ScenarioError> {
        value.map(|duration| self.positive(key, Some(duration), duration, Duration::MAX)).transpose()
    }

    fn name(&self) -> String {
        self.path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn description(&self, file: &ScenarioFile) -> Result<String, ScenarioError> {
        match &file.description {
            Some(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
            Some(_) => Err(self.invalid("description", "must not be empty")),
            None => Err(self.invalid("description", "missing: say in one line what the scenario shows")),
        }
    }

    /// A built-in scenario's plan.
    pub(crate) fn plan(&self, file: ScenarioFile) -> Result<Plan, ScenarioError> {
        let description = self.description(&file)?;
        let policy = self.policy(&file.client)?;
        let load = self.load(&file.load)?;
        let sampling = self.sampling(&file.sampling)?;
        let server = self.server(&file.server)?;
        let verdict = self.verdict(&file.verdict, &file.expect)?;
        let caps = if self.no_caps { CapsPlan::machine_guard() } else { self.caps(&file.caps)? };
        let source_addresses = self.range("client.source_addresses", file.client.source_addresses, 0, 0, 253)? as u8;
        let client = self.client(&file.client, policy, server.tls.as_ref())?;
        if matches!(server.tls, Some(ServerTlsPlan::Files { .. })) && client.tls.is_none() {
            return Err(self.invalid(
                "server.tls.cert",
                "the toy server serves TLS, and the client has none: add [client.tls] with the cacert that signed it",
            ));
        }
        let fault = self.fault(&file.fault)?;
        let attack = file.attack.as_ref().map(|attack| self.attack(attack)).transpose()?;
        let call = file.call.as_ref().map(|call| self.call(call)).transpose()?;
        if call.is_some() && policy.streams() {
            return Err(self.invalid(
                "call",
                format!("policy {:?} streams the toy server's Echo/ServerStream: drop [call]", policy.name()),
            ));
        }
        let largest = u64::from(server.settings.max_message_bytes);
        if u64::from(load.request.response_bytes) > largest || load.request.payload.len() as u64 > largest {
            return Err(
                self.invalid("server.max_message_size", "is smaller than load.payload_bytes or load.response_bytes")
            );
        }
        Ok(Plan {
            name: self.name(),
            source: self.path.to_owned(),
            description,
            policy,
            load,
            sampling,
            server,
            verdict,
            caps,
            source_addresses,
            client,
            fault,
            call,
            attack,
            origin: Origin::default(),
        })
    }

    /// An `[external]` scenario's plan: its command, run against the toy server and watched from outside.
    pub(crate) fn external(&self, file: ScenarioFile) -> Result<ForeignPlan, ScenarioError> {
        let description = self.description(&file)?;
        for (section, why) in [
            ("client", "an external scenario's client is its command, not a policy"),
            ("load", "an external client runs its own load"),
            ("fault", "faults are injected in front of the built-in client only"),
            ("attack", "an attack runs beside the built-in client only"),
        ] {
            if let Some(key) = self.document.table.get(section).and_then(|t| t.as_table()).and_then(|t| t.keys().next())
            {
                return Err(self.invalid(&format!("{section}.{key}"), why));
            }
        }
        if self.document.line("server.tls").is_some() {
            return Err(self.invalid("server.tls", "an external client dials the toy server in plaintext"));
        }
        for key in ["cooldown", "heap_profile"] {
            if self.document.line(&format!("sampling.{key}")).is_some() {
                return Err(self.invalid(&format!("sampling.{key}"), "does not apply to an external client"));
            }
        }
        let external = file.external.unwrap_or_default();
        let command = match external.command {
            Some(command) if command.first().is_some_and(|program| !program.trim().is_empty()) => command,
            _ => {
                return Err(self.invalid(
                    "external.command",
                    "missing: the client's argv, as an array; {addr} is replaced by the server's HOST:PORT",
                ));
            }
        };
        let duration =
            self.positive("external.duration", external.duration, defaults::DURATION, MAX_EXTERNAL_DURATION)?;
        let warmup = external.warmup.unwrap_or(defaults::FOREIGN_WARMUP);
        let plan = ForeignPlan {
            name: self.name(),
            source: Some(self.path.to_owned()),
            description,
            client: ForeignClient::Command(command),
            duration,
            warmup,
            warmup_requests: self.range("external.warmup_requests", external.warmup_requests, 0, 0, i64::MAX)? as u64,
            interval: self.interval(&file.sampling)?,
            server: Some(self.server(&file.server)?),
            verdict: self.verdict(&file.verdict, &file.expect)?,
            caps: Some(self.caps(&file.caps)?),
            pprof: match external.pprof {
                Some(url) => {
                    Some(super::values::pprof_url(&url).map_err(|reason| self.invalid("external.pprof", reason))?)
                }
                None => None,
            },
            own_code: external.own_code.unwrap_or_default(),
            call_sites: external.call_sites.unwrap_or(false),
            channelz: match external.channelz {
                Some(address) => Some(
                    super::values::channelz_address(&address)
                        .map_err(|reason| self.invalid("external.channelz", reason))?,
                ),
                None => None,
            },
            runtime: match external.runtime {
                Some(name) => RuntimeChoice::parse(&name).ok_or_else(|| {
                    self.invalid(
                        "external.runtime",
                        format!("{name:?} is not one of {}", RuntimeChoice::NAMES.join(", ")),
                    )
                })?,
                None => RuntimeChoice::Auto,
            },
        };
        // What a watch is checked for too, worded with the scenario's keys.
        plan.check(&|field| format!("external.{field}"))
            .map_err(|(field, reason)| self.invalid(&format!("external.{field}"), reason))?;
        Ok(plan)
    }

    fn policy(&self, client: &ClientSection) -> Result<ChannelPolicy, ScenarioError> {
        let Some(name) = client.policy else {
            return Err(self.invalid(
                "client.policy",
                "missing: one of reused, leak, per-request-close, pool, stream-leak, stream-cancel",
            ));
        };
        let policy = match name {
            PolicyName::Reused => ChannelPolicy::Reused,
            PolicyName::Leak => ChannelPolicy::Leak,
            PolicyName::PerRequestClose => ChannelPolicy::PerRequestClose,
            PolicyName::StreamLeak => ChannelPolicy::StreamLeak,
            PolicyName::StreamCancel => ChannelPolicy::StreamCancel,
            PolicyName::Pool => {
                let Some(size) = client.pool_size else {
                    return Err(
                        self.invalid("client.pool_size", "missing: policy \"pool\" needs the number of channels")
                    );
                };
                let size = self.range("client.pool_size", Some(size), 0, 1, 10_000)?;
                ChannelPolicy::Pool { size: NonZeroUsize::new(size as usize).expect("checked at least 1") }
            }
        };
        if client.pool_size.is_some() && name != PolicyName::Pool {
            return Err(
                self.invalid("client.pool_size", format!("only applies to policy \"pool\", not {:?}", name.name()))
            );
        }
        Ok(policy)
    }

    fn load(&self, load: &LoadSection) -> Result<LoadPlan, ScenarioError> {
        let concurrency = self.range("load.concurrency", load.concurrency, defaults::CONCURRENCY, 1, 10_000)?;
        let requests = self.range("load.requests", load.requests, defaults::REQUESTS, 1, i64::MAX)?;
        let max_duration = self.positive("load.duration", load.duration, defaults::DURATION, MAX_DURATION)?;
        let rate_per_s = match load.rate {
            None => None,
            Some(rate) if rate.is_finite() && rate > 0.0 => Some(rate),
            Some(rate) => {
                return Err(
                    self.invalid("load.rate", format!("must be a positive number of requests per second, got {rate}"))
                );
            }
        };
        let default_warmup = defaults::WARMUP_REQUESTS.min(requests / 2);
        let warmup = self.range("load.warmup_requests", load.warmup_requests, default_warmup, 0, i64::MAX)?;
        if warmup >= requests {
            return Err(self.invalid(
                "load.warmup_requests",
                format!("({warmup}) must be less than load.requests ({requests}), or no request would be measured"),
            ));
        }
        let measured = requests - warmup;
        // Unset, rounds shrink to fit a tiny run (whose verdict then says it had too few);
        // set, they must be enough to decide.
        let rounds = match load.rounds {
            None => defaults::ROUNDS.min(measured),
            Some(rounds) => {
                let rounds = self.range("load.rounds", Some(rounds), 0, MIN_ROUNDS.into(), 10_000)?;
                if rounds > measured {
                    return Err(self.invalid(
                        "load.rounds",
                        format!(
                            "({rounds}) must not exceed the requests after warm-up ({measured}): \
                             each round needs at least one request"
                        ),
                    ));
                }
                rounds
            }
        };
        let payload_bytes =
            self.range("load.payload_bytes", load.payload_bytes, defaults::PAYLOAD_BYTES, 0, MAX_MESSAGE_BYTES)?;
        let response_bytes = self.range("load.response_bytes", load.response_bytes, 0, 0, MAX_MESSAGE_BYTES)?;
        let delay_ms = self.range("load.delay_ms", load.delay_ms, 0, 0, 60_000)?;
        let delay_every = self.range("load.delay_every", load.delay_every, 1, 1, i64::MAX)?;
        if load.delay_every.is_some() && delay_ms == 0 {
            return Err(self.invalid("load.delay_every", "needs load.delay_ms: there is no delay to spread"));
        }
        let request_timeout =
            self.positive("load.request_timeout", load.request_timeout, defaults::REQUEST_TIMEOUT, Duration::MAX)?;
        let idle = load.idle_between_rounds.unwrap_or(Duration::ZERO);
        let idle_between_rounds = self.at_most("load.idle_between_rounds", idle, MAX_IDLE_BETWEEN_ROUNDS)?;
        Ok(LoadPlan {
            concurrency: NonZeroUsize::new(concurrency as usize).expect("checked at least 1"),
            max_requests: NonZeroU64::new(requests as u64).expect("checked at least 1"),
            max_duration,
            rate_per_s,
            warmup_requests: warmup as u64,
            rounds: NonZeroU32::new(rounds as u32).expect("at least 1: measured requests are at least 1"),
            request: RequestShape {
                payload: Bytes::from(vec![b'x'; payload_bytes as usize]),
                response_bytes: response_bytes as u32,
                delay_ms: delay_ms as u32,
                delay_every: delay_every as u64,
            },
            request_timeout,
            idle_between_rounds,
        })
    }

    /// A `[call]` section: the method's names checked, paths made absolute from the file's directory.
    fn interval(&self, sampling: &SamplingSection) -> Result<Duration, ScenarioError> {
        let interval =
            self.positive("sampling.interval", sampling.interval, defaults::SAMPLE_INTERVAL, Duration::MAX)?;
        if interval < MIN_SAMPLE_INTERVAL {
            return Err(
                self.invalid("sampling.interval", format!("must be at least {}", format_duration(MIN_SAMPLE_INTERVAL)))
            );
        }
        Ok(interval)
    }

    fn sampling(&self, sampling: &SamplingSection) -> Result<SamplingPlan, ScenarioError> {
        let interval = self.interval(sampling)?;
        let cooldown =
            self.at_most("sampling.cooldown", sampling.cooldown.unwrap_or(defaults::COOLDOWN), MAX_DURATION)?;
        Ok(SamplingPlan { interval: Some(interval), cooldown, heap_profile: sampling.heap_profile.unwrap_or(false) })
    }

    /// A path of the scenario file, relative to its directory.
    fn file_path(&self, path: &str) -> std::path::PathBuf {
        self.path.parent().unwrap_or(Path::new("")).join(path)
    }

    fn fault(&self, fault: &FaultSection) -> Result<FaultPlan, ScenarioError> {
        let blackhole_for = self.optional("fault.blackhole_for", fault.blackhole_for)?;
        let blackhole = match (fault.blackhole_at, blackhole_for) {
            (Some(at), duration) => Some(Blackhole { at, duration }),
            (None, Some(_)) => {
                return Err(
                    self.invalid("fault.blackhole_for", "needs fault.blackhole_at: when does the blackhole start?")
                );
            }
            (None, None) => None,
        };
        Ok(FaultPlan { blackhole, reset_at: fault.reset_at })
    }

    fn caps(&self, caps: &CapsSection) -> Result<CapsPlan, ScenarioError> {
        let size = |key: &str, value: Option<u64>, default: u64| -> Result<Option<u64>, ScenarioError> {
            let bytes = value.unwrap_or(default);
            if bytes < MIN_RSS_CAP {
                return Err(self.invalid(key, format!("must be at least 16MiB, got {bytes} bytes")));
            }
            Ok(Some(bytes))
        };
        Ok(CapsPlan {
            client_rss_bytes: size("caps.client_rss", caps.client_rss, defaults::CAP_CLIENT_RSS)?,
            server_rss_bytes: size("caps.server_rss", caps.server_rss, defaults::CAP_SERVER_RSS)?,
            fds: Some(self.range("caps.fds", caps.fds, defaults::CAP_FDS, 64, i64::MAX)? as u64),
        })
    }

    fn verdict(&self, verdict: &VerdictSection, expect: &ExpectSection) -> Result<VerdictPlan, ScenarioError> {
        let tolerance = |key: &str, value: Option<f64>, default: f64, per: &str| match value {
            None => Ok(default),
            Some(bytes) if bytes.is_finite() && bytes > 0.0 => Ok(bytes),
            Some(bytes) => Err(self.invalid(key, format!("must be a positive number of bytes per {per}, got {bytes}"))),
        };
        Ok(VerdictPlan {
            tolerance_bytes_per_request: tolerance(
                "verdict.tolerance",
                verdict.tolerance,
                defaults::TOLERANCE_BYTES_PER_REQUEST,
                "request",
            )?,
            tolerance_bytes_per_second: tolerance(
                "verdict.tolerance_per_second",
                verdict.tolerance_per_second,
                defaults::TOLERANCE_BYTES_PER_SECOND,
                "second",
            )?,
            expect_client: expect.client,
            expect_server: expect.server,
            max_failed_requests: match expect.failed_requests {
                Some(n) => Some(self.range("expect.failed_requests", Some(n), 0, 0, i64::MAX)? as u64),
                None => None,
            },
        })
    }
}
