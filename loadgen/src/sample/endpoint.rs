//! A server's Prometheus metrics endpoint (`--server-metrics URL`), scraped
//! at every sample: the memory of a server on any machine, in the names
//! Prometheus clients use (`process_resident_memory_bytes`, `process_open_fds`,
//! `go_goroutines`…).
//!
//! The scrape is a plain HTTP/1.1 GET on its own connection, as Prometheus
//! itself makes one; the body is the text exposition format (see
//! [`leaklab_probe::exposition`]). A metric with several label sets counts as
//! their sum.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use leaklab_probe::exposition::{self, ParseError, names};
use leaklab_probe::{JemallocStats, ProcessSnapshot};

/// Recorded beside the process figures whenever the endpoint has them (a Go server's).
const RECORDED_WHEN_PRESENT: [&str; 2] = ["go_memstats_heap_inuse_bytes", "go_goroutines"];

/// The longest a scrape may take before the sample goes without the server's figures.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// A body larger than this is not a metrics page.
const MAX_BODY: usize = 16 << 20;

/// Why the endpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("{url}: {reason}")]
    Url { url: String, reason: String },
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
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
    /// Its pid and connections are not in any standard metric.
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
            fds: self.get(names::OPEN_FDS),
            threads: self.get(names::THREADS).or_else(|| self.get(names::GO_THREADS)),
            jemalloc,
            connections: None,
        })
    }
}

/// A metrics endpoint, checked once when opened.
#[derive(Debug, Clone)]
pub struct MetricsEndpoint {
    url: String,
    host: String,
    path: String,
    addrs: Vec<SocketAddr>,
    /// Metrics kept in every sample beside the process figures.
    recorded: Vec<String>,
}

impl MetricsEndpoint {
    /// Opens `url` (`http://host:port/path`) and scrapes it once: it must answer in the text format, with
    /// `process_resident_memory_bytes` when `judged_on` (the endpoint is how the server is measured),
    /// and with every metric of `named`.
    pub fn open(url: &str, named: &[String], judged_on: bool) -> Result<Self, ScrapeError> {
        let bad = |reason: &str| ScrapeError::Url { url: url.to_owned(), reason: reason.to_owned() };
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!("{scheme}:// is not supported: serve the metrics over http://")));
            }
            None => return Err(bad("expected http://HOST:PORT/PATH, like http://127.0.0.1:9090/metrics")),
        };
        let (host, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/metrics"),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let with_port = if host.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addrs: Vec<SocketAddr> =
            with_port.to_socket_addrs().map_err(|source| ScrapeError::Io { url: url.to_owned(), source })?.collect();
        let mut endpoint =
            Self { url: url.to_owned(), host: host.to_owned(), path: path.to_owned(), addrs, recorded: Vec::new() };
        let first = endpoint.scrape()?;
        let missing = |name: &str| ScrapeError::Missing {
            url: url.to_owned(),
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
        &self.url
    }

    /// The recorded metrics of `scrape`, by name.
    pub fn recorded(&self, scrape: &Scrape) -> BTreeMap<String, f64> {
        self.recorded.iter().filter_map(|name| Some((name.clone(), *scrape.totals.get(name)?))).collect()
    }

    /// Scrapes the endpoint now.
    pub fn scrape(&self) -> Result<Scrape, ScrapeError> {
        let io = |source: std::io::Error| ScrapeError::Io { url: self.url.clone(), source };
        let mut stream = TcpStream::connect_timeout(
            self.addrs.first().ok_or_else(|| io(std::io::Error::other("the host resolved to no address")))?,
            SCRAPE_TIMEOUT,
        )
        .map_err(io)?;
        stream.set_read_timeout(Some(SCRAPE_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(SCRAPE_TIMEOUT)).map_err(io)?;
        // One write: a server may answer on the first segment it reads, and a request in pieces would race that.
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: leaklab\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\
             Connection: close\r\n\r\n",
            self.path, self.host
        );
        stream.write_all(request.as_bytes()).map_err(io)?;
        let mut response = Vec::new();
        stream.take(MAX_BODY as u64 + 1).read_to_end(&mut response).map_err(io)?;
        let text = body(&response).map_err(|reason| ScrapeError::Http { url: self.url.clone(), reason })?;
        let samples =
            exposition::parse(&text).map_err(|source| ScrapeError::Parse { url: self.url.clone(), source })?;
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

/// The body of a 200 response, de-chunked; else what came instead.
fn body(response: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(response);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no HTTP/1.1 response: is this the metrics endpoint's port?".to_owned())?;
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answered {:?}, not 200 OK", status.chars().take(80).collect::<String>()));
    }
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked")
        })
    });
    if !chunked {
        return Ok(rest.to_owned());
    }
    let mut out = String::new();
    let mut rest = rest;
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or_else(|| "a chunk without its size".to_owned())?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| format!("chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = after.get(..size).ok_or_else(|| "a chunk cut short".to_owned())?;
        out.push_str(chunk);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `responses` in turn, one per connection, on a loopback port.
    fn serve(responses: Vec<String>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for response in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = stream.write_all(response.as_bytes());
            }
        });
        format!("http://{addr}/metrics")
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
        assert!(matches!(error, ScrapeError::Io { .. }) && error.to_string().starts_with(&url), "{error}");
    }
}
