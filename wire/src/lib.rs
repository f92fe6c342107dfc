//! What the toy server and the load generator share: the server's policy and
//! limit types (the load generator writes them into the server's command
//! line, the server enforces them), the reader of HTTP/2 frame headers (the
//! server polices pings with it, the client watches for GOAWAYs), and TLS
//! files read from PEM.
//!
//! - [`keepalive`]: grpc-go's keepalive parameters and ping policy, and the ping-strike rule;
//! - [`limits`]: what one client may make the server hold, each limit on or `off`;
//! - [`settings`]: every setting of the server (those two and its largest message), declared once for
//!   its command line, a scenario's `[server]` table and the arguments a run starts it with;
//! - [`values`]: durations and sizes as people write them;
//! - [`frames`]: an incremental reader of HTTP/2 frame headers on a raw byte stream;
//! - [`tls`]: certificates and keys from PEM files, and the server's rustls configuration.

pub mod frames;
pub mod keepalive;
pub mod limits;
pub mod settings;
pub mod tls;
pub mod values;

pub use keepalive::KeepalivePolicy;
pub use limits::Limits;
pub use settings::{SERVER_OPTIONS, ServerOption, ServerSettings};
