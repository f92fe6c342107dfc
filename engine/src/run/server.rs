//! The server side of a run: the toy server it starts (measured over its side
//! channel), a server already running (`--target`, measured from `/proc` with
//! `--server-pid` or through `--server-metrics`, else not), or none (`loadgen watch`).

use std::time::{Duration, Instant};

use leaklab_probe::procfs::{self, FdLimits, Proc};

use anyhow::Context;

use super::{Prepared, ServerMetrics, ServerPprof, TargetChoice};
use crate::run_dir::RunDir;
use crate::scenario::{RunPlan, ServerTlsPlan};
use crate::summary::{Limits, Note, ServerSource, TargetInfo, TargetKind};
use crate::target::{self, ServerControl, ServerProcess};

/// How long a stopped server may take to exit before it is killed.
const SERVER_EXIT_GRACE: Duration = Duration::from_secs(8);
/// How long to wait for the readiness probe's connection to close at the server.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(super) struct ServerSide {
    process: Option<ServerProcess>,
    /// The side channel, until the client's measure takes it.
    control: Option<ServerControl>,
    address: Option<String>,
    kind: TargetKind,
    /// `--server-pid`: the process of a server the run did not start, measured from outside.
    foreign_pid: Option<u32>,
    /// `--server-metrics`: the endpoint of a server the run did not start.
    metrics: Option<ServerMetrics>,
    /// `--server-pprof`: a Go server's `net/http/pprof` endpoint.
    pprof: Option<ServerPprof>,
}

impl ServerSide {
    /// The server `plan` needs: started from `target`'s binary, or reached at its address.
    pub(super) async fn start(
        plan: &RunPlan,
        target: Option<&TargetChoice>,
        dir: &RunDir,
        prepared: &Prepared,
    ) -> anyhow::Result<ServerSide> {
        let args = match plan {
            RunPlan::Builtin(plan) => {
                let mut args = plan.server.args();
                if let Some(pki) = &prepared.pki {
                    let files = pki.write(&dir.path).context("writing the throwaway CA's files")?;
                    args.extend(["--tls-cert".to_owned(), files.server_cert.display().to_string()]);
                    args.extend(["--tls-key".to_owned(), files.server_key.display().to_string()]);
                    if matches!(plan.server.tls, Some(ServerTlsPlan::Generated { client_auth: true })) {
                        args.extend(["--tls-client-ca".to_owned(), files.ca.display().to_string()]);
                    }
                }
                if plan.sampling.heap_profile {
                    args.push("--heap-profile".to_owned());
                }
                Some(args)
            }
            RunPlan::Foreign(plan) => plan.server.as_ref().map(|server| server.args()),
        };
        let Some(args) = args else {
            return Ok(ServerSide {
                process: None,
                control: None,
                address: None,
                kind: TargetKind::None,
                foreign_pid: None,
                metrics: None,
                pprof: None,
            });
        };
        let Some(target) = target else {
            anyhow::bail!("{} needs the toy server, and no server binary was given", plan.name());
        };
        match target {
            TargetChoice::Spawn { server_bin } => {
                let (process, mut control) = ServerProcess::spawn(server_bin, &args, &dir.file("server.log"))?;
                let address = process.addr.to_string();
                // Over TLS the client's own verification (a wrong CA, on purpose) must not keep the run
                // from starting: the server has bound and answers its side channel, which is enough.
                if prepared.tls.is_none() {
                    target::wait_until_serving(&address, target::READY_TIMEOUT, None).await?;
                }
                settle(&mut control).await;
                Ok(ServerSide {
                    process: Some(process),
                    control: Some(control),
                    address: Some(address),
                    kind: TargetKind::Spawned,
                    foreign_pid: None,
                    metrics: None,
                    pprof: None,
                })
            }
            TargetChoice::External { authority, server_pid, server_metrics, server_pprof }
                if matches!(plan, RunPlan::Builtin(_)) =>
            {
                match plan {
                    // A server leaklab did not write need not have a health service, nor leaklab's Echo.
                    RunPlan::Builtin(plan) if plan.call.is_some() => {
                        target::wait_until_connected(authority, target::READY_TIMEOUT, prepared.tls.as_ref()).await?
                    }
                    _ => target::wait_until_serving(authority, target::READY_TIMEOUT, prepared.tls.as_ref()).await?,
                }
                Ok(ServerSide {
                    process: None,
                    control: None,
                    address: Some(authority.clone()),
                    kind: TargetKind::External,
                    foreign_pid: *server_pid,
                    metrics: server_metrics.clone(),
                    pprof: server_pprof.clone(),
                })
            }
            TargetChoice::External { .. } => anyhow::bail!(
                "--target: {} runs an external client against a server it starts and measures",
                plan.name()
            ),
        }
    }

