//! The method a built-in run calls, made callable before anything runs.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Endpoint;

use super::TargetChoice;
use crate::call::{self, ResolveError};
use crate::load::Method;
use crate::scenario::RunPlan;

/// How long reaching a `--target`'s reflection service may take.
const REFLECTION_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What each call of `plan` invokes: the toy server's `Echo` unless it has a `[call]`. A `[call]` is
/// described by its `.proto` files, else by a `--target`'s reflection service, else (the toy
/// server) by leaklab's own `echo.proto`. A [`ResolveError`] means nothing ran.
pub async fn method(plan: &RunPlan, target: Option<&TargetChoice>) -> Result<Method, ResolveError> {
    let RunPlan::Builtin(plan) = plan else { return Ok(Method::default()) };
    let Some(spec) = &plan.call else { return Ok(Method::Echo(plan.load.request.clone())) };
    let call = match target {
        _ if !spec.protos.is_empty() => call::from_protos(spec)?,
        Some(TargetChoice::External { authority }) => {
            let unreachable = |reason: String| ResolveError {
                origin: "--target".to_owned(),
                reason: format!("{authority}: cannot reach the server to ask its reflection service: {reason}"),
            };
            let endpoint = Endpoint::from_shared(format!("http://{authority}"))
                .map_err(|e| unreachable(e.to_string()))?
                .connect_timeout(REFLECTION_CONNECT_TIMEOUT);
            let channel = endpoint.connect().await.map_err(|e| unreachable(error_chain(&e)))?;
            call::from_reflection(spec, channel).await?
        }
        _ => call::from_toy_server(spec)?,
    };
    Ok(Method::Call(Arc::new(call)))
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
