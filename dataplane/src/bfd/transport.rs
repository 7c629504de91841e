//! Moving BFD packets: UDP sockets as RFC 5881 describes them (destination port 3784,
//! source port 49152-65535 per session, TTL 255 sent and checked on receipt).

use std::{
    collections::HashMap,
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

use super::packet::BFD_PORT;

/// Where a session's packets go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Path {
    pub ifindex: u32,
    pub ifname: String,
    pub local: IpAddr,
    pub peer: IpAddr,
}

/// A packet as received, with what RFC 5881 checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub src: IpAddr,
    pub ifindex: u32,
    /// IP TTL or hop limit on arrival.
    pub ttl: u8,
    pub payload: Vec<u8>,
}

pub trait Transport: Send {
    /// "udp" or "af-xdp", for the logs.
    fn name(&self) -> &'static str;
    fn open_path(&mut self, path: &Path) -> io::Result<()>;
    fn close_path(&mut self, path: &Path);
    fn send(&mut self, path: &Path, packet: &[u8]) -> io::Result<()>;
    /// Waits up to `timeout` for one packet.
    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Received>>;
    /// Packets sent so far through AF_XDP and through UDP sockets.
    fn sent(&self) -> (u64, u64);
    /// The MACs to put on frames for this path (transports that build whole frames).
    fn set_neighbour(&mut self, _path: &Path, _src_mac: [u8; 6], _dst_mac: Option<[u8; 6]>) {}
}

pub struct UdpTransport {
    rx4: UdpSocket,
    rx6: UdpSocket,
    tx: HashMap<Path, UdpSocket>,
    next_port: u16,
    buf: Vec<u8>,
    sent: u64,
}

fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> io::Result<()> {
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            size_of::<i32>() as u32,
        )
    };
    if rc != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl UdpTransport {
    pub fn new() -> io::Result<Self> {
        let rx4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, BFD_PORT))?;
        setsockopt_int(rx4.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
        setsockopt_int(rx4.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        let rx6 = socket2_v6_only(BFD_PORT)?;
        setsockopt_int(
            rx6.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVHOPLIMIT,
            1,
        )?;
        setsockopt_int(
            rx6.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVPKTINFO,
            1,
        )?;
        rx4.set_nonblocking(true)?;
        rx6.set_nonblocking(true)?;
        Ok(Self {
            rx4,
            rx6,
            tx: HashMap::new(),
            next_port: 49152,
            buf: vec![0; 2048],
            sent: 0,
        })
    }

    /// The receive sockets, for polling together with other sources.
    pub fn fds(&self) -> [std::os::fd::RawFd; 2] {
        [self.rx4.as_raw_fd(), self.rx6.as_raw_fd()]
    }

    /// A packet if one is waiting.
    pub fn try_recv(&mut self) -> io::Result<Option<Received>> {
        for v6 in [false, true] {
            if let Some(r) = self.recv_from(v6)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// The UDP source port of a path's session.
    pub fn port_of(&self, path: &Path) -> Option<u16> {
        self.tx
            .get(path)
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port())
    }

    fn recv_from(&mut self, v6: bool) -> io::Result<Option<Received>> {
        let sock = if v6 { &self.rx6 } else { &self.rx4 };
        let mut addr: libc::sockaddr_storage = unsafe { zeroed() };
        let mut iov = libc::iovec {
            iov_base: self.buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: self.buf.len(),
        };
        let mut cbuf = [0u64; 32];
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = &mut addr as *mut _ as *mut libc::c_void;
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = size_of::<[u64; 32]>();
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let (mut ttl, mut ifindex) = (0u8, 0u32);
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::IPPROTO_IP, libc::IP_TTL) => ttl = *(data as *const i32) as u8,
                    (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                        ifindex = (*(data as *const libc::in_pktinfo)).ipi_ifindex as u32
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => ttl = *(data as *const i32) as u8,
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        ifindex = (*(data as *const libc::in6_pktinfo)).ipi6_ifindex
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let src = match addr.ss_family as i32 {
            libc::AF_INET => {
                let a = unsafe { *(&addr as *const _ as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)))
            }
            _ => {
                let a = unsafe { *(&addr as *const _ as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr))
            }
        };
        Ok(Some(Received {
            src,
            ifindex,
            ttl,
            payload: self.buf[..n as usize].to_vec(),
        }))
    }
}

/// An IPv6-only UDP socket on [::]:port (std cannot set IPV6_V6ONLY before bind).
fn socket2_v6_only(port: u16) -> io::Result<UdpSocket> {
    use std::os::fd::FromRawFd;
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_port = port.to_be();
    let rc = unsafe {
        libc::bind(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_in6>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

impl Transport for UdpTransport {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn open_path(&mut self, path: &Path) -> io::Result<()> {
        if self.tx.contains_key(path) {
            return Ok(());
        }
        // Source ports 49152-65535, one per session (RFC 5881 section 4).
        let mut last_err = None;
        for _ in 0..16384 {
            let port = self.next_port;
            self.next_port = if self.next_port == u16::MAX {
                49152
            } else {
                self.next_port + 1
            };
            match UdpSocket::bind(SocketAddr::new(path.local, port)) {
                Ok(s) => {
                    let fd = s.as_raw_fd();
                    let name =
                        std::ffi::CString::new(path.ifname.clone()).map_err(io::Error::other)?;
                    let rc = unsafe {
                        libc::setsockopt(
                            fd,
                            libc::SOL_SOCKET,
                            libc::SO_BINDTODEVICE,
                            name.as_ptr() as *const libc::c_void,
                            path.ifname.len() as u32,
                        )
                    };
                    if rc != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    match path.local {
                        IpAddr::V4(_) => setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_TTL, 255)?,
                        IpAddr::V6(_) => {
                            setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)?
                        }
                    }
                    s.set_nonblocking(true)?;
                    self.tx.insert(path.clone(), s);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no free source port")))
    }

    fn close_path(&mut self, path: &Path) {
        self.tx.remove(path);
    }

    fn send(&mut self, path: &Path, packet: &[u8]) -> io::Result<()> {
        let sock = self
            .tx
            .get(path)
            .ok_or_else(|| io::Error::other("path not open"))?;
        sock.send_to(packet, SocketAddr::new(path.peer, BFD_PORT))?;
        self.sent += 1;
        Ok(())
    }

    fn sent(&self) -> (u64, u64) {
        (0, self.sent)
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Received>> {
        if let Some(r) = self.try_recv()? {
            return Ok(Some(r));
        }
        wait_readable(&self.fds(), timeout)?;
        self.try_recv()
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (microsecond precision).
pub fn wait_readable(fds: &[std::os::fd::RawFd], timeout: Duration) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    let rc = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
