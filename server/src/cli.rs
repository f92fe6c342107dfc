//! Command-line flags of `leaklab-server`. Only clap lives here.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use leaklab_server::{KeepalivePolicy, Limits, ServerConfig};
use leaklab_wire::limits::Setting;
use leaklab_wire::tls::{self, TlsFiles};

/// Where `--help` lists what one client may make the server hold.
const LIMITS: &str = "Limits on what one client can make the server hold";

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

    /// HTTP/2 max concurrent streams per connection, or `off` (tonic's default: no limit).
    #[arg(long, default_value = "100", value_name = "N|off", help_heading = LIMITS)]
    pub(crate) max_concurrent_streams: Setting<u32>,

    /// Streams open at once over all connections; beyond it, a connection's new stream is reset unless
    /// the connection holds less than its fair share (this bound over the connections with streams).
    #[arg(long, default_value = "1000", value_name = "N|off", help_heading = LIMITS)]
    pub(crate) max_concurrent_streams_total: Setting<u32>,

    /// Connections open at once; beyond it, a new connection is closed as soon as it is accepted.
    #[arg(long, default_value = "off", value_name = "N|off", help_heading = LIMITS)]
    pub(crate) max_connections: Setting<u32>,

    /// Reset a stream whose request has not arrived in full (END_STREAM) this long after its headers.
    #[arg(long, default_value = "5s", value_name = "DURATION|off", help_heading = LIMITS)]
    pub(crate) request_timeout: Setting<Duration>,

    /// Requests still arriving, over all connections; beyond it, the oldest one of the connection holding the most is reset (a client with one slow request keeps it).
    #[arg(long, default_value = "1000", value_name = "N|off", help_heading = LIMITS)]
    pub(crate) max_incomplete_requests: Setting<u32>,

    /// Reset a stream whose response has waited this long behind a closed flow-control window.
    #[arg(long, default_value = "10s", value_name = "DURATION|off", help_heading = LIMITS)]
    pub(crate) unread_response_timeout: Setting<Duration>,

    /// Response bytes one connection may have waiting for flow-control window (each waiting response
    /// counts 16 KiB more for its stream); beyond it, the connection's oldest waiting response is reset.
    #[arg(long, default_value = "16777216", value_name = "BYTES|off", help_heading = LIMITS)]
    pub(crate) max_unread_response_bytes: Setting<u64>,

    /// The same bound over all connections; beyond it, the oldest waiting response anywhere is reset.
    #[arg(long, default_value = "67108864", value_name = "BYTES|off", help_heading = LIMITS)]
    pub(crate) max_unread_response_bytes_total: Setting<u64>,

    /// Hand a request's bytes to the decoder as they come, which reserves the length a message's
    /// prefix declares before its bytes arrive (tonic's way), instead of gathering each message first.
    #[arg(long, help_heading = LIMITS)]
    pub(crate) trust_length_prefix: bool,

    /// GOAWAY and close a connection with no RPC in flight for this long, e.g. `2s`
    /// (grpc-go's MaxConnectionIdle; default: never).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) max_connection_idle: Option<Duration>,

    /// GOAWAY a connection this old, e.g. `30s` (grpc-go's MaxConnectionAge; default: never).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) max_connection_age: Option<Duration>,

    /// Close a connection still open this long after its max-age GOAWAY (default: wait for its RPCs).
    #[arg(long, value_parser = humantime::parse_duration, requires = "max_connection_age")]
    pub(crate) max_connection_age_grace: Option<Duration>,

    /// Ping a connection after this long without activity, e.g. `1s` (grpc-go's Time; default: never).
    #[arg(long, alias = "http2-keepalive-interval", value_parser = humantime::parse_duration)]
    pub(crate) keepalive_time: Option<Duration>,

    /// Close a connection whose ping goes unanswered this long, e.g. `20s` (grpc-go's Timeout).
    #[arg(long, alias = "http2-keepalive-timeout", value_parser = humantime::parse_duration, requires = "keepalive_time")]
    pub(crate) keepalive_timeout: Option<Duration>,

    /// Client pings closer than this are strikes; the third strike gets GOAWAY
    /// ENHANCE_YOUR_CALM "too_many_pings" (grpc-go's MinTime; default: pings are not policed).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) min_ping_interval: Option<Duration>,

    /// Let clients ping while no RPC is in flight (grpc-go's PermitWithoutStream).
    #[arg(long, requires = "min_ping_interval")]
    pub(crate) permit_without_stream: bool,

    /// Serve TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,

    /// Mutual TLS: require every client to present a certificate signed by a CA in this PEM file.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_client_ca: Option<std::path::PathBuf>,

    /// Serve the server's figures as a Prometheus text endpoint at http://ADDR/metrics
    /// (process_resident_memory_bytes, process_open_fds, jemalloc_*_bytes, leaklab_server_*).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,

    /// Sample allocations with jemalloc's heap profiler (one per 128 KiB on
    /// average), for `heap-dump` requests on the control channel.
    #[arg(long)]
    pub(crate) heap_profile: bool,

    /// Answer `stats` lines on stdin with one JSON line of figures on stdout,
    /// and shut down when stdin closes. The load generator uses this.
    #[arg(long)]
    pub(crate) control_stdin: bool,

    /// On shutdown, wait this long for connections to close before dropping them.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) shutdown_grace: Duration,
}

