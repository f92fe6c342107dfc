//! `--metrics-listen`: the latest sample of both processes as a Prometheus
//! text endpoint at `/metrics`, while a run, a watch, a comparison or a demo
//! goes on, so that a long soak can be watched in Grafana.
//!
//! The sampler posts every sample to a [`LiveBoard`]; a comparison or a demo
//! posts each child run's samples as they reach its `samples.jsonl`. The
//! endpoint answers on its own thread, like the sampler, so a busy load
//! cannot delay a scrape. Memory and descriptors carry Prometheus's
//! process-collector names with a `process` label (`client`, `server`);
//! jemalloc's figures carry the names the toy server's own endpoint uses;
//! the rest are `leaklab_*`. Every series has the `scenario` label.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leaklab_probe::ProcessSnapshot;
use leaklab_probe::exposition::{Exposition, Kind, names};

use leaklab_engine::sample::Sample;

/// The latest sample and the scenario it belongs to, shared between the sampler and the endpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct LiveBoard {
    latest: Arc<Mutex<Latest>>,
}

#[derive(Debug, Default)]
struct Latest {
    scenario: String,
    sample: Option<Sample>,
    /// Samples posted since the endpoint started, over every run.
    posted: u64,
}

impl LiveBoard {
    /// A board served at `http://ADDR/metrics` from now on, its address said on stderr; an error names the flag.
    pub(crate) fn serve(addr: SocketAddr) -> anyhow::Result<LiveBoard> {
        let board = LiveBoard::default();
        let bound = serve(addr, board.clone()).map_err(|error| anyhow::anyhow!("--metrics-listen {addr}: {error}"))?;
        eprintln!("metrics: http://{bound}/metrics");
        Ok(board)
    }

    /// `sample` is now the latest of `scenario`.
    pub(crate) fn post(&self, scenario: &str, sample: &Sample) {
        let mut latest = self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if latest.scenario != scenario {
            latest.scenario = scenario.to_owned();
        }
        latest.sample = Some(sample.clone());
        latest.posted += 1;
    }

    /// The exposition of the latest sample.
    pub(crate) fn render(&self) -> String {
        let latest = self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        render(&latest.scenario, latest.sample.as_ref(), latest.posted)
    }
}

/// The exposition of `sample` (none before the first), labelled with `scenario`.
fn render(scenario: &str, sample: Option<&Sample>, posted: u64) -> String {
    let mut page = Exposition::default();
    page.metric("leaklab_samples_total", Kind::Counter, "Samples taken since this endpoint started.", posted as f64);
    let Some(sample) = sample else { return page.finish() };
    let labels = [("scenario", scenario)];
    let one = |value: f64| [(&labels[..], value)];
    page.family("leaklab_elapsed_seconds", Kind::Gauge, "Seconds since the run started.", &one(sample.elapsed_s));
    let phase = serde_json::to_value(sample.phase).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    page.family(
        "leaklab_run_info",
        Kind::Gauge,
        "The run in progress: its scenario and phase.",
        &[(&[("scenario", scenario), ("phase", phase.as_str())], 1.0)],
    );
    page.family(
        "leaklab_requests_total",
        Kind::Counter,
        "Requests the client completed, by outcome.",
        &[
            (&[("scenario", scenario), ("outcome", "ok")], sample.requests_ok as f64),
            (&[("scenario", scenario), ("outcome", "error")], sample.requests_failed as f64),
        ],
    );
    let server = sample.server.map(|s| s.process);
    let sides: Vec<(&str, &ProcessSnapshot)> = [("client", Some(&sample.client)), ("server", server.as_ref())]
        .into_iter()
        .filter_map(|(n, p)| Some((n, p?)))
        .collect();
    let each = |figure: Figure| -> Vec<(Vec<(&str, &str)>, f64)> {
        sides
            .iter()
            .filter_map(|(name, process)| Some((vec![("scenario", scenario), ("process", *name)], figure(process)?)))
            .collect()
    };
    let families: [(&str, &str, Figure); 5] = [
        (names::RESIDENT_MEMORY, "Resident memory size in bytes.", |p| Some(p.rss_bytes as f64)),
        (names::OPEN_FDS, "Number of open file descriptors.", |p| p.fds.map(|v| v as f64)),
        (names::THREADS, "Number of OS threads in the process.", |p| p.threads.map(|v| v as f64)),
        ("leaklab_connections_open", "TCP connections open.", |p| p.open_connections().map(|v| v as f64)),
        ("leaklab_streams_open", "gRPC streams open.", |p| p.streams.map(|v| v as f64)),
    ];
    for (name, help, figure) in families {
        family(&mut page, name, Kind::Gauge, help, &each(figure));
    }
    let jemalloc: [Figure; 5] = [
        |p| p.jemalloc.map(|j| j.allocated_bytes as f64),
        |p| p.jemalloc.map(|j| j.active_bytes as f64),
        |p| p.jemalloc.map(|j| j.resident_bytes as f64),
        |p| p.jemalloc.map(|j| j.mapped_bytes as f64),
        |p| p.jemalloc.map(|j| j.retained_bytes as f64),
    ];
    for (name, figure) in names::JEMALLOC.iter().zip(jemalloc) {
        family(&mut page, name, Kind::Gauge, "jemalloc's byte count of the same name.", &each(figure));
    }
    if let Some(time_wait) = sample.network.time_wait {
        page.family(
            "leaklab_time_wait_sockets",
            Kind::Gauge,
            "TCP sockets in TIME_WAIT towards the server.",
            &one(time_wait as f64),
        );
    }
    let counters: Vec<(Vec<(&str, &str)>, f64)> = sample
        .counters
        .iter()
        .map(|(name, value)| (vec![("scenario", scenario), ("counter", name.as_str())], *value as f64))
        .collect();
    family(
        &mut page,
        "leaklab_client_counter",
        Kind::Gauge,
        "Counters the client reports (goroutines, channelz channels, ...).",
        &counters,
    );
    let scraped: Vec<(Vec<(&str, &str)>, f64)> = sample
        .server_metrics
        .iter()
        .map(|(name, value)| (vec![("scenario", scenario), ("metric", name.as_str())], *value))
        .collect();
    family(
        &mut page,
        "leaklab_server_metric",
        Kind::Gauge,
        "Metrics scraped from the server's --server-metrics endpoint.",
        &scraped,
    );
    page.finish()
}

