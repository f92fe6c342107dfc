//! Command-line flags of `leaklab-server`. Only clap lives here; the settings' flags come from
//! `leaklab_wire::SERVER_OPTIONS`, which a scenario's `[server]` table reads too.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser};
use leaklab_server::ServerConfig;
use leaklab_wire::settings::{Group, Kind, SERVER_OPTIONS, ServerSettings, Value};
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

    /// Every setting of `SERVER_OPTIONS`: largest message, limits, keepalive policy.
    #[command(flatten)]
    pub(crate) settings: SettingArgs,

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
        let settings = self.settings.0;
        Ok(ServerConfig {
            max_message_bytes: settings.max_message_bytes as usize,
            limits: settings.limits,
            keepalive: settings.keepalive,
            preface_timeout: self.preface_timeout,
            tls,
        })
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

/// The flags of `SERVER_OPTIONS`, one per row: its help, its value (or `off`), and the option it needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct SettingArgs(pub(crate) ServerSettings);

impl Args for SettingArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        SERVER_OPTIONS.iter().fold(command, |command, option| {
            let mut arg = Arg::new(option.name).long(option.flag()).help(option.doc);
            if let Some(alias) = option.alias {
                arg = arg.alias(alias);
            }
            if let Some((needed, _)) = option.needs {
                arg = arg.requires(needed);
            }
            if option.group == Group::Limits {
                arg = arg.help_heading(LIMITS);
            }
            // Each doc says the default: the settings start from theirs.
            command.arg(match option.kind {
                Kind::Switch => arg.action(ArgAction::SetTrue),
                _ => arg.value_name(option.value_name()).value_parser(move |text: &str| option.parse(text)),
            })
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for SettingArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut settings = ServerSettings::default();
        for option in &SERVER_OPTIONS {
            let value = match option.kind {
                Kind::Switch => Some(Value::Switch(matches.get_flag(option.name))),
                _ => matches.get_one::<Value>(option.name).copied(),
            };
            if let Some(value) = value {
                option.set(&mut settings, value);
            }
        }
        Ok(SettingArgs(settings))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
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
    fn every_setting_reads_back_from_the_arguments_a_run_hands_the_server() {
        assert_eq!(Cli::try_parse_from(["leaklab-server"]).unwrap().settings.0, ServerSettings::default());
        let mut changed = ServerSettings::default();
        for option in &SERVER_OPTIONS {
            let value = match (option.kind, option.get(&changed)) {
                (Kind::Switch, Value::Switch(on)) => Value::Switch(!on),
                (Kind::Duration, _) => Value::Duration(Duration::from_millis(1500)),
                (Kind::Count, _) => Value::Number(9),
                (_, Value::Off) => Value::Number(7),
                _ => Value::Off,
            };
            option.set(&mut changed, value);
        }
        let args = changed.args();
        let cli = Cli::try_parse_from(std::iter::once("leaklab-server".to_owned()).chain(args.clone()))
            .unwrap_or_else(|error| panic!("{args:?}: {error}"));
        assert_eq!(cli.settings.0, changed, "{args:?}");
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
    fn a_limit_of_zero_or_of_words_is_refused_naming_its_flag() {
        let err = Cli::try_parse_from(["leaklab-server", "--max-concurrent-streams", "0"]).unwrap_err();
        assert!(err.to_string().contains("write \"off\" for no limit"), "{err}");
        let err = Cli::try_parse_from(["leaklab-server", "--request-timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--request-timeout") && err.to_string().contains("not a duration"), "{err}");
    }

    #[test]
    fn durations_are_human() {
        let cli = Cli::try_parse_from(["leaklab-server", "--http2-keepalive-interval", "250ms"]).unwrap();
        assert_eq!(
            cli.settings.0.keepalive.keepalive_time,
            Some(Duration::from_millis(250)),
            "the old flag name still works"
        );
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
