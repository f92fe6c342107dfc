//! Fetching a Go process's pprof profiles at a run's two checkpoints (see [`crate::heap::profiles`]): the
//! client's of a foreign run, a `--target` server's with `--server-pprof`.

use std::path::Path;
use std::time::Duration;

use crate::heap::{ProfileMoment, profiles};
use crate::http::HttpUrl;
use leaklab_verdict::Side;

/// A heap profile asks for a garbage collection first, which takes a while in a large heap.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Fetches both profiles of `process` from `base` (`http://HOST:PORT/debug/pprof`) into `dir`; what
/// could not be fetched, as one line per profile.
pub fn fetch(base: &str, dir: &Path, process: Side, moment: ProfileMoment) -> Vec<String> {
    // `…/debug/pprof/`, as a browser shows the index, would ask for `…/pprof//heap`: a redirect.
    let url = match HttpUrl::parse(base.trim_end_matches('/'), "/debug/pprof", "http://127.0.0.1:6060/debug/pprof") {
        Ok(url) => url,
        Err(error) => return vec![error.to_string()],
    };
    let mut errors = Vec::new();
    for (kind, path) in profiles::KINDS {
        let fetched = url.get(path, "application/octet-stream", FETCH_TIMEOUT).map_err(|e| e.to_string());
        let checked = fetched.and_then(|bytes| match crate::heap::pprof::Profile::decode(&bytes) {
            Ok(_) => Ok(bytes),
            Err(error) => Err(format!("{}{path}: {error:#}", url.as_str())),
        });
        match checked {
            Ok(bytes) => {
                let file = dir.join(profiles::file_name(process, moment, kind));
                if let Err(error) = write_whole(&file, &bytes) {
                    errors.push(format!("{}: {error}", file.display()));
                }
            }
            Err(error) => errors.push(error),
        }
    }
    errors
}

/// Writes `bytes` to `path` whole or not at all (a sibling file renamed over it): a profile that fails to
/// be written never replaces a good one taken at an earlier checkpoint.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    std::fs::write(&part, bytes)?;
    std::fs::rename(&part, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_url_that_is_not_a_profile_is_named_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::http::tests::serve(
            vec![crate::http::tests::ok(b"<html>"), b"HTTP/1.1 404 Not Found\r\n\r\n".to_vec()],
            "/debug/pprof",
        );
        let errors = fetch(&format!("{url}/"), dir.path(), Side::Client, ProfileMoment::Warmup);
        assert_eq!(errors.len(), 2, "{errors:?}");
        // The goroutine profile is asked for first (see profiles::KINDS).
        assert!(errors[0].starts_with(&format!("{url}/goroutine: not a pprof profile")), "{errors:?}");
        assert!(errors[1].contains("404 Not Found"), "{errors:?}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing kept");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let errors =
            fetch(&format!("http://127.0.0.1:{port}/debug/pprof"), dir.path(), Side::Server, ProfileMoment::End);
        assert!(errors.iter().all(|e| e.contains("refused")), "{errors:?}");
    }
}