/// One figure of a process, when it has it.
type Figure = fn(&ProcessSnapshot) -> Option<f64>;

/// A family of samples whose label sets were built at run time; none is no family.
fn family(page: &mut Exposition, name: &str, kind: Kind, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
    if samples.is_empty() {
        return;
    }
    let borrowed: Vec<(&[(&str, &str)], f64)> =
        samples.iter().map(|(labels, value)| (labels.as_slice(), *value)).collect();
    page.family(name, kind, help, &borrowed);
}

/// `--metrics-listen`'s value: `HOST:PORT`, or a bare `PORT` on loopback.
pub(crate) fn listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.to_socket_addrs()
        .map_err(|error| format!("{text:?}: {error}; expected PORT or HOST:PORT, like 127.0.0.1:9464"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// Serves `board` at `http://<addr>/metrics` on its own thread until the process ends; the address bound.
pub(crate) fn serve(addr: SocketAddr, board: LiveBoard) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        // One scrape at a time: a scraper that stalls holds the next one up for at most answer's timeouts.
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &board);
        }
    })?;
    Ok(bound)
}

/// One HTTP/1.1 request on `stream`, answered and closed.
fn answer(stream: TcpStream, board: &LiveBoard) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers, up to the blank line; a scraper's are a few hundred bytes.
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", board.render()),
        _ => ("404 Not Found", "text/plain; charset=utf-8", "leaklab serves GET /metrics\n".to_owned()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;
    use leaklab_probe::exposition::parse;

    #[test]
    fn the_latest_sample_reads_back_under_standard_names() {
        let (_, samples) = scripted_report();
        let board = LiveBoard::default();
        assert_eq!(parse(&board.render()).unwrap().len(), 1, "only the sample count before the first sample");
        board.post("leak", &samples[0]);
        let last = samples.last().unwrap();
        board.post("leak", last);
        let page = parse(&board.render()).unwrap();
        let value = |name: &str, process: &str| {
            page.iter()
                .find(|s| s.name == name && s.labels.contains(&("process".to_owned(), process.to_owned())))
                .map(|s| s.value)
        };
        assert_eq!(value(names::RESIDENT_MEMORY, "client"), Some(last.client.rss_bytes as f64));
        let server = last.server.map(|s| s.process.rss_bytes as f64);
        assert_eq!(value(names::RESIDENT_MEMORY, "server"), server);
        assert!(page.iter().all(|s| s.name == "leaklab_samples_total" || s.labels[0] == ("scenario".to_owned(), "leak".to_owned())));
        assert_eq!(page.iter().find(|s| s.name == "leaklab_samples_total").unwrap().value, 2.0);
    }

    #[test]
    fn a_bare_port_listens_on_loopback_and_a_scrape_is_answered() {
        assert_eq!(listen_address("9464").unwrap(), SocketAddr::from(([127, 0, 0, 1], 9464)));
        assert!(listen_address("nowhere").unwrap_err().contains("expected PORT or HOST:PORT"));
        let board = LiveBoard::default();
        let bound = serve(listen_address("127.0.0.1:0").unwrap(), board).unwrap();
        let url = leaklab_engine::http::HttpUrl::parse(&format!("http://{bound}/metrics"), "/metrics", "").unwrap();
        let body = url.get("", "text/plain", Duration::from_secs(5)).unwrap();
        assert!(String::from_utf8(body).unwrap().contains("leaklab_samples_total 0"));
    }
}
