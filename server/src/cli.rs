//! Command-line flags of `leaklab-server`. Only clap lives here.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use leaklab_server::ServerConfig;

/// The toy leaklab.v1.Echo gRPC server (with grpc.health.v1.Health).
///
/// Prints `{"listening":"HOST:PORT"}` on stdout once bound; logs go to stderr.
#[derive(Debug, Parser)]
#[command(name = "leaklab-server", version)]
pub(crate) struct Cli {
    /// Address to listen on; port 0 picks a free port. Loopback only, unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub(crate) listen: SocketAddr,

    /// Allow --listen on an address other machines can reach. This is a leak
    /// harness: by default it serves this machine only.
    #[arg(long)]
    pub(crate) allow_remote: bool,

    /// Close a connection that has not sent the HTTP/2 preface this long after it was accepted.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) preface_timeout: Duration,

    /// Largest message in bytes the server accepts or sends.
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_message_size: u32,

    /// HTTP/2 max concurrent streams per connection (default: no limit, as in tonic).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_concurrent_streams: Option<u32>,

    /// Send HTTP/2 PINGs at this interval, e.g. `30s` (default: none).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) http2_keepalive_interval: Option<Duration>,

    /// Close a connection whose PING goes unanswered this long, e.g. `20s`.
    #[arg(long, value_parser = humantime::parse_duration, requires = "http2_keepalive_interval")]
    pub(crate) http2_keepalive_timeout: Option<Duration>,

    /// Answer `stats` lines on stdin with one JSON line of figures on stdout,
    /// and shut down when stdin closes. The load generator uses this.
    #[arg(long)]
    pub(crate) control_stdin: bool,

    /// On shutdown, wait this long for connections to close before dropping them.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) shutdown_grace: Duration,
}

impl Cli {
    pub(crate) fn server_config(&self) -> ServerConfig {
        ServerConfig {
            max_message_bytes: self.max_message_size as usize,
            max_concurrent_streams: self.max_concurrent_streams,
            http2_keepalive_interval: self.http2_keepalive_interval,
            http2_keepalive_timeout: self.http2_keepalive_timeout,
            preface_timeout: self.preface_timeout,
        }
    }

    /// Refuses a non-loopback --listen without --allow-remote.
    pub(crate) fn check_listen(&self) -> Result<(), String> {
        if self.listen.ip().is_loopback() || self.allow_remote {
            Ok(())
        } else {
            Err(format!("--listen {}: not a loopback address; add --allow-remote to serve other machines", self.listen))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn zero_max_message_size_is_refused() {
        let err = Cli::try_parse_from(["leaklab-server", "--max-message-size", "0"]).unwrap_err();
        assert!(err.to_string().contains("--max-message-size"), "{err}");
    }

    #[test]
    fn only_loopback_unless_allowed() {
        let local = Cli::try_parse_from(["leaklab-server", "--listen", "[::1]:0"]).unwrap();
        assert!(local.check_listen().is_ok());
        let remote = Cli::try_parse_from(["leaklab-server", "--listen", "0.0.0.0:50051"]).unwrap();
        let err = remote.check_listen().unwrap_err();
        assert!(err.contains("--listen 0.0.0.0:50051: not a loopback address; add --allow-remote"), "{err}");
        let allowed = Cli::try_parse_from(["leaklab-server", "--listen", "0.0.0.0:0", "--allow-remote"]).unwrap();
        assert!(allowed.check_listen().is_ok());
    }

    #[test]
    fn durations_are_human() {
        let cli = Cli::try_parse_from(["leaklab-server", "--http2-keepalive-interval", "250ms"]).unwrap();
        assert_eq!(cli.http2_keepalive_interval, Some(Duration::from_millis(250)));
    }
}
