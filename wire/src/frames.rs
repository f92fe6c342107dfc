//! An incremental reader of HTTP/2 frame headers on a raw byte stream.
//!
//! h2 answers every PING and gives no hook to police them, so the server
//! watches the bytes itself: [`FrameReader`] is fed whatever each socket read
//! or write returned, in pieces of any size, and reports each complete frame's
//! header (RFC 9113 §4.1). It keeps the first bytes of PING and GOAWAY
//! payloads, which is all the keepalive policy and the client's GOAWAY
//! observer need; every other payload is skipped without being copied.

use std::fmt;

/// The 24 bytes a client sends before its first frame (RFC 9113 §3.4).
pub const CLIENT_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types the policy looks at.
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
}

/// The ACK flag of a PING frame.
pub const FLAG_ACK: u8 = 0x1;

/// HTTP/2 error codes used in GOAWAY frames (RFC 9113 §7).
pub mod code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// The name of an HTTP/2 error code, as RFC 9113 spells it.
pub fn code_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES.get(code as usize).map_or_else(|| format!("0x{code:x}"), |name| (*name).to_owned())
}

const HEADER_LEN: usize = 9;
/// GOAWAY debug data beyond this is not kept (grpc-go's reasons are a few words).
const DEBUG_DATA_KEPT: usize = 256;

/// One frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length in bytes.
    pub length: u32,
    pub kind: u8,
    pub flags: u8,
    /// Stream identifier, reserved bit cleared.
    pub stream_id: u32,
}

impl FrameHeader {
    fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        Self {
            length: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]),
            kind: bytes[3],
            flags: bytes[4],
            stream_id: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    /// A PING the peer expects an answer to.
    pub fn is_ping_request(&self) -> bool {
        self.kind == kind::PING && self.flags & FLAG_ACK == 0
    }

    /// A frame that opens or continues a stream's response: what resets ping strikes.
    pub fn is_headers_or_data(&self) -> bool {
        matches!(self.kind, kind::HEADERS | kind::DATA)
    }
}

/// A complete frame: its header and, for PING and GOAWAY, the start of its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    /// PING: the 8 opaque bytes. GOAWAY: last stream id, error code and up to
    /// 256 bytes of debug data. Empty for every other kind.
    pub kept: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's error code and debug data (as text, lossily).
    pub fn goaway(&self) -> Option<GoAway> {
        if self.header.kind != kind::GOAWAY || self.kept.len() < 8 {
            return None;
        }
        let word =
            |at: usize| u32::from_be_bytes([self.kept[at], self.kept[at + 1], self.kept[at + 2], self.kept[at + 3]]);
        Some(GoAway {
            last_stream_id: word(0) & 0x7fff_ffff,
            code: word(4),
            debug_data: String::from_utf8_lossy(&self.kept[8..]).into_owned(),
        })
    }
}

/// A decoded GOAWAY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    pub last_stream_id: u32,
    pub code: u32,
    pub debug_data: String,
}

impl GoAway {
    /// `ENHANCE_YOUR_CALM "too_many_pings"`, or just the code name without debug data.
    pub fn reason(&self) -> String {
        if self.debug_data.is_empty() {
            code_name(self.code)
        } else {
            format!("{} {:?}", code_name(self.code), self.debug_data)
        }
    }
}

