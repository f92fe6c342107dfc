//! TCP sockets by state, from the kernel's sock_diag netlink interface (what
//! `ss` uses), instead of `/proc/net/tcp`.
//!
//! `/proc/net/tcp` is text the kernel formats for every socket of the
//! machine, and a large table is slow to read: at 18,000 connections one
//! read of both tables took up to 0.7 s, on the sampler's own thread. A dump
//! over `NETLINK_SOCK_DIAG` asks for the states wanted only (TIME_WAIT, say),
//! and the kernel formats only the sockets in them: the cost follows the
//! matching sockets, and the answer is binary, with each socket's ports and
//! inode.
//!
//! The request is an `inet_diag_req_v2` (linux/inet_diag.h) per address
//! family, with `NLM_F_DUMP`; the answer is a stream of `inet_diag_msg`
//! records ended by `NLMSG_DONE`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::procfs::Proc;

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
}

impl TcpState {
    const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    fn of(code: u8) -> Option<TcpState> {
        TcpState::ALL.into_iter().find(|state| *state as u8 == code)
    }

    /// The name `ss` and `/proc/net/tcp` readers use: `ESTABLISHED`, `TIME_WAIT`…
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }

    /// The `idiag_states` bit of this state.
    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// One TCP socket of the machine (this network namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub state: TcpState,
    pub local_port: u16,
    pub remote_port: u16,
    /// The socket's inode, as `/proc/<pid>/fd/N -> socket:[inode]` names it; 0 for a TIME_WAIT socket, which no process holds.
    pub inode: u64,
}

/// Every TCP socket, IPv4 and IPv6, in one of `states`.
pub fn tcp_sockets(states: &[TcpState]) -> io::Result<Vec<TcpSocket>> {
    let mask = states.iter().fold(0, |mask, state| mask | state.bit());
    let socket = open()?;
    let mut sockets = Vec::new();
    for (sequence, family) in [(1, libc::AF_INET), (2, libc::AF_INET6)] {
        send_request(&socket, sequence, family as u8, mask)?;
        receive_dump(&socket, &mut sockets)?;
    }
    Ok(sockets)
}

/// TCP sockets in TIME_WAIT with either end on one of `ports`. TIME_WAIT
/// sockets belong to no process any more, so they are counted by port: a
/// client that closes a connection per request leaves one behind per request
/// for 60 s.
pub fn time_wait_sockets(ports: &[u16]) -> io::Result<u64> {
    let sockets = tcp_sockets(&[TcpState::TimeWait])?;
    Ok(sockets.iter().filter(|s| ports.contains(&s.local_port) || ports.contains(&s.remote_port)).count() as u64)
}

/// The TCP sockets process `proc_` holds, counted by state: its socket
/// inodes from `/proc/<pid>/fd`, looked up in a dump of every state. Sockets
/// on one of `side_ports` at the process's end are left out: its channelz or
/// pprof server's, which leaklab itself connects to.
pub fn tcp_states_of(proc_: Proc, side_ports: &[u16]) -> io::Result<BTreeMap<TcpState, u64>> {
    let inodes = socket_inodes(proc_)?;
    let mut states = BTreeMap::new();
    if inodes.is_empty() {
        return Ok(states);
    }
    for socket in tcp_sockets(&TcpState::ALL)? {
        if inodes.contains(&socket.inode) && !side_ports.contains(&socket.local_port) {
            *states.entry(socket.state).or_insert(0) += 1;
        }
    }
    Ok(states)
}

/// The inodes of the sockets among the process's open files.
fn socket_inodes(proc_: Proc) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for entry in fs::read_dir(proc_.path("fd"))?.flatten() {
        // An fd closed between the listing and the readlink is simply gone.
        let Ok(target) = fs::read_link(entry.path()) else { continue };
        let target = target.to_string_lossy();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|rest| rest.strip_suffix(']')) {
            inodes.extend(inode.parse::<u64>().ok());
        }
    }
    Ok(inodes)
}

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// `struct nlmsghdr`: length, type, flags, sequence, port id.
const HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, extensions, pad, states, then a 48-byte `inet_diag_sockid`.
const REQUEST_LEN: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte sockid, then expires, rqueue, wqueue, uid, inode.
const MESSAGE_LEN: usize = 72;

