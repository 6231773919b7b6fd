//! What the kernel says about a process right now: scheduler state, where it sleeps, the
//! system call it is in, CPU time, and how much its sockets have queued for a peer that
//! has not read it yet.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelState {
    /// `/proc/PID/stat` state: R running, S sleeping, D disk sleep, T stopped, ...
    pub state: Option<char>,
    pub wchan: Option<String>,
    /// Number of the system call it is blocked in (`/proc/PID/syscall`); None when running
    /// in user space or unreadable.
    pub syscall: Option<i64>,
    /// utime + stime, clock ticks.
    pub cpu_ticks: Option<u64>,
    /// Bytes written to its sockets that the peer has not read or acknowledged (what
    /// SIOCOUTQ would say), the largest.
    pub send_queue: Option<u64>,
}

impl KernelState {
    pub fn read(pid: i32) -> KernelState {
        use crate::process::proc;
        let handle = proc::open(pid);
        let stat = handle.as_ref().and_then(proc::Stat::of);
        let now = handle.as_ref().and_then(proc::syscall_of);
        KernelState {
            state: stat.map(|s| s.state),
            wchan: handle.as_ref().and_then(proc::wchan_of),
            syscall: now
                .and_then(|s| s.number())
                .and_then(|n| i64::try_from(n).ok()),
            cpu_ticks: stat.map(|s| s.cpu_ticks),
            send_queue: socket_send_queue(pid),
        }
    }
}

/// Whether this process is `pid`'s tracer (`TracerPid` in `/proc/PID/status`): then a
/// tracing stop (`t`) or stop (`T`) is most likely one of ours, not the process's state.
pub fn traced_by_us(pid: i32) -> bool {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(format!("/proc/{pid}/status")) else {
        return false;
    };
    let mut text = String::new();
    // A few kB; capped all the same.
    if f.take(64 * 1024).read_to_string(&mut text).is_err() {
        return false;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|t| t == std::process::id())
}

impl KernelState {
    /// A stop pg_trace caused (ptrace's syscall and signal stops) is not the process's
    /// state: show the state it had before, or running, and drop the wait channel and the
    /// call of the stop itself so that no verdict blames it. Returns the state to remember
    /// for next time.
    pub fn hide_own_stop(&mut self, ours: bool, before: Option<char>) -> Option<char> {
        if ours && matches!(self.state, Some('t' | 'T')) {
            self.state = Some(before.unwrap_or('R'));
            self.wchan = None;
            before
        } else {
            self.state.or(before)
        }
    }
}

/// Largest send queue over the process's sockets: bytes written that the peer has not
/// read (unix) or acknowledged (TCP), what SIOCOUTQ would say. Read only from outside: the
/// socket is never taken into this process (pidfd_getfd would re-stamp its cgroup classid
/// and priority index with ours, altering the traced process). TCP queues come from
/// `/proc/PID/net/tcp{,6}`, unix ones from sock_diag; other sockets are not counted.
pub fn socket_send_queue(pid: i32) -> Option<u64> {
    let inodes = crate::process::fds::socket_inodes(pid, MAX_SOCKETS)?;
    if inodes.is_empty() {
        return None;
    }
    let mut best: Option<u64> = None;
    let mut rest = Vec::new();
    match UnixDiag::open() {
        Some(mut diag) => {
            for ino in inodes {
                match diag.query(ino) {
                    Some(q) => best = best.max(q.send_queue()),
                    None => rest.push(ino),
                }
            }
        }
        None => rest = inodes,
    }
    if !rest.is_empty() {
        best = best.max(crate::process::proc::tcp_send_queue(pid, &rest));
    }
    best
}

/// Sockets looked at per process (a backend has a handful).
const MAX_SOCKETS: usize = 64;

/// `struct unix_diag_rqlen` of one unix socket, with its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixQueues {
    pub state: u8,
    pub rqueue: u32,
    pub wqueue: u32,
}

impl UnixQueues {
    /// For a listening socket the kernel reports the backlog limit as wqueue: no queue.
    pub fn send_queue(&self) -> Option<u64> {
        (self.state != TCP_LISTEN).then_some(u64::from(self.wqueue))
    }
}