/// The bytes of a GOAWAY frame.
pub fn goaway_frame(last_stream_id: u32, code: u32, debug_data: &[u8]) -> Vec<u8> {
    let length = 8 + debug_data.len() as u32;
    let mut frame = Vec::with_capacity(HEADER_LEN + length as usize);
    frame.extend_from_slice(&length.to_be_bytes()[1..]);
    frame.extend_from_slice(&[kind::GOAWAY, 0]);
    frame.extend_from_slice(&0u32.to_be_bytes());
    frame.extend_from_slice(&(last_stream_id & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(debug_data);
    frame
}

/// Why a byte stream is not HTTP/2: the connection is closed with the code named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The first 24 bytes are not the client preface.
    BadPreface,
    /// A frame whose length its type forbids (a PING is 8 bytes, a GOAWAY at least 8).
    BadLength { kind: u8, length: u32 },
    /// A connection-level frame (PING, GOAWAY) on a stream.
    OnStream { kind: u8, stream_id: u32 },
}

impl FrameError {
    /// The GOAWAY error code this error calls for.
    pub fn code(&self) -> u32 {
        match self {
            FrameError::BadLength { .. } => code::FRAME_SIZE_ERROR,
            FrameError::BadPreface | FrameError::OnStream { .. } => code::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadPreface => f.write_str("the connection did not start with the HTTP/2 client preface"),
            FrameError::BadLength { kind, length } => write!(f, "frame of type 0x{kind:x} with length {length}"),
            FrameError::OnStream { kind, stream_id } => {
                write!(f, "connection frame of type 0x{kind:x} on stream {stream_id}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads frame headers from one direction of a connection, fed in pieces.
#[derive(Debug, Clone)]
pub struct FrameReader {
    /// Bytes of the client preface still to check.
    preface_left: usize,
    header: [u8; HEADER_LEN],
    header_filled: usize,
    /// The frame whose payload is being read.
    current: Option<FrameHeader>,
    payload_left: u32,
    kept: Vec<u8>,
    /// After an error the stream is not HTTP/2; nothing more is read.
    failed: Option<FrameError>,
}

impl FrameReader {
    /// Reads what a client sends: the preface, then frames.
    pub fn client_to_server() -> Self {
        Self::with_preface(CLIENT_PREFACE.len())
    }

    /// Reads what a server sends: frames from the first byte.
    pub fn server_to_client() -> Self {
        Self::with_preface(0)
    }

    fn with_preface(preface_left: usize) -> Self {
        Self {
            preface_left,
            header: [0; HEADER_LEN],
            header_filled: 0,
            current: None,
            payload_left: 0,
            kept: Vec::new(),
            failed: None,
        }
    }

    /// Between two frames: nothing of a frame has been read but not finished.
    /// A frame written here cannot split another one.
    pub fn at_frame_boundary(&self) -> bool {
        self.preface_left == 0 && self.header_filled == 0 && self.current.is_none() && self.failed.is_none()
    }

    /// Reads `bytes`, calling `on_frame` for each frame they complete, in order.
    /// After an error every later call returns the same error.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(&Frame)) -> Result<(), FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let checked = CLIENT_PREFACE.len() - self.preface_left;
                let take = self.preface_left.min(bytes.len());
                if bytes[..take] != CLIENT_PREFACE[checked..checked + take] {
                    return Err(self.fail(FrameError::BadPreface));
                }
                self.preface_left -= take;
                bytes = &bytes[take..];
                continue;
            }
            match self.current {
                None => {
                    let take = (HEADER_LEN - self.header_filled).min(bytes.len());
                    self.header[self.header_filled..self.header_filled + take].copy_from_slice(&bytes[..take]);
                    self.header_filled += take;
                    bytes = &bytes[take..];
                    if self.header_filled == HEADER_LEN {
                        self.header_filled = 0;
                        let header = FrameHeader::parse(&self.header);
                        if let Err(error) = check(&header) {
                            return Err(self.fail(error));
                        }
                        self.current = Some(header);
                        self.payload_left = header.length;
                        self.kept.clear();
                    }
                }
                Some(header) => {
                    let take = (self.payload_left as usize).min(bytes.len());
                    let keep_limit = match header.kind {
                        kind::PING => 8,
                        kind::GOAWAY => 8 + DEBUG_DATA_KEPT,
                        _ => 0,
                    };
                    let room = keep_limit.saturating_sub(self.kept.len()).min(take);
                    self.kept.extend_from_slice(&bytes[..room]);
                    self.payload_left -= take as u32;
                    bytes = &bytes[take..];
                }
            }
            if let Some(header) = self.current.filter(|_| self.payload_left == 0) {
                self.current = None;
                on_frame(&Frame { header, kept: std::mem::take(&mut self.kept) });
            }
        }
        Ok(())
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.failed = Some(error.clone());
        error
    }
}

fn check(header: &FrameHeader) -> Result<(), FrameError> {
    let connection_level = matches!(header.kind, kind::PING | kind::GOAWAY);
    if connection_level && header.stream_id != 0 {
        return Err(FrameError::OnStream { kind: header.kind, stream_id: header.stream_id });
    }
    let length_ok = match header.kind {
        kind::PING => header.length == 8,
        kind::GOAWAY => header.length >= 8,
        _ => true,
    };
    if !length_ok {
        return Err(FrameError::BadLength { kind: header.kind, length: header.length });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        bytes.extend_from_slice(&[kind, flags]);
        bytes.extend_from_slice(&stream_id.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn conversation() -> Vec<u8> {
        let mut bytes = CLIENT_PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[0; 6])); // SETTINGS
        bytes.extend(frame(kind::HEADERS, 0x4, 1, &[0x82; 20]));
        bytes.extend(frame(kind::DATA, 0x1, 1, &[7; 3000]));
        bytes.extend(frame(kind::PING, 0, 0, b"12345678"));
        bytes.extend(frame(kind::PING, FLAG_ACK, 0, b"abcdefgh"));
        bytes.extend(goaway_frame(1, code::ENHANCE_YOUR_CALM, b"too_many_pings"));
        bytes
    }

    fn read_in_pieces(bytes: &[u8], piece: usize) -> (Vec<Frame>, Result<(), FrameError>) {
        let mut reader = FrameReader::client_to_server();
        let mut frames = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            if let Err(error) = reader.feed(chunk, |frame| frames.push(frame.clone())) {
                return (frames, Err(error));
            }
        }
        (frames, Ok(()))
    }

    #[test]
    fn reads_every_frame_with_pings_and_goaway_payloads() {
        let (frames, result) = read_in_pieces(&conversation(), usize::MAX);
        result.unwrap();
        let kinds: Vec<u8> = frames.iter().map(|frame| frame.header.kind).collect();
        assert_eq!(kinds, [0x4, kind::HEADERS, kind::DATA, kind::PING, kind::PING, kind::GOAWAY]);
        assert_eq!(frames[2].header.length, 3000);
        assert!(frames[2].kept.is_empty(), "DATA payloads are skipped, not copied");
        assert!(frames[3].header.is_ping_request());
        assert_eq!(frames[3].kept, b"12345678");
        assert!(!frames[4].header.is_ping_request(), "an ACK is not a request");
        let goaway = frames[5].goaway().unwrap();
        assert_eq!(
            goaway,
            GoAway { last_stream_id: 1, code: code::ENHANCE_YOUR_CALM, debug_data: "too_many_pings".into() }
        );
        assert_eq!(goaway.reason(), "ENHANCE_YOUR_CALM \"too_many_pings\"");
    }

    #[test]
    fn frames_split_across_reads_read_the_same() {
        let whole = read_in_pieces(&conversation(), usize::MAX).0;
        for piece in [1, 2, 5, 9, 10, 23, 24, 25, 4096] {
            let (frames, result) = read_in_pieces(&conversation(), piece);
            result.unwrap();
            assert_eq!(frames, whole, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn boundary_is_known_between_frames_only() {
        let mut reader = FrameReader::server_to_client();
        assert!(reader.at_frame_boundary());
        let ping = frame(kind::PING, 0, 0, b"12345678");
        reader.feed(&ping[..4], |_| {}).unwrap();
        assert!(!reader.at_frame_boundary(), "inside a header");
        reader.feed(&ping[4..12], |_| {}).unwrap();
        assert!(!reader.at_frame_boundary(), "inside a payload");
        reader.feed(&ping[12..], |_| {}).unwrap();
        assert!(reader.at_frame_boundary());
        assert!(!FrameReader::client_to_server().at_frame_boundary(), "the preface is still to come");
    }

    #[test]
    fn malformed_input_is_an_error_that_sticks() {
        let (_, result) = read_in_pieces(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 3);
        assert_eq!(result, Err(FrameError::BadPreface));

        let mut bad_ping = CLIENT_PREFACE.to_vec();
        bad_ping.extend(frame(kind::PING, 0, 0, b"1234"));
        let mut reader = FrameReader::client_to_server();
        let error = reader.feed(&bad_ping, |_| {}).unwrap_err();
        assert_eq!(error, FrameError::BadLength { kind: kind::PING, length: 4 });
        assert_eq!(error.code(), code::FRAME_SIZE_ERROR);
        assert_eq!(reader.feed(b"more", |_| {}), Err(error), "nothing is read after an error");
        assert!(!reader.at_frame_boundary());

        let mut ping_on_stream = CLIENT_PREFACE.to_vec();
        ping_on_stream.extend(frame(kind::PING, 0, 3, b"12345678"));
        let (_, result) = read_in_pieces(&ping_on_stream, 7);
        assert_eq!(result.unwrap_err().code(), code::PROTOCOL_ERROR);

        let mut short_goaway = CLIENT_PREFACE.to_vec();
        short_goaway.extend(frame(kind::GOAWAY, 0, 0, b"1234"));
        assert!(read_in_pieces(&short_goaway, 1).1.is_err());
    }

    #[test]
    fn long_debug_data_is_cut_not_kept_whole() {
        let mut reader = FrameReader::server_to_client();
        let mut seen = None;
        reader.feed(&goaway_frame(9, code::NO_ERROR, &[b'x'; 10_000]), |frame| seen = frame.goaway()).unwrap();
        let goaway = seen.unwrap();
        assert_eq!(goaway.debug_data.len(), DEBUG_DATA_KEPT);
        assert_eq!(goaway.last_stream_id, 9);
        assert!(reader.at_frame_boundary());
    }

    #[test]
    fn code_names() {
        assert_eq!(code_name(code::ENHANCE_YOUR_CALM), "ENHANCE_YOUR_CALM");
        assert_eq!(code_name(0x99), "0x99");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), piece in 1usize..64) {
            let mut with_preface = CLIENT_PREFACE.to_vec();
            with_preface.extend(&bytes);
            let _ = read_in_pieces(&with_preface, piece);
            let _ = read_in_pieces(&bytes, piece);
        }
    }
}