fn open() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the descriptor it returns is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_request(socket: &OwnedFd, sequence: u32, family: u8, states: u32) -> io::Result<()> {
    let mut message = [0u8; HEADER_LEN + REQUEST_LEN];
    message[0..4].copy_from_slice(&((HEADER_LEN + REQUEST_LEN) as u32).to_ne_bytes());
    message[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    message[8..12].copy_from_slice(&sequence.to_ne_bytes());
    message[HEADER_LEN] = family;
    message[HEADER_LEN + 1] = libc::IPPROTO_TCP as u8;
    message[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&states.to_ne_bytes());
    // SAFETY: an all-zero sockaddr_nl is the kernel's address (nl_pid 0), with its family set below.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: the buffer and the address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn receive_dump(socket: &OwnedFd, sockets: &mut Vec<TcpSocket>) -> io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: the buffer is valid for its length.
        let received = unsafe { libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if received < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if parse_messages(&buffer[..received as usize], sockets)? == Parsed::Done {
            return Ok(());
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    More,
    Done,
}

/// The netlink messages of one datagram: sockets appended to `sockets`, until `NLMSG_DONE`.
fn parse_messages(mut bytes: &[u8], sockets: &mut Vec<TcpSocket>) -> io::Result<Parsed> {
    let malformed = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"));
    while bytes.len() >= HEADER_LEN {
        let length = u32::from_ne_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(bytes[4..6].try_into().expect("2 bytes"));
        if length < HEADER_LEN || length > bytes.len() {
            return Err(malformed("a message longer than its datagram"));
        }
        let body = &bytes[HEADER_LEN..length];
        match kind {
            NLMSG_DONE => return Ok(Parsed::Done),
            NLMSG_ERROR => {
                let code = body.get(0..4).map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes"))).unwrap_or(0);
                return Err(io::Error::from_raw_os_error(-code));
            }
            SOCK_DIAG_BY_FAMILY => {
                if body.len() < MESSAGE_LEN {
                    return Err(malformed("a socket record shorter than inet_diag_msg"));
                }
                // An unknown state (a newer kernel's) is left out rather than misnamed.
                if let Some(state) = TcpState::of(body[1]) {
                    sockets.push(TcpSocket {
                        state,
                        // Ports are in network byte order.
                        local_port: u16::from_be_bytes([body[4], body[5]]),
                        remote_port: u16::from_be_bytes([body[6], body[7]]),
                        inode: u64::from(u32::from_ne_bytes(body[68..72].try_into().expect("4 bytes"))),
                    });
                }
            }
            _ => {}
        }
        // Messages are aligned to 4 bytes.
        let aligned = (length + 3) & !3;
        bytes = &bytes[aligned.min(bytes.len())..];
    }
    Ok(Parsed::More)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// One `inet_diag_msg` datagram as the kernel lays it out.
    fn record(state: u8, local_port: u16, remote_port: u16, inode: u32) -> Vec<u8> {
        let mut message = vec![0u8; HEADER_LEN + MESSAGE_LEN];
        message[0..4].copy_from_slice(&((HEADER_LEN + MESSAGE_LEN) as u32).to_ne_bytes());
        message[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let body = &mut message[HEADER_LEN..];
        body[0] = libc::AF_INET as u8;
        body[1] = state;
        body[4..6].copy_from_slice(&local_port.to_be_bytes());
        body[6..8].copy_from_slice(&remote_port.to_be_bytes());
        body[68..72].copy_from_slice(&inode.to_ne_bytes());
        message
    }

    fn done() -> Vec<u8> {
        let mut message = vec![0u8; HEADER_LEN + 4];
        message[0..4].copy_from_slice(&((HEADER_LEN + 4) as u32).to_ne_bytes());
        message[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        message
    }

    #[test]
    fn records_are_read_until_done() {
        let mut datagram = record(6, 50051, 41000, 0);
        datagram.extend(record(1, 41001, 50051, 777));
        let mut sockets = Vec::new();
        assert_eq!(parse_messages(&datagram, &mut sockets).unwrap(), Parsed::More);
        assert_eq!(parse_messages(&done(), &mut sockets).unwrap(), Parsed::Done);
        assert_eq!(
            sockets,
            [
                TcpSocket { state: TcpState::TimeWait, local_port: 50051, remote_port: 41000, inode: 0 },
                TcpSocket { state: TcpState::Established, local_port: 41001, remote_port: 50051, inode: 777 },
            ]
        );
    }

    #[test]
    fn a_truncated_datagram_is_an_error_not_a_panic() {
        let mut datagram = record(1, 1, 2, 3);
        datagram.truncate(HEADER_LEN + 10);
        assert!(parse_messages(&datagram, &mut Vec::new()).is_err());
        let mut short = record(1, 1, 2, 3);
        short[0..4].copy_from_slice(&((HEADER_LEN + 8) as u32).to_ne_bytes());
        short.truncate(HEADER_LEN + 8);
        assert!(parse_messages(&short, &mut Vec::new()).is_err());
    }

    #[test]
    fn an_error_message_carries_the_kernel_s_errno() {
        let mut message = vec![0u8; HEADER_LEN + 4];
        message[0..4].copy_from_slice(&((HEADER_LEN + 4) as u32).to_ne_bytes());
        message[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        message[HEADER_LEN..].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        let error = parse_messages(&message, &mut Vec::new()).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn a_closed_connection_is_counted_in_time_wait_by_its_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        accepted.read_exact(&mut byte).unwrap();
        // The side that closes first keeps the TIME_WAIT socket.
        drop(client);
        let mut rest = Vec::new();
        accepted.read_to_end(&mut rest).unwrap();
        drop(accepted);
        assert!(time_wait_sockets(&[port]).unwrap() >= 1, "no TIME_WAIT socket towards port {port}");
        assert_eq!(time_wait_sockets(&[]).unwrap(), 0, "no port, nothing counted");
    }

    #[test]
    fn finds_this_process_s_own_sockets_by_state() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let states = tcp_states_of(Proc::Myself, &[]).unwrap();
        assert!(states.get(&TcpState::Listen).copied().unwrap_or(0) >= 1, "{states:?}");
        let established = states.get(&TcpState::Established).copied().unwrap_or(0);
        assert!(established >= 2, "{states:?}");
        // The listener's side of the connection is on its port: left out, as a channelz server's would be.
        let side = tcp_states_of(Proc::Myself, &[listener.local_addr().unwrap().port()]).unwrap();
        assert_eq!(side.get(&TcpState::Established).copied().unwrap_or(0), established - 1, "{side:?}");
        assert_eq!(side.get(&TcpState::Listen).copied().unwrap_or(0) + 1, states[&TcpState::Listen], "{side:?}");
        drop((client, server));
    }
}
