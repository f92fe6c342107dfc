//! A server's Prometheus metrics endpoint (`--server-metrics URL`), scraped
//! at every sample: the memory of a server on any machine, in the names
//! Prometheus clients use (`process_resident_memory_bytes`, `process_open_fds`,
//! `go_goroutines`…).
//!
//! The scrape is a plain HTTP/1.1 GET on its own connection ([`crate::http`]),
//! as Prometheus itself makes one; the body is the text exposition format (see
//! [`leaklab_probe::exposition`]). A metric with several label sets counts as
//! their sum.

use std::collections::BTreeMap;
use std::time::Duration;

use leaklab_probe::exposition::{self, ParseError, names};
use leaklab_probe::{Connections, JemallocStats, ProcessSnapshot};

use crate::http::{HttpError, HttpUrl};

/// Recorded beside the process figures whenever the endpoint has them (a Go server's).
const RECORDED_WHEN_PRESENT: [&str; 2] = ["go_memstats_heap_inuse_bytes", "go_goroutines"];

/// The longest a scrape may take before the sample goes without the server's figures.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// What a scrape asks for, as Prometheus does.
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// Why the endpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url}: not the Prometheus text format: {source}")]
    Parse { url: String, source: ParseError },
    #[error("{url} has no metric {name} (it has {available})")]
    Missing { url: String, name: String, available: String },
}

/// One scrape: each metric's value, summed over its label sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub totals: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, name: &str) -> Option<u64> {
        self.totals.get(name).filter(|value| value.is_finite() && **value >= 0.0).map(|value| *value as u64)
    }

    /// The server process as the endpoint describes it; `None` without its resident memory.
    /// Its pid is in no metric, and its connections only in the toy server's.
    pub fn process(&self) -> Option<ProcessSnapshot> {
        // The toy server's own endpoint has its allocator's figures: then it is judged on them, as over its side channel.
        let jemalloc = match names::JEMALLOC.map(|name| self.get(name)) {
            [Some(allocated), Some(active), Some(resident), Some(mapped), Some(retained)] => Some(JemallocStats {
                allocated_bytes: allocated,
                active_bytes: active,
                resident_bytes: resident,
                mapped_bytes: mapped,
                retained_bytes: retained,
            }),
            _ => None,
        };
        Some(ProcessSnapshot {
            pid: None,
            rss_bytes: self.get(names::RESIDENT_MEMORY)?,
            rss_parts: None,
            fds: self.get(names::OPEN_FDS),
            threads: self.get(names::THREADS).or_else(|| self.get(names::GO_THREADS)),
            jemalloc,
            // The toy server's endpoint counts its connections and streams; no standard metric does.
            connections: self.get(names::CONNECTIONS_OPEN).map(|open| Connections {
                open,
                opened: self.get(names::CONNECTIONS_OPENED),
                closed: self.get(names::CONNECTIONS_CLOSED),
            }),
            streams: self.get(names::STREAMS_OPEN),
            runtime_heap: None,
        })
    }
}

/// A metrics endpoint, checked once when opened.
#[derive(Debug, Clone)]
pub struct MetricsEndpoint {
    url: HttpUrl,
    /// Metrics kept in every sample beside the process figures.
    recorded: Vec<String>,
}

