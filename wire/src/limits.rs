//! What one client may make the toy server hold, as the server takes it and
//! as a scenario or a command line writes it.

use std::time::Duration;

/// What one client may make the server hold. `None` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection.
    pub max_concurrent_streams: Option<u32>,
    /// Streams open at once over all connections. Beyond it, a connection may open a new stream
    /// only while it holds less than its fair share (this bound over the connections with a
    /// stream open); otherwise the stream is refused (reset) before anything is spent on it.
    pub max_concurrent_streams_total: Option<u32>,
    /// Connections open at once; beyond it, a new connection is closed as soon as it is accepted.
    pub max_connections: Option<u32>,
    /// A request must have arrived in full (END_STREAM) this long after its headers, or its stream is reset.
    pub request_timeout: Option<Duration>,
    /// Requests still arriving, over all connections; beyond it, the oldest one of the connection holding the most is reset (a client with one slow request keeps it).
    pub max_incomplete_requests: Option<u32>,
    /// A response whose next bytes wait this long behind a closed flow-control window is reset.
    pub unread_response_timeout: Option<Duration>,
    /// Response bytes one connection may have waiting for flow-control window; beyond it, the
    /// connection's oldest waiting response is reset. Each waiting response counts
    /// [`STREAM_BYTES`] more, for the stream that holds it.
    pub max_unread_response_bytes: Option<u64>,
    /// The same bound over all connections.
    pub max_unread_response_bytes_total: Option<u64>,
    /// Gather a request message as its bytes arrive and hand it on whole; `false` hands the bytes
    /// on at once, and tonic reserves the length the message's prefix declares before its bytes come.
    pub gather_messages: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: Some(100),
            max_concurrent_streams_total: Some(1_000),
            max_connections: None,
            request_timeout: Some(Duration::from_secs(5)),
            max_incomplete_requests: Some(1_000),
            unread_response_timeout: Some(Duration::from_secs(10)),
            max_unread_response_bytes: Some(16 << 20),
            max_unread_response_bytes_total: Some(64 << 20),
            gather_messages: true,
        }
    }
}

impl Limits {
    /// Every limit off, as tonic and hyper serve by default.
    pub fn unlimited() -> Self {
        Self {
            max_concurrent_streams: None,
            max_concurrent_streams_total: None,
            max_connections: None,
            request_timeout: None,
            max_incomplete_requests: None,
            unread_response_timeout: None,
            max_unread_response_bytes: None,
            max_unread_response_bytes_total: None,
            gather_messages: false,
        }
    }
}

/// A limit as written on the command line: its value, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting<T>(pub Option<T>);

/// A value a [`Setting`] holds, read and written as the command line has it.
pub trait SettingValue: Sized {
    fn parse(text: &str) -> Result<Self, String>;
    fn write(&self) -> String;
}

impl SettingValue for Duration {
    fn parse(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text).map_err(|error| format!("{text:?} is not a duration like \"5s\" ({error})"))
    }
    fn write(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

macro_rules! counted_setting {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                match text.parse::<$ty>() {
                    Ok(0) => Err("0 would refuse everything; write `off` for no limit".to_owned()),
                    Ok(value) => Ok(value),
                    Err(_) => Err(format!("{text:?} is not a whole number")),
                }
            }
            fn write(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
counted_setting!(u32, u64);

impl<T> Setting<T> {
    /// The value a setting chose, or `default` when it was not given.
    pub fn or_default(given: Option<Self>, default: Option<T>) -> Option<T> {
        given.map_or(default, |setting| setting.0)
    }
}

impl<T: SettingValue> std::str::FromStr for Setting<T> {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "off" => Ok(Setting(None)),
            text => T::parse(text).map(|value| Setting(Some(value))),
        }
    }
}

impl<T: SettingValue> std::fmt::Display for Setting<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(value) => f.write_str(&value.write()),
            None => f.write_str("off"),
        }
    }
}

impl Limits {
    /// Each limit's flag with its value as the command line writes it.
    fn flags(&self) -> [(&'static str, String); 8] {
        [
            ("--max-concurrent-streams", Setting(self.max_concurrent_streams).to_string()),
            ("--max-concurrent-streams-total", Setting(self.max_concurrent_streams_total).to_string()),
            ("--max-connections", Setting(self.max_connections).to_string()),
            ("--request-timeout", Setting(self.request_timeout).to_string()),
            ("--max-incomplete-requests", Setting(self.max_incomplete_requests).to_string()),
            ("--unread-response-timeout", Setting(self.unread_response_timeout).to_string()),
            ("--max-unread-response-bytes", Setting(self.max_unread_response_bytes).to_string()),
            ("--max-unread-response-bytes-total", Setting(self.max_unread_response_bytes_total).to_string()),
        ]
    }

    /// The `leaklab-server` flags that set these limits where they differ from the defaults.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = (self.flags().into_iter())
            .zip(Limits::default().flags())
            .filter(|((_, value), (_, default))| value != default)
            .flat_map(|((flag, value), _)| [flag.to_owned(), value])
            .collect();
        if !self.gather_messages {
            args.push("--trust-length-prefix".to_owned());
        }
        args
    }
}
