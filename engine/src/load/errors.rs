//! Failed requests, sorted into kinds a reader can act on.
//!
//! A kind is a short snake_case name: the gRPC status code (`unavailable`,
//! `deadline_exceeded`, …) or, when the failure came from the socket, the
//! operating-system reason (`connection_refused`, `too_many_open_files`,
//! `address_not_available`, …), the TLS handshake's (`tls_unknown_issuer`,
//! `tls_name_mismatch`, …), or the HTTP/2 frame the peer ended the
//! connection or stream with and its reason (`goaway_enhance_your_calm`,
//! `reset_refused_stream`, …), which say more than `unavailable` does.

use std::error::Error as StdError;
use std::io;

use tonic::{Code, Status};

use crate::tls::snake_case;

/// The kind of a call that ended with `status`.
pub fn status_kind(status: &Status) -> String {
    if let Some(kind) = io_kind(status).or_else(|| h2_kind(status)) {
        return kind;
    }
    code_name(status.code()).to_owned()
}

/// The kind of a channel that could not connect.
pub fn connect_kind(error: &tonic::transport::Error) -> String {
    io_kind(error).unwrap_or_else(|| "connect_failed".to_owned())
}

/// The kind of a call that outlived the request timeout.
pub const TIMEOUT_KIND: &str = "deadline_exceeded";

/// `error` and every error it was caused by, outermost first.
pub fn chain<'a>(error: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&current| current.source())
}

/// The socket's reason, the TLS handshake's or a TLS alert's, the first found along the chain.
fn io_kind(error: &(dyn StdError + 'static)) -> Option<String> {
    for current in chain(error) {
        if let Some(tls) = current.downcast_ref::<tokio_rustls::rustls::Error>() {
            return Some(crate::tls::failure_kind(tls));
        }
        if let Some(io_error) = current.downcast_ref::<io::Error>() {
            // tokio-rustls reports a failed handshake as an io::Error around rustls's reason.
            if let Some(tls) = io_error.get_ref().and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>())
            {
                return Some(crate::tls::failure_kind(tls));
            }
            return Some(alert_kind(io_error).unwrap_or_else(|| io_error_kind(io_error)));
        }
        if let Some(kind) = alert_kind(current) {
            return Some(kind);
        }
    }
    None
}

/// `goaway_<reason>` or `reset_<reason>` when an HTTP/2 GOAWAY or RST_STREAM
/// ended the call, with the reason as HTTP/2 names it (`ENHANCE_YOUR_CALM`…).
fn h2_kind(error: &(dyn StdError + 'static)) -> Option<String> {
    let h2 = chain(error).find_map(|current| current.downcast_ref::<h2::Error>())?;
    let reason = h2.reason()?;
    let frame = if h2.is_go_away() {
        "goaway"
    } else if h2.is_reset() {
        "reset"
    } else {
        "h2"
    };
    Some(format!("{frame}_{}", format!("{reason:?}").to_ascii_lowercase()))
}

/// h2 keeps an io::Error's kind and text but not the error inside it: a TLS alert read after the
/// handshake (where TLS 1.3 refuses a missing client certificate) survives only as rustls's text.
fn alert_kind(error: &dyn StdError) -> Option<String> {
    let alert = error.to_string().strip_prefix("received fatal alert: ")?.to_owned();
    Some(format!("tls_alert_{}", snake_case(&alert)))
}

fn io_error_kind(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => return "too_many_open_files".to_owned(),
        Some(libc::EADDRNOTAVAIL) => return "address_not_available".to_owned(),
        Some(libc::ECONNREFUSED) => return "connection_refused".to_owned(),
        Some(libc::ECONNRESET) => return "connection_reset".to_owned(),
        Some(libc::ETIMEDOUT) => return "connect_timed_out".to_owned(),
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => return "out_of_kernel_memory".to_owned(),
        _ => {}
    }
    format!("io_{}", snake_case(&format!("{:?}", error.kind())))
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http2_reason_names_the_failure() {
        let mut status = Status::unavailable("stream reset");
        status.set_source(std::sync::Arc::new(h2::Error::from(h2::Reason::REFUSED_STREAM)));
        // h2's public API builds only errors it raised itself ("h2_"); a received GOAWAY or
        // RST_STREAM takes the same path with "goaway_" or "reset_".
        assert_eq!(status_kind(&status), "h2_refused_stream");
        let mut calm = Status::unavailable("too many pings");
        calm.set_source(std::sync::Arc::new(h2::Error::from(h2::Reason::ENHANCE_YOUR_CALM)));
        assert_eq!(status_kind(&calm), "h2_enhance_your_calm");
    }

    #[test]
    fn a_tls_alert_known_only_by_its_text_is_still_named() {
        let status = Status::from_error(Box::new(io::Error::new(
            io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        )));
        assert_eq!(status_kind(&Status::unavailable(status.message().to_owned())), "unavailable");
        assert_eq!(status_kind(&status), "tls_alert_certificate_required");
    }

    #[test]
    fn status_codes_become_snake_case_kinds() {
        assert_eq!(status_kind(&Status::unavailable("x")), "unavailable");
        assert_eq!(status_kind(&Status::resource_exhausted("x")), "resource_exhausted");
    }

    #[test]
    fn os_errors_say_more_than_unavailable() {
        let status = Status::from_error(Box::new(io::Error::from_raw_os_error(libc::EMFILE)));
        assert_eq!(status_kind(&status), "too_many_open_files");
        assert_eq!(io_error_kind(&io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)), "address_not_available");
        assert_eq!(io_error_kind(&io::Error::from_raw_os_error(libc::ECONNREFUSED)), "connection_refused");
        assert_eq!(io_error_kind(&io::Error::new(io::ErrorKind::BrokenPipe, "x")), "io_broken_pipe");
    }
}