impl MetricsEndpoint {
    /// Opens `url` (`http://host:port/path`) and scrapes it once: it must answer in the text format, with
    /// `process_resident_memory_bytes` when `judged_on` (the endpoint is how the server is measured),
    /// and with every metric of `named`.
    pub fn open(url: &str, named: &[String], judged_on: bool) -> Result<Self, ScrapeError> {
        let url = HttpUrl::parse(url, "/metrics", "http://127.0.0.1:9090/metrics")?;
        let mut endpoint = Self { url, recorded: Vec::new() };
        let first = endpoint.scrape()?;
        let missing = |name: &str| ScrapeError::Missing {
            url: endpoint.url.as_str().to_owned(),
            name: name.to_owned(),
            available: available(&first),
        };
        if judged_on && first.process().is_none() {
            return Err(missing(names::RESIDENT_MEMORY));
        }
        if let Some(name) = named.iter().find(|name| !first.totals.contains_key(name.as_str())) {
            return Err(missing(name));
        }
        endpoint.recorded = RECORDED_WHEN_PRESENT
            .iter()
            .map(|name| (*name).to_owned())
            .filter(|name| first.totals.contains_key(name))
            .chain(named.iter().cloned())
            .fold(Vec::new(), |mut names, name| {
                if !names.contains(&name) {
                    names.push(name);
                }
                names
            });
        Ok(endpoint)
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The recorded metrics of `scrape`, by name.
    pub fn recorded(&self, scrape: &Scrape) -> BTreeMap<String, f64> {
        self.recorded.iter().filter_map(|name| Some((name.clone(), *scrape.totals.get(name)?))).collect()
    }

    /// Scrapes the endpoint now.
    pub fn scrape(&self) -> Result<Scrape, ScrapeError> {
        let body = self.url.get("", ACCEPT, SCRAPE_TIMEOUT)?;
        let samples = exposition::parse(&String::from_utf8_lossy(&body))
            .map_err(|source| ScrapeError::Parse { url: self.url().to_owned(), source })?;
        Ok(Scrape { totals: exposition::totals(&samples) })
    }
}

/// The first few metric names of a scrape, for an error that says what there is.
fn available(scrape: &Scrape) -> String {
    const SHOWN: usize = 12;
    let names: Vec<&str> = scrape.totals.keys().take(SHOWN).map(String::as_str).collect();
    match scrape.totals.len() {
        0 => "no metrics".to_owned(),
        n if n > SHOWN => format!("{n} metrics: {}, …", names.join(", ")),
        n => format!("{n} metrics: {}", names.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::tests::serve as serve_bytes;
    use std::net::TcpListener;

    fn serve(responses: Vec<String>) -> String {
        serve_bytes(responses.into_iter().map(String::into_bytes).collect(), "/metrics")
    }

    fn ok(body: &str) -> String {
        format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{body}")
    }

    #[test]
    fn a_go_servers_figures_become_its_process_and_recorded_metrics() {
        let page = "process_resident_memory_bytes 4.2e+07\nprocess_open_fds 9\ngo_threads 7\ngo_goroutines 31\n\
                    go_memstats_heap_inuse_bytes 1.5e+06\nmy_streams{kind=\"a\"} 2\nmy_streams{kind=\"b\"} 3\n";
        let url = serve(vec![ok(page), ok(page)]);
        let endpoint = MetricsEndpoint::open(&url, &["my_streams".to_owned()], true).unwrap();
        let scrape = endpoint.scrape().unwrap();
        let process = scrape.process().unwrap();
        assert_eq!((process.rss_bytes, process.fds, process.threads), (42_000_000, Some(9), Some(7)));
        assert_eq!((process.pid, process.connections, process.jemalloc), (None, None, None));
        let recorded = endpoint.recorded(&scrape);
        assert_eq!(
            recorded.keys().collect::<Vec<_>>(),
            ["go_goroutines", "go_memstats_heap_inuse_bytes", "my_streams"]
        );
        assert_eq!(recorded["my_streams"], 5.0);
    }

    #[test]
    fn a_chunked_answer_is_read_whole() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                       f\r\nprocess_residen\r\n15\r\nt_memory_bytes 1024\n\r\n0\r\n\r\n";
        let url = serve(vec![chunked.to_owned()]);
        let endpoint = MetricsEndpoint::open(&url, &[], true).unwrap();
        assert_eq!(endpoint.url(), url);
    }

    #[test]
    fn an_endpoint_that_cannot_judge_the_server_is_refused_with_its_reason() {
        let url = serve(vec![ok("python_info 1\nprocess_open_fds 3\n")]);
        let error = MetricsEndpoint::open(&url, &[], true).unwrap_err().to_string();
        assert!(error.contains("no metric process_resident_memory_bytes") && error.contains("python_info"), "{error}");

        let url = serve(vec![ok("process_resident_memory_bytes 1\n")]);
        let error = MetricsEndpoint::open(&url, &["grpc_streams".to_owned()], true).unwrap_err().to_string();
        assert!(error.contains("no metric grpc_streams"), "{error}");

        let url = serve(vec!["HTTP/1.1 404 Not Found\r\n\r\n".to_owned()]);
        let error = MetricsEndpoint::open(&url, &[], true).unwrap_err().to_string();
        assert!(error.contains("404 Not Found"), "{error}");

        let url = serve(vec![ok("<html><body>hello</body></html>\n")]);
        let error = MetricsEndpoint::open(&url, &[], true).unwrap_err().to_string();
        assert!(error.contains("not the Prometheus text format: line 1"), "{error}");

        let error = MetricsEndpoint::open("https://example.com/metrics", &[], true).unwrap_err().to_string();
        assert!(error.contains("https:// is not supported"), "{error}");
    }

    #[test]
    fn a_port_nobody_listens_on_is_an_io_error_naming_the_url() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/metrics");
        let error = MetricsEndpoint::open(&url, &[], true).unwrap_err();
        assert!(
            matches!(error, ScrapeError::Http(HttpError::Io { .. })) && error.to_string().starts_with(&url),
            "{error}"
        );
    }
}