    /// Where the client sends its requests.
    pub(super) fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }

    /// The side channel of a server the run started, for the client's measure.
    pub(super) fn take_control(&mut self) -> Option<ServerControl> {
        self.control.take()
    }

    /// The process of a server the run did not start, to measure from outside (`--server-pid`).
    pub(super) fn foreign_pid(&self) -> Option<u32> {
        self.foreign_pid
    }

    /// The metrics endpoint of a server the run did not start (`--server-metrics`).
    pub(super) fn metrics(&self) -> Option<&ServerMetrics> {
        self.metrics.as_ref()
    }

    /// The pprof endpoint of a Go server the run did not start (`--server-pprof`).
    pub(super) fn pprof(&self) -> Option<&ServerPprof> {
        self.pprof.as_ref()
    }

    pub(super) fn info(&self) -> TargetInfo {
        let server_measured_by = match (self.kind, self.foreign_pid, &self.metrics) {
            (TargetKind::Spawned, _, _) => Some(ServerSource::SideChannel),
            (_, Some(_), _) => Some(ServerSource::Process),
            (_, None, Some(_)) => Some(ServerSource::Metrics),
            _ => None,
        };
        TargetInfo {
            kind: self.kind,
            address: self.address.clone(),
            server_pid: self.process.as_ref().map(ServerProcess::pid).or(self.foreign_pid),
            server_measured_by,
            server_metrics_url: self.metrics.as_ref().map(|metrics| metrics.url.clone()),
            server_pprof_url: self.pprof.as_ref().map(|pprof| pprof.url.clone()),
        }
    }

    /// The fd limits of the client (`client_fds`, as the caller read them) and of a started server.
    pub(super) fn limits(&self, client_fds: Option<FdLimits>) -> Limits {
        let pid = self.process.as_ref().map(ServerProcess::pid).or(self.foreign_pid);
        let server_fds = pid.and_then(|pid| procfs::fd_limits_of(Proc::Pid(pid)).ok());
        Limits { client_fds, server_fds }
    }

    /// Stops a server the run started, once its side channel is closed (the
    /// measure that held it has ended); how it went becomes a note.
    pub(super) async fn stop(&mut self, notes: &mut Vec<Note>) {
        drop(self.control.take());
        let Some(server) = self.process.take() else { return };
        // Waited for off the runtime's one thread: the dropped channels' connection tasks
        // must still run to close their sockets, or the server's graceful shutdown waits on them.
        let stopped = tokio::task::spawn_blocking(move || server.stop(SERVER_EXIT_GRACE))
            .await
            .unwrap_or_else(|error| Err(std::io::Error::other(error)));
        match stopped {
            Ok(status) if status.success() => {}
            Ok(status) => notes.push(Note::ServerExited { status: status.to_string() }),
            Err(error) => notes.push(Note::ServerStopFailed { error: error.to_string() }),
        }
    }
}

/// Waits until the server counts no open connection (the readiness probe's
/// has closed), so the baseline sample starts from zero. The probe's
/// connection closes on this runtime, so the wait yields to it between two looks.
async fn settle(control: &mut ServerControl) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while Instant::now() < deadline {
        match control.stats() {
            Some(stats) if stats.process.open_connections() == Some(0) => return,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
