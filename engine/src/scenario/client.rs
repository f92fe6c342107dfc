//! How the built-in client dials and keeps its connections: tonic's `Endpoint` options, the transport
//! that carries its calls, and its TLS.

use std::time::Duration;

use leaklab_verdict::named;

/// The client's connection options, as tonic's `Endpoint` takes them. `None`: tonic's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPlan {
    /// Dialling a connection fails after this long.
    pub connect_timeout: Option<Duration>,
    /// HTTP/2 keepalive pings, if any.
    pub keepalive: Option<ClientKeepalive>,
    /// SO_KEEPALIVE with this idle time.
    pub tcp_keepalive: Option<Duration>,
    /// What carries the calls: tonic's `Channel`, or the tonic client straight on one h2 connection.
    pub transport: Transport,
    /// TLS on every connection; `None`: plaintext.
    pub tls: Option<ClientTlsPlan>,
    /// The stream policies: how often the server sends on each open stream.
    pub stream_interval: Duration,
}

/// `client.stream_interval`'s default. Held streams a second apart buffer a small unread DATA frame each per
/// second on the client, and after about 16,000 of them (3,550 streams in 9 s) h2's budget for small frames
/// tears the whole connection down with GOAWAY ENHANCE_YOUR_CALM "too_many_data_frames".
pub(super) const DEFAULT_STREAM_INTERVAL: Duration = Duration::from_secs(30);
/// The longest pause between two messages the toy server accepts (its `MAX_DELAY_MS`).
pub(super) const MAX_STREAM_INTERVAL: Duration = Duration::from_secs(60);

impl Default for ClientPlan {
    fn default() -> Self {
        Self {
            connect_timeout: None,
            keepalive: None,
            tcp_keepalive: None,
            transport: Transport::default(),
            tls: None,
            stream_interval: DEFAULT_STREAM_INTERVAL,
        }
    }
}

/// The client's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsPlan {
    /// What the server's certificate is verified against.
    pub trust: Trust,
    /// The certificate the client presents, if any (mutual TLS).
    pub identity: Option<Identity>,
    /// The name the server's certificate must be valid for; `None`: the target's host.
    pub server_name: Option<String>,
    /// What an error about each file names: the flag, or the file, line and key.
    pub origins: TlsOrigins,
}

/// What a client verifies the server's certificate against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The CA certificates in this PEM file.
    CaFile(std::path::PathBuf),
    /// The Mozilla root program's CAs (webpki-roots).
    MozillaRoots,
    /// The throwaway CA of `[server.tls] generate`.
    Generated,
    /// Nothing: any certificate is accepted (`insecure`).
    Insecure,
}

/// A certificate and key the client presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Files {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    },
    /// Signed by the throwaway CA of `[server.tls] generate`.
    Generated,
}

/// Where each TLS key was set, for errors found when the files are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOrigins {
    pub cacert: String,
    pub cert: String,
    pub key: String,
    pub cname: String,
}

named! {
    /// What carries a client's calls.
    #[derive(Default)]
    pub enum Transport, "transport" {
        /// tonic's `Channel`, as a Rust client is written: tower's buffer, reconnect, hyper's HTTP/2 client.
        #[default]
        Channel = "channel",
        /// tonic's generated client and codec straight on one `h2` connection, never redialled and without
        /// keepalive pings: the lean path for measuring how hard a server can be pushed (`reused` only).
        H2 = "h2",
    }
}

/// HTTP/2 keepalive of the client (tonic's `http2_keep_alive_interval` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientKeepalive {
    pub interval: Duration,
    /// A ping unanswered this long closes the connection (tonic's default: 20 s).
    pub timeout: Option<Duration>,
    /// Ping with no call in flight too.
    pub while_idle: bool,
}
