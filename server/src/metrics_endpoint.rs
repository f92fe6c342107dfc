//! `--metrics-listen`: the server's figures as a Prometheus text endpoint at
//! `/metrics`, so that any scraper (Prometheus, or leaklab's `--server-metrics`
//! against a toy server it did not start) reads them.
//!
//! Memory and descriptors carry Prometheus's standard process-collector names;
//! jemalloc's figures, requests, connections and the connection policy's
//! actions have no standard name and are `jemalloc_*` and `leaklab_server_*`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use leaklab_probe::SnapshotReader;
use leaklab_probe::control::ServerStats;
use leaklab_probe::exposition::{Exposition, Kind, names};
use tokio::net::TcpListener;

use crate::ServerMetrics;

/// The exposition of `stats`, with the server's TLS handshake failures.
pub fn render(stats: &ServerStats, tls_failures: u64) -> String {
    let process = &stats.process;
    let mut page = Exposition::default();
    page.metric(names::RESIDENT_MEMORY, Kind::Gauge, "Resident memory size in bytes.", process.rss_bytes as f64);
    if let Some(fds) = process.fds {
        page.metric(names::OPEN_FDS, Kind::Gauge, "Number of open file descriptors.", fds as f64);
    }
    if let Some(threads) = process.threads {
        page.metric(names::THREADS, Kind::Gauge, "Number of OS threads in the process.", threads as f64);
    }
    if let Some(j) = process.jemalloc {
        let values = [j.allocated_bytes, j.active_bytes, j.resident_bytes, j.mapped_bytes, j.retained_bytes];
        let helps = [
            "Bytes the application holds (jemalloc stats.allocated).",
            "Bytes in active pages (jemalloc stats.active).",
            "Bytes in resident pages jemalloc maps, metadata included (jemalloc stats.resident).",
            "Bytes in active extents jemalloc mapped (jemalloc stats.mapped).",
            "Bytes of virtual memory jemalloc kept instead of returning it (jemalloc stats.retained).",
        ];
        for ((name, help), value) in names::JEMALLOC.iter().zip(helps).zip(values) {
            page.metric(name, Kind::Gauge, help, value as f64);
        }
    }
    if let Some(connections) = process.connections {
        page.metric(names::CONNECTIONS_OPEN, Kind::Gauge, "TCP connections open.", connections.open as f64);
        for (name, value, help) in [
            (names::CONNECTIONS_OPENED, connections.opened, "TCP connections accepted."),
            (names::CONNECTIONS_CLOSED, connections.closed, "TCP connections closed."),
        ] {
            if let Some(value) = value {
                page.metric(name, Kind::Counter, help, value as f64);
            }
        }
    }
    if let Some(streams) = process.streams {
        page.metric(names::STREAMS_OPEN, Kind::Gauge, "RPCs in flight, server streams included.", streams as f64);
    }
    let mut requests: Vec<(&[(&str, &str)], f64)> = Vec::new();
    if let Some(served) = stats.requests_served {
        requests.push((&[("outcome", "ok")], served as f64));
    }
    if let Some(failed) = stats.requests_failed {
        requests.push((&[("outcome", "error")], failed as f64));
    }
    page.family("leaklab_server_requests_total", Kind::Counter, "RPCs answered, by outcome.", &requests);
    let l = &stats.lifecycle;
    page.family(
        "leaklab_server_goaways_total",
        Kind::Counter,
        "GOAWAYs the connection policy sent, by reason.",
        &[
            (&[("reason", "max_idle")], l.goaway_max_idle as f64),
            (&[("reason", "max_age")], l.goaway_max_age as f64),
            (&[("reason", "too_many_pings")], l.goaway_too_many_pings as f64),
            (&[("reason", "protocol_error")], l.goaway_protocol_error as f64),
            (&[("reason", "limit_exceeded")], l.goaway_limit_exceeded as f64),
        ],
    );
    page.family(
        "leaklab_server_limit_hits_total",
        Kind::Counter,
        "Streams and connections the server's limits ended, by limit.",
        &[
            (&[("limit", "incomplete_request")], l.streams_reset_incomplete as f64),
            (&[("limit", "unread_response")], l.responses_reset_unread as f64),
            (&[("limit", "max_connections")], l.connections_refused as f64),
            (&[("limit", "max_concurrent_streams_total")], l.streams_refused as f64),
        ],
    );
    page.metric("leaklab_server_tls_failures_total", Kind::Counter, "TLS handshakes that failed.", tls_failures as f64);
    page.finish()
}

/// Answers `GET /metrics` on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, metrics: ServerMetrics) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: the gRPC listener reports it; the endpoint waits its turn.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = answer(&request, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn answer(request: &Request<Incoming>, metrics: &ServerMetrics) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    };
    if request.method() != Method::GET || request.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "leaklab-server serves GET /metrics\n".to_owned());
    }
    match metrics.stats(&SnapshotReader::new(metrics.connections.clone()).with_streams(metrics.streams.clone())) {
        Ok(stats) => {
            let mut response = reply(StatusCode::OK, render(&stats, metrics.tls_failures()));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8".parse().expect("a valid header"),
            );
            response
        }
        Err(error) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot measure myself: {error}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_probe::exposition::{parse, totals};

    #[test]
    fn the_page_reads_back_under_the_standard_names() {
        let metrics = ServerMetrics::default();
        let _open = metrics.connections.track(());
        let stats = metrics.stats(&SnapshotReader::new(metrics.connections.clone())).unwrap();
        let page = render(&stats, 2);
        let totals = totals(&parse(&page).unwrap());
        assert_eq!(totals[names::RESIDENT_MEMORY], stats.process.rss_bytes as f64);
        assert_eq!(totals[names::OPEN_FDS], stats.process.fds.unwrap() as f64);
        assert_eq!(totals["leaklab_server_connections_open"], 1.0);
        assert_eq!(totals["leaklab_server_requests_total"], 0.0);
        assert_eq!(totals["leaklab_server_tls_failures_total"], 2.0);
        assert_eq!(totals.contains_key(names::JEMALLOC[0]), stats.process.jemalloc.is_some());
    }
}