impl Cli {
    /// The server's configuration; a TLS file that cannot be used is an error naming its flag and path.
    pub(crate) fn server_config(&self) -> Result<ServerConfig, String> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let files = TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: self.tls_client_ca.clone() };
                let flag = |which| match which {
                    tls::Which::Cert => "--tls-cert",
                    tls::Which::Key => "--tls-key",
                    tls::Which::ClientCa => "--tls-client-ca",
                };
                Some(tls::server_config(&files).map_err(|(which, error)| format!("{} {error}", flag(which)))?)
            }
            _ => None,
        };
        Ok(ServerConfig {
            max_message_bytes: self.max_message_size as usize,
            limits: self.limits(),
            keepalive: KeepalivePolicy {
                max_connection_idle: self.max_connection_idle,
                max_connection_age: self.max_connection_age,
                max_connection_age_grace: self.max_connection_age_grace,
                keepalive_time: self.keepalive_time,
                keepalive_timeout: self.keepalive_timeout,
                min_ping_interval: self.min_ping_interval,
                permit_without_stream: self.permit_without_stream,
            },
            preface_timeout: self.preface_timeout,
            tls,
        })
    }

    fn limits(&self) -> Limits {
        Limits {
            max_concurrent_streams: self.max_concurrent_streams.0,
            max_concurrent_streams_total: self.max_concurrent_streams_total.0,
            max_connections: self.max_connections.0,
            request_timeout: self.request_timeout.0,
            max_incomplete_requests: self.max_incomplete_requests.0,
            unread_response_timeout: self.unread_response_timeout.0,
            max_unread_response_bytes: self.max_unread_response_bytes.0,
            max_unread_response_bytes_total: self.max_unread_response_bytes_total.0,
            gather_messages: !self.trust_length_prefix,
        }
    }

    /// Refuses a non-loopback --listen without --allow-remote.
    pub(crate) fn check_listen(&self) -> Result<(), String> {
        let listens =
            std::iter::once(("--listen", self.listen)).chain(self.metrics_listen.map(|a| ("--metrics-listen", a)));
        for (flag, addr) in listens {
            if !addr.ip().is_loopback() && !self.allow_remote {
                return Err(format!(
                    "{flag} {addr}: not a loopback address; add --allow-remote to serve other machines"
                ));
            }
        }
        Ok(())
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
    fn a_grace_needs_an_age() {
        let err = Cli::try_parse_from(["leaklab-server", "--max-connection-age-grace", "1s"]).unwrap_err();
        assert!(err.to_string().contains("--max-connection-age"), "{err}");
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
        let metrics = Cli::try_parse_from(["leaklab-server", "--metrics-listen", "0.0.0.0:9090"]).unwrap();
        let err = metrics.check_listen().unwrap_err();
        assert!(err.starts_with("--metrics-listen 0.0.0.0:9090: not a loopback address"), "{err}");
    }

    #[test]
    fn the_limits_default_to_the_libraries_and_their_args_read_back() {
        let cli = Cli::try_parse_from(["leaklab-server"]).unwrap();
        assert_eq!(cli.limits(), Limits::default(), "the flags' defaults are the library's");
        let mut limits = Limits::unlimited();
        limits.request_timeout = Some(Duration::from_millis(1_500));
        limits.max_connections = Some(7);
        let args = limits.args();
        let cli = Cli::try_parse_from(std::iter::once("leaklab-server".to_owned()).chain(args)).unwrap();
        assert_eq!(cli.limits(), limits);
        let err = Cli::try_parse_from(["leaklab-server", "--max-concurrent-streams", "0"]).unwrap_err();
        assert!(err.to_string().contains("write `off` for no limit"), "{err}");
        let err = Cli::try_parse_from(["leaklab-server", "--request-timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--request-timeout") && err.to_string().contains("not a duration"), "{err}");
    }

    #[test]
    fn durations_are_human() {
        let cli = Cli::try_parse_from(["leaklab-server", "--http2-keepalive-interval", "250ms"]).unwrap();
        assert_eq!(cli.keepalive_time, Some(Duration::from_millis(250)), "the old flag name still works");
        let cli = Cli::try_parse_from([
            "leaklab-server",
            "--max-connection-idle",
            "2s",
            "--min-ping-interval",
            "5s",
            "--permit-without-stream",
        ])
        .unwrap();
        let policy = cli.server_config().unwrap().keepalive;
        assert_eq!(policy.max_connection_idle, Some(Duration::from_secs(2)));
        assert!(policy.ping_policy().unwrap().permit_without_stream);
    }

    #[test]
    fn a_tls_file_that_cannot_be_used_is_named_by_its_flag() {
        let dir = std::env::temp_dir().join(format!("leaklab-server-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk = junk.to_str().unwrap();
        let cli = Cli::try_parse_from(["leaklab-server", "--tls-cert", junk, "--tls-key", junk]).unwrap();
        let err = cli.server_config().unwrap_err();
        assert_eq!(err, format!("--tls-cert {junk}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"));
        let cli = Cli::try_parse_from(["leaklab-server", "--tls-cert", "/nonexistent.pem", "--tls-key", junk]).unwrap();
        assert!(cli.server_config().unwrap_err().starts_with("--tls-cert /nonexistent.pem: No such file"));
        assert!(Cli::try_parse_from(["leaklab-server", "--tls-cert", junk]).is_err(), "a certificate needs its key");
        let _ = std::fs::remove_dir_all(dir);
    }
}