// linux/netlink.h, sock_diag.h, unix_diag.h.
const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const UNIX_DIAG_REQ_LEN: usize = 24;
const UNIX_DIAG_MSG_LEN: usize = 16;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_RQLEN: u16 = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;
const TCP_LISTEN: u8 = 10;

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// A `SOCK_DIAG_BY_FAMILY` request for the unix socket with inode `ino`: nlmsghdr then
/// `struct unix_diag_req`, native endian as netlink is.
pub fn unix_diag_request(seq: u32, ino: u32) -> [u8; NLMSG_HDRLEN + UNIX_DIAG_REQ_LEN] {
    let mut m = [0u8; NLMSG_HDRLEN + UNIX_DIAG_REQ_LEN];
    m[0..4].copy_from_slice(&((NLMSG_HDRLEN + UNIX_DIAG_REQ_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port.
    let r = &mut m[NLMSG_HDRLEN..];
    r[0] = libc::AF_UNIX as u8; // sdiag_family; sdiag_protocol and pad stay 0
    r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // udiag_states: any state
    r[8..12].copy_from_slice(&ino.to_ne_bytes());
    r[12..16].copy_from_slice(&UDIAG_SHOW_RQLEN.to_ne_bytes());
    // udiag_cookie: INET_DIAG_NOCOOKIE, i.e. look the socket up by inode alone.
    r[16..24].copy_from_slice(&[0xff; 8]);
    m
}

fn ne_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn ne_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The queues of socket `ino` in a sock_diag reply to request `seq`; None for an error
/// (ENOENT: not a unix socket), a reply about another socket, or anything malformed.
pub fn parse_unix_diag_reply(buf: &[u8], seq: u32, ino: u32) -> Option<UnixQueues> {
    let mut off = 0usize;
    while off.checked_add(NLMSG_HDRLEN)? <= buf.len() {
        let len = ne_u32(buf, off)? as usize;
        let kind = ne_u16(buf, off + 4)?;
        let msg_seq = ne_u32(buf, off + 8)?;
        if len < NLMSG_HDRLEN || len > buf.len() - off {
            return None;
        }
        let msg = &buf[off..off + len];
        match kind {
            NLMSG_ERROR | NLMSG_DONE => return None,
            SOCK_DIAG_BY_FAMILY if msg_seq == seq => return parse_unix_diag_msg(msg, ino),
            _ => {}
        }
        off = off.checked_add(align4(len))?;
    }
    None
}

/// One `SOCK_DIAG_BY_FAMILY` message: nlmsghdr, `struct unix_diag_msg`, attributes.
fn parse_unix_diag_msg(msg: &[u8], ino: u32) -> Option<UnixQueues> {
    let body = msg.get(NLMSG_HDRLEN..)?;
    if body.len() < UNIX_DIAG_MSG_LEN || body[0] != libc::AF_UNIX as u8 {
        return None;
    }
    let state = body[2];
    if ne_u32(body, 4)? != ino {
        return None;
    }
    let mut off = align4(UNIX_DIAG_MSG_LEN);
    while off.checked_add(4)? <= body.len() {
        let len = ne_u16(body, off)? as usize;
        let kind = ne_u16(body, off + 2)? & NLA_TYPE_MASK;
        if len < 4 || len > body.len() - off {
            return None;
        }
        if kind == UNIX_DIAG_RQLEN && len >= 12 {
            return Some(UnixQueues {
                state,
                rqueue: ne_u32(body, off + 4)?,
                wqueue: ne_u32(body, off + 8)?,
            });
        }
        off = off.checked_add(align4(len))?;
    }
    None
}

/// A NETLINK_SOCK_DIAG socket of our own, for exact per-inode queries.
struct UnixDiag {
    fd: std::os::fd::OwnedFd,
    seq: u32,
}

impl UnixDiag {
    fn open() -> Option<UnixDiag> {
        use std::os::fd::FromRawFd;
        // SAFETY: socket(2) takes plain integers and returns a new fd or -1.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd was just returned by socket(2) and nothing else owns it.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // The kernel answers within sendmsg; the timeout only guards against surprises.
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: SO_RCVTIMEO reads one timeval of the given size from a live local.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Some(UnixDiag { fd, seq: 0 })
    }

    /// The queues of unix socket `ino`; None when it is not one (or the kernel has no
    /// unix_diag, or the socket lives in another network namespace).
    fn query(&mut self, ino: u64) -> Option<UnixQueues> {
        use std::os::fd::AsRawFd;
        let ino = u32::try_from(ino).ok()?;
        self.seq = self.seq.wrapping_add(1);
        let req = unix_diag_request(self.seq, ino);
        // SAFETY: an all-zero sockaddr_nl is valid (nl_pid 0 = the kernel).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the buffer and address are live locals of the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent != req.len() as isize {
            return None;
        }
        // One reply: the message (or an error carrying our request back). A reply that
        // does not fit is truncated and then fails to parse.
        let mut buf = [0u8; 1024];
        // SAFETY: recv writes at most buf.len() bytes into our buffer.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = usize::try_from(n).ok()?;
        parse_unix_diag_reply(buf.get(..n)?, self.seq, ino)
    }
}

#[cfg(test)]
mod own_stop_tests {
    use super::KernelState;

    fn k(state: char) -> KernelState {
        KernelState {
            state: Some(state),
            wchan: Some("ptrace_stop".into()),
            ..Default::default()
        }
    }

    #[test]
    fn our_stop_shows_the_state_before() {
        let mut s = k('t');
        assert_eq!(s.hide_own_stop(true, Some('D')), Some('D'));
        assert_eq!(s.state, Some('D'));
        assert_eq!(s.wchan, None);
        let mut s = k('T');
        s.hide_own_stop(true, None);
        assert_eq!(s.state, Some('R'));
    }

    #[test]
    fn a_stop_not_ours_stays() {
        let mut s = k('T');
        assert_eq!(s.hide_own_stop(false, Some('S')), Some('T'));
        assert_eq!(s.state, Some('T'));
        let mut s = k('S');
        assert_eq!(s.hide_own_stop(true, Some('D')), Some('S'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(((4 + payload.len()) as u16).to_ne_bytes());
        v.extend(kind.to_ne_bytes());
        v.extend(payload);
        v.resize(align4(v.len()), 0);
        v
    }

    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        v.extend(kind.to_ne_bytes());
        v.extend(0u16.to_ne_bytes());
        v.extend(seq.to_ne_bytes());
        v.extend(77u32.to_ne_bytes());
        v.extend(body);
        v
    }

    /// A reply as the kernel builds it: unix_diag_msg then attributes.
    fn reply(seq: u32, ino: u32, state: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![libc::AF_UNIX as u8, libc::SOCK_STREAM as u8, state, 0];
        body.extend(ino.to_ne_bytes());
        body.extend([0xab; 8]);
        for a in attrs {
            body.extend(a);
        }
        message(SOCK_DIAG_BY_FAMILY, seq, &body)
    }

    fn rqlen(r: u32, w: u32) -> Vec<u8> {
        let mut p = r.to_ne_bytes().to_vec();
        p.extend(w.to_ne_bytes());
        attr(UNIX_DIAG_RQLEN, &p)
    }

    #[test]
    fn unix_diag_request_layout() {
        let m = unix_diag_request(7, 0x01020304);
        assert_eq!(m.len(), 40);
        assert_eq!(ne_u32(&m, 0), Some(40));
        assert_eq!(ne_u16(&m, 4), Some(20));
        assert_eq!(ne_u16(&m, 6), Some(1));
        assert_eq!(ne_u32(&m, 8), Some(7));
        assert_eq!(m[16], libc::AF_UNIX as u8);
        assert_eq!(ne_u32(&m, 20), Some(u32::MAX));
        assert_eq!(ne_u32(&m, 24), Some(0x01020304));
        assert_eq!(ne_u32(&m, 28), Some(0x10));
        assert_eq!(&m[32..40], &[0xff; 8]);
    }

    #[test]
    fn unix_diag_replies() {
        // An established socket with 200 KiB unread by the peer; other attributes first.
        let r = reply(3, 555, 1, &[attr(6, &[0]), rqlen(5, 204800)]);
        let q = parse_unix_diag_reply(&r, 3, 555).unwrap();
        assert_eq!((q.state, q.rqueue, q.wqueue), (1, 5, 204800));
        assert_eq!(q.send_queue(), Some(204800));
        // A listening socket reports its backlog limit, not a queue.
        let r = reply(3, 555, TCP_LISTEN, &[rqlen(0, 4096)]);
        assert_eq!(
            parse_unix_diag_reply(&r, 3, 555).unwrap().send_queue(),
            None
        );
        // Another request's reply, another socket, no RQLEN attribute, an error.
        let r = reply(2, 555, 1, &[rqlen(0, 9)]);
        assert_eq!(parse_unix_diag_reply(&r, 3, 555), None);
        assert_eq!(
            parse_unix_diag_reply(&reply(3, 556, 1, &[rqlen(0, 9)]), 3, 555),
            None
        );
        assert_eq!(parse_unix_diag_reply(&reply(3, 555, 1, &[]), 3, 555), None);
        let mut err = (-libc::ENOENT).to_ne_bytes().to_vec();
        err.extend(&unix_diag_request(3, 555)[..16]);
        assert_eq!(
            parse_unix_diag_reply(&message(NLMSG_ERROR, 3, &err), 3, 555),
            None
        );
        // A short RQLEN payload is not read past.
        let r = reply(3, 555, 1, &[attr(UNIX_DIAG_RQLEN, &[1, 0, 0, 0])]);
        assert_eq!(parse_unix_diag_reply(&r, 3, 555), None);
        // Truncated anywhere: None, never a panic.
        let good = reply(3, 555, 1, &[rqlen(5, 6)]);
        for cut in 0..good.len() {
            assert_eq!(
                parse_unix_diag_reply(&good[..cut], 3, 555),
                None,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn unread_bytes_of_our_own_socketpair() {
        use std::io::Write;
        let (mut a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(&[7u8; 100_000]).unwrap();
        // unix_outq_len counts the buffers' true size: at least the bytes written.
        let q = socket_send_queue(std::process::id() as i32);
        assert!(q.is_some_and(|q| q >= 100_000), "{q:?}");
    }

    proptest::proptest! {
        #[test]
        fn hostile_replies_never_panic(mut data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
                                       seq in 0u32..4, ino in 0u32..4) {
            let _ = parse_unix_diag_reply(&data, seq, ino);
            // Plausible headers with hostile lengths inside.
            let mut r = reply(seq, ino, 1, &[rqlen(1, 2)]);
            r.append(&mut data);
            let _ = parse_unix_diag_reply(&r, seq, ino);
            for (i, b) in data.iter().enumerate().take(40) {
                let mut m = reply(seq, ino, 1, &[rqlen(1, 2)]);
                if let Some(x) = m.get_mut(i) { *x = *b; }
                let _ = parse_unix_diag_reply(&m, seq, ino);
            }
        }
    }
}
