//! What a built-in run prepares before anything runs: the method it calls
//! and the client's TLS (with a throwaway CA when the scenario asks for one).
//! A [`ResolveError`] here is the command line's or the scenario's mistake,
//! and nothing has run.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Endpoint;

use super::TargetChoice;
use crate::call::{self, ResolveError};
use crate::load::Method;
use crate::scenario::{RunPlan, ServerTlsPlan};
use crate::tls::{self, ClientTls, Pki};

/// How long reaching a `--target`'s reflection service may take.
const REFLECTION_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the whole reflection exchange may take once connected: a server that accepts the
/// stream and never answers is a usage error, not a run that never starts.
const REFLECTION_TIMEOUT: Duration = Duration::from_secs(20);

/// The host the toy server is started on.
const SPAWNED_HOST: &str = "127.0.0.1";

/// What the run uses, made before it starts.
#[derive(Debug, Default)]
pub struct Prepared {
    pub method: Method,
    /// TLS on the client's connections.
    pub tls: Option<ClientTls>,
    /// The throwaway CA and certificates of `[server.tls] generate`, for the toy server.
    pub pki: Option<Pki>,
}

/// Prepares `plan` against `target`.
pub async fn prepare(plan: &RunPlan, target: Option<&TargetChoice>) -> Result<Prepared, ResolveError> {
    let RunPlan::Builtin(plan) = plan else { return Ok(Prepared::default()) };
    let (host, external) = match target {
        Some(TargetChoice::External { authority, .. }) => {
            (authority.rsplit_once(':').map_or(authority.as_str(), |(host, _)| host), Some(authority))
        }
        _ => (SPAWNED_HOST, None),
    };
    let pki = match (&plan.server.tls, external) {
        (Some(ServerTlsPlan::Generated { client_auth }), None) => {
            Some(Pki::generate(*client_auth).map_err(|e| ResolveError {
                origin: "server.tls.generate".to_owned(),
                reason: format!("cannot make the throwaway CA: {e}"),
            })?)
        }
        _ => None,
    };
    let tls = plan.client.tls.as_ref().map(|client| tls::client(client, host, pki.as_ref())).transpose()?;
    let Some(spec) = &plan.call else {
        return Ok(Prepared { method: Method::Echo(plan.load.request.clone()), tls, pki });
    };
    let call = match external {
        _ if !spec.protos.is_empty() => call::from_protos(spec)?,
        Some(authority) => {
            let unreachable = |reason: String| ResolveError {
                origin: "--target".to_owned(),
                reason: format!("{authority}: cannot reach the server to ask its reflection service: {reason}"),
            };
            let endpoint = Endpoint::from_shared(format!("http://{authority}"))
                .map_err(|e| unreachable(e.to_string()))?
                .connect_timeout(REFLECTION_CONNECT_TIMEOUT);
            let channel = crate::target::connect(&endpoint, tls.as_ref()).await.map_err(|e| unreachable(said(&e)))?;
            tokio::time::timeout(REFLECTION_TIMEOUT, call::from_reflection(spec, channel)).await.map_err(|_| {
                ResolveError {
                    origin: spec.origins.method.clone(),
                    reason: format!(
                        "{authority}: the server's reflection service did not answer within {} s",
                        REFLECTION_TIMEOUT.as_secs()
                    ),
                }
            })??
        }
        None => call::from_toy_server(spec)?,
    };
    Ok(Prepared { method: Method::Call(Arc::new(call)), tls, pki })
}

/// Every reason along `error`'s chain, as one line.
fn said(error: &(dyn std::error::Error + 'static)) -> String {
    crate::load::errors::chain(error).map(ToString::to_string).collect::<Vec<_>>().join(": ")
}
