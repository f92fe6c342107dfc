//! The server a run loads: one it starts itself (the default) or one already
//! running (`--target`), and the readiness check both go through.

mod spawned;

use std::time::{Duration, Instant};

use leaklab_probe::ConnectionCounter;
use tonic::transport::{Channel, Endpoint};

use crate::load::connector::CountingConnector;
use crate::tls::ClientTls;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

pub use spawned::{ServerControl, ServerProcess, SpawnError};

/// How long a server may take to report SERVING.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until the gRPC health service at `authority` reports `leaklab.v1.Echo`
/// as SERVING, over TLS when `tls` is given. The probing connection is closed before this returns.
pub async fn wait_until_serving(authority: &str, timeout: Duration, tls: Option<&ClientTls>) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))?.connect_timeout(Duration::from_secs(1));
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match connect(&endpoint, tls).await {
            Ok(channel) => {
                let request = HealthCheckRequest { service: leaklab_proto::ECHO_SERVICE_NAME.to_owned() };
                match HealthClient::new(channel).check(request).await {
                    Ok(response) if response.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
                    Ok(response) => last = format!("health status {}", response.get_ref().status),
                    Err(status) => last = format!("health check failed: {}", status.message()),
                }
            }
            Err(error) => last = format!("cannot connect: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "the server at {authority} did not report {} SERVING within {}: {last}",
        leaklab_proto::ECHO_SERVICE_NAME,
        humantime::format_duration(timeout)
    )
}

/// Waits until an HTTP/2 connection to `authority` is established (any gRPC server), over TLS when
/// `tls` is given; the connection is closed before this returns.
pub async fn wait_until_connected(authority: &str, timeout: Duration, tls: Option<&ClientTls>) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))?.connect_timeout(Duration::from_secs(1));
    loop {
        match connect(&endpoint, tls).await {
            Ok(_channel) => return Ok(()),
            Err(error) if Instant::now() >= deadline => anyhow::bail!(
                "the server at {authority} did not accept an HTTP/2 connection within {}: {error}",
                humantime::format_duration(timeout)
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A channel to `endpoint` through leaklab's connector, with TLS when `tls` is given.
pub async fn connect(endpoint: &Endpoint, tls: Option<&ClientTls>) -> Result<Channel, tonic::transport::Error> {
    let connector = CountingConnector::new(ConnectionCounter::new()).tls(tls.cloned());
    endpoint.connect_with_connector(connector).await
}
