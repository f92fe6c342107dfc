//! The built-in client's part of a run: its channels (through the fault
//! proxy when the scenario has one), its measure, its load and cool-down,
//! and the scenario's attack beside the load.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use leaklab_probe::SnapshotReader;
use tokio::sync::watch;

use super::Sampling;
use super::server::ServerSide;
use crate::attack::AttackReport;
use crate::fault::{FaultLog, FaultProxy};
use crate::load::{self, Channels, LoadCounters, LoadReport};
use crate::sample::{LiveMeasure, MetricsEndpoint, Phase, Recording, SocketWatch};
use crate::scenario::{AttackSpec, Plan};

/// How often TIME_WAIT sockets are counted: they linger 60 s, so once a second tells as much as more often would.
const TIME_WAIT_EVERY: Duration = Duration::from_secs(1);

/// Connects the client, samples it and the server while the load and its cool-down run, and returns
/// what was recorded, what the load did and what the fault proxy did.
pub(super) async fn run(
    plan: &Plan,
    prepared: super::Prepared,
    server: &mut ServerSide,
    sampling: &mut Sampling<'_>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<(Recording, LoadReport, Option<FaultLog>, Option<AttackReport>)> {
    let authority = server.address().expect("a built-in run always has a server").to_owned();
    // With a fault scheduled, the client dials the fault proxy, which relays to the server.
    let mut proxy = match plan.fault.any() {
        true => {
            let upstream = tokio::net::lookup_host(&authority)
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .with_context(|| format!("fault: cannot resolve the server address {authority}"))?;
            Some(FaultProxy::start(upstream, sampling.run_started).await.context("fault: starting the fault proxy")?)
        }
        false => None,
    };
    let dial = proxy.as_ref().map_or_else(|| authority.clone(), |proxy| proxy.addr.to_string());
    let channels = Arc::new(
        Channels::connect_with_tls(plan.policy, &dial, sources(plan, &dial)?, &plan.client, prepared.tls)
            .await
            .with_context(|| format!("connecting to the server at {dial}"))?,
    );
    let counters = Arc::new(LoadCounters::default());
    let ports: Vec<u16> =
        [&authority, &dial].iter().filter_map(|authority| authority.rsplit_once(':')?.1.parse().ok()).collect();
    let events = {
        let channels = Arc::clone(&channels);
        Box::new(move || (channels.reconnects(), channels.goaways().counts()))
    };
    let mut measure = LiveMeasure::new(
        SnapshotReader::new(channels.connections().clone()).with_streams(channels.streams().clone()),
        server.take_control(),
    )
    .with_events(events)
    .with_sockets(
        SocketWatch::start(ports, server.foreign_pid(), Vec::new(), TIME_WAIT_EVERY)
            .context("counting TIME_WAIT sockets")?,
    );
    if let Some(pid) = server.foreign_pid() {
        measure = measure.with_foreign_server(pid).with_context(|| format!("--server-pid {pid}"))?;
    }
    if let Some(metrics) = server.metrics() {
        let endpoint = MetricsEndpoint::open(&metrics.url, &metrics.named, server.foreign_pid().is_none())
            .context("--server-metrics")?;
        measure = measure.with_server_metrics(endpoint);
    }
    if let Some(pprof) = server.pprof() {
        measure = measure.with_server_pprof(pprof.url.clone(), sampling.dir.path.clone());
    }
    if plan.sampling.heap_profile {
        leaklab_probe::heap::activate().context("sampling.heap_profile")?;
        measure = measure.with_heap_profiles(sampling.dir.path.clone());
    }
    let recorder =
        sampling.record(Box::new(measure), Arc::clone(&counters), plan.sampling.interval, Some(plan.caps))?;

    let marker = recorder.marker();
    if plan.load.warmup_requests > 0 {
        marker.mark(Phase::Warmup);
    }
    if let Some(proxy) = proxy.as_mut() {
        proxy.schedule(plan.fault);
    }
    let attack = match &plan.attack {
        Some(spec) => Some(Attack::start(spec, &authority).await?),
        None => None,
    };
    let load = load::drive(
        Arc::clone(&channels),
        prepared.method,
        &plan.load,
        counters,
        Arc::new(marker),
        Arc::clone(&sampling.halt),
    )
    .await;
    // The load is over, and so is the attack: the cool-down shows what the server lets go of.
    let attack = match attack {
        Some(attack) => Some(attack.finish().await?),
        None => None,
    };
    if load.stopped_by != crate::halt::StopReason::Interrupted {
        let mut stop = stop.clone();
        tokio::select! {
            () = tokio::time::sleep(plan.sampling.cooldown) => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
    }
    // Its last checkpoint waits for closed connections to tear down, which happens on this
    // runtime's one thread: wait for it from another.
    let recording = tokio::task::spawn_blocking(move || recorder.finish()).await.context("the sampling thread")?;
    // Only now may the leaked channels go: the cool-down had to see them.
    drop(channels);
    Ok((recording, load, proxy.take().map(|proxy| proxy.log()), attack))
}

/// A scenario's attack, run by `loadgen attack` in a process of its own: its memory and connections are
/// not the client's, and its tasks do not delay the load's.
struct Attack {
    child: tokio::process::Child,
}

impl Attack {
    async fn start(spec: &AttackSpec, authority: &str) -> anyhow::Result<Attack> {
        let target = tokio::net::lookup_host(authority)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .with_context(|| format!("attack: cannot resolve the server address {authority}"))?;
        crate::attack::check_target(target).map_err(|error| anyhow::anyhow!("attack: {error}"))?;
        let attacker = attacker_binary()?;
        let child = tokio::process::Command::new(&attacker)
            .args(crate::attack::AttackPlan::of(spec, target).args())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("attack: starting {}", attacker.display()))?;
        Ok(Attack { child })
    }

    /// Stops the attack (SIGTERM) and reads its report.
    async fn finish(self) -> anyhow::Result<AttackReport> {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's pid; it cannot have been reaped yet, we hold its handle.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        let output = self.child.wait_with_output().await.context("attack: waiting for it")?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            anyhow::bail!("attack: loadgen attack ended with {}: {}", output.status, said.trim());
        }
        serde_json::from_slice(&output.stdout).context("attack: reading its report")
    }
}

/// The `loadgen` binary that runs attacks: this one, or the one beside it (from a test binary in `deps/`).
fn attacker_binary() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe().context("attack: locating this binary")?;
    if exe.file_stem().is_some_and(|stem| stem == "loadgen") {
        return Ok(exe);
    }
    let beside = [
        exe.with_file_name("loadgen"),
        exe.parent()
            .and_then(|deps| deps.parent())
            .map_or_else(|| exe.with_file_name("loadgen"), |dir| dir.join("loadgen")),
    ];
    beside.into_iter().find(|path| path.is_file()).with_context(|| {
        format!(
            "attack: no loadgen binary beside {} to run it: build it with `cargo build --release -p leaklab-loadgen`",
            exe.display()
        )
    })
}
/// The source addresses of `plan`, checked against the target: they are
/// loopback addresses, so they can only reach a loopback IPv4 target.
fn sources(plan: &Plan, authority: &str) -> anyhow::Result<Vec<std::net::Ipv4Addr>> {
    if plan.source_addresses == 0 {
        return Ok(Vec::new());
    }
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) if ip.is_loopback() => Ok(load::connector::loopback_sources(plan.source_addresses.into())),
        _ => anyhow::bail!(
            "client.source_addresses: loopback source addresses can only reach a 127.0.0.0/8 target, not {authority}"
        ),
    }
}
