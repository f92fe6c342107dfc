//! One plain HTTP/1.1 GET on its own connection, for the endpoints leaklab
//! reads beside a run: a server's Prometheus metrics (`--server-metrics`) and
//! a Go process's `net/http/pprof` profiles. Both are read from blocking
//! threads, and both are `http://`: a hand-written GET on std's `TcpStream`
//! serves them without a second runtime or TLS stack.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A body larger than this is not what leaklab asked for.
const MAX_BODY: u64 = 64 << 20;

/// Why a GET failed; each names the URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: {reason}")]
    Url { url: String, reason: String },
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
}

/// An `http://HOST:PORT/PATH` URL, resolved.
#[derive(Debug, Clone)]
pub struct HttpUrl {
    url: String,
    host: String,
    path: String,
    addrs: Vec<SocketAddr>,
}

impl HttpUrl {
    /// `url`, whose path is `default_path` when it has none.
    pub fn parse(url: &str, default_path: &str, example: &str) -> Result<HttpUrl, HttpError> {
        let bad = |reason: String| HttpError::Url { url: url.to_owned(), reason };
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => return Err(bad(format!("{scheme}:// is not supported: serve it over http://"))),
            None => return Err(bad(format!("expected http://HOST:PORT/PATH, like {example}"))),
        };
        let (host, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, default_path),
        };
        if host.is_empty() {
            return Err(bad("no host".to_owned()));
        }
        let with_port = if host.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addrs: Vec<SocketAddr> =
            with_port.to_socket_addrs().map_err(|source| HttpError::Io { url: url.to_owned(), source })?.collect();
        Ok(HttpUrl { url: url.to_owned(), host: host.to_owned(), path: path.to_owned(), addrs })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// GETs the URL's path followed by `suffix` (`""`, or `/heap?gc=1`); the body of a 200 answer.
    pub fn get(&self, suffix: &str, accept: &str, timeout: Duration) -> Result<Vec<u8>, HttpError> {
        let url = format!("{}{suffix}", self.url);
        let io = |source: std::io::Error| HttpError::Io { url: url.clone(), source };
        let addr = self.addrs.first().ok_or_else(|| io(std::io::Error::other("the host resolved to no address")))?;
        let mut stream = TcpStream::connect_timeout(addr, timeout).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        // One write: a server may answer on the first segment it reads, and a request in pieces would race that.
        let request = format!(
            "GET {}{suffix} HTTP/1.1\r\nHost: {}\r\nUser-Agent: leaklab\r\nAccept: {accept}\r\nConnection: close\r\n\r\n",
            self.path, self.host
        );
        stream.write_all(request.as_bytes()).map_err(io)?;
        // Read to the end, or to the Content-Length: some servers (Node's inspector) keep the connection
        // open whatever the request asked.
        let mut response = Vec::new();
        let mut buffer = [0u8; 16 << 10];
        while (response.len() as u64) <= MAX_BODY && !complete(&response) {
            match stream.read(&mut buffer).map_err(io)? {
                0 => break,
                read => response.extend_from_slice(&buffer[..read]),
            }
        }
        body(&response).map_err(|reason| HttpError::Http { url: url.clone(), reason })
    }
}

/// Whether `response` holds its head and the whole body its `Content-Length` announces.
fn complete(response: &[u8]) -> bool {
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&response[..split]);
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| response.len() - (split + 4) >= length)
}

/// The body of a 200 response, de-chunked; else what came instead.
fn body(response: &[u8]) -> Result<Vec<u8>, String> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "no HTTP/1.1 response: is this the endpoint's port?".to_owned())?;
    let head = String::from_utf8_lossy(&response[..split]);
    let mut rest = &response[split + 4..];
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
        return Ok(rest.to_vec());
    }
    let mut out = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| "a chunk without its size".to_owned())?;
        let size = String::from_utf8_lossy(&rest[..end]);
        let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| format!("chunk size {size:?}"))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).ok_or_else(|| "a chunk cut short".to_owned())?);
        rest = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `responses` in turn, one per connection, on a loopback port; the URL of `path` there.
    pub(crate) fn serve(responses: Vec<Vec<u8>>, path: &str) -> String {
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
                let _ = stream.write_all(&response);
            }
        });
        format!("http://{addr}{path}")
    }

    pub(crate) fn ok(body: &[u8]) -> Vec<u8> {
        [b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".as_slice(), body].concat()
    }

    #[test]
    fn a_chunked_binary_answer_is_read_whole() {
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\x1f\x8b\x00\r\n2\r\n\r\n\r\n0\r\n\r\n";
        let url = serve(vec![chunked.to_vec(), ok(&[0, 255, 13, 10])], "/x");
        let url = HttpUrl::parse(&url, "/", "").unwrap();
        assert_eq!(url.get("", "*/*", Duration::from_secs(5)).unwrap(), b"\x1f\x8b\x00\r\n");
        assert_eq!(url.get("", "*/*", Duration::from_secs(5)).unwrap(), [0, 255, 13, 10]);
    }

    #[test]
    fn an_answer_with_its_length_is_read_though_the_server_keeps_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/json/list", listener.local_addr().unwrap());
        let (done, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.read(&mut [0u8; 1024]);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n[42]");
            // Held open until the test is done, as Node's inspector holds it.
            let _ = wait.recv();
        });
        // A read to the end would wait out the timeout and fail.
        let body = HttpUrl::parse(&url, "/", "").unwrap().get("", "*/*", Duration::from_secs(60)).unwrap();
        assert_eq!(body, b"[42]");
        drop(done);
    }

    #[test]
    fn a_bad_url_or_answer_names_the_url_and_the_reason() {
        let error = HttpUrl::parse("https://example.com/metrics", "/", "").unwrap_err().to_string();
        assert!(error.contains("https:// is not supported"), "{error}");
        let error = HttpUrl::parse("localhost:9090", "/", "http://127.0.0.1:9090/metrics").unwrap_err().to_string();
        assert!(error.contains("like http://127.0.0.1:9090/metrics"), "{error}");
        let url = serve(vec![b"HTTP/1.1 404 Not Found\r\n\r\n".to_vec()], "/debug/pprof");
        let error = HttpUrl::parse(&url, "/", "").unwrap().get("/heap", "*/*", Duration::from_secs(5)).unwrap_err();
        assert!(error.to_string().starts_with(&format!("{url}/heap: answered \"HTTP/1.1 404 Not Found\"")), "{error}");
    }
}
