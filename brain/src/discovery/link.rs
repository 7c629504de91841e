//! The mesh links as the kernel sees them: each interface's index and subnets (from
//! getifaddrs), and the one UDP socket hellos are sent and heard on.

use std::{
    io,
    net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6},
    os::fd::{AsFd, AsRawFd, RawFd},
};

use ipnet::IpNet;
use nix::{
    ifaddrs::getifaddrs,
    libc,
    net::if_::if_nametoindex,
    sys::socket::{SockaddrStorage, setsockopt, sockopt},
};

/// One interface's index and its subnets, link-local ones left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Link {
    pub name: String,
    pub ifindex: u32,
    pub nets: Vec<IpNet>,
}

impl Link {
    pub fn on_link(&self, a: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&a))
    }

    /// Where our brain is reached on this link: the listener's own address, or for an
    /// unspecified one our first address on the link of its family (IPv6 falls back to
    /// IPv4: a `[::]` listener takes both).
    pub fn brain_addr(&self, listen: SocketAddr) -> Option<SocketAddr> {
        if !listen.ip().is_unspecified() {
            return Some(listen);
        }
        let family = |v6: bool| self.nets.iter().find(|n| n.addr().is_ipv6() == v6);
        let net = match listen {
            SocketAddr::V4(_) => family(false),
            SocketAddr::V6(_) => family(true).or_else(|| family(false)),
        }?;
        Some(SocketAddr::new(net.addr(), listen.port()))
    }
}

/// Every interface's subnets now (interfaces without an index, such as a vanished one,
/// come back empty).
pub fn links(names: &[String]) -> Vec<Link> {
    let addrs: Vec<_> = getifaddrs().map(|a| a.collect()).unwrap_or_default();
    names
        .iter()
        .map(|name| {
            let nets = addrs
                .iter()
                .filter(|a| &a.interface_name == name)
                .filter_map(|a| subnet(a.address.as_ref()?, a.netmask.as_ref()?))
                .collect();
            let ifindex = if_nametoindex(name.as_str()).unwrap_or(0);
            Link {
                name: name.clone(),
                ifindex,
                nets,
            }
        })
        .collect()
}

fn subnet(addr: &SockaddrStorage, mask: &SockaddrStorage) -> Option<IpNet> {
    let ip: IpAddr = match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
        (Some(v4), _) => v4.ip().into(),
        (_, Some(v6)) => v6.ip().into(),
        _ => return None,
    };
    let mask: IpAddr = match (mask.as_sockaddr_in(), mask.as_sockaddr_in6()) {
        (Some(v4), _) => v4.ip().into(),
        (_, Some(v6)) => v6.ip().into(),
        _ => return None,
    };
    let link_local = match ip {
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
        IpAddr::V4(v4) => v4.is_link_local(),
    };
    if link_local || ip.is_loopback() {
        return None;
    }
    IpNet::with_netmask(ip, mask).ok()
}

/// The hello socket: bound to `port` on every address, multicast hop limit 255 out,
/// each datagram's hop limit reported in, our own multicast not looped back.
pub fn socket(port: u16) -> io::Result<tokio::net::UdpSocket> {
    let s = std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))?;
    s.set_nonblocking(true)?;
    setsockopt(&s.as_fd(), sockopt::Ipv6MulticastHops, &255).map_err(io::Error::from)?;
    // (IPV6_MINHOPCOUNT would be simpler, but Linux applies it to TCP only.)
    set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
    let s = tokio::net::UdpSocket::from_std(s)?;
    s.set_multicast_loop_v6(false)?;
    Ok(s)
}

fn set_int(
    s: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a c_int option on a socket we own; the kernel copies the value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram: its length, where it came from, and the hop limit it arrived with
/// (-1 if the kernel did not say). RFC 5082: only 255 cannot have been routed here.
pub async fn receive(
    socket: &tokio::net::UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddrV6, i32)> {
    socket
        .async_io(tokio::io::Interest::READABLE, || {
            recv_with_hops(socket.as_raw_fd(), buf)
        })
        .await
}

fn recv_with_hops(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV6, i32)> {
    // SAFETY: every pointer in `msg` points at a local that outlives the call; the
    // control buffer is u64-aligned as cmsghdr needs; CMSG_* walk only what the kernel
    // wrote (msg_controllen), and the data is read unaligned.
    unsafe {
        let mut src: libc::sockaddr_in6 = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut src as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut hops = -1;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                hops = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let from = SocketAddrV6::new(
            Ipv6Addr::from(src.sin6_addr.s6_addr),
            u16::from_be(src.sin6_port),
            src.sin6_flowinfo,
            src.sin6_scope_id,
        );
        Ok((n as usize, from, hops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brain_is_advertised_at_an_address_of_the_link() {
        let link = Link {
            name: "eth1".into(),
            ifindex: 3,
            nets: vec![
                "2001:db8:12::1/64".parse().unwrap(),
                "198.18.12.1/24".parse().unwrap(),
            ],
        };
        let at = |l: &str| link.brain_addr(l.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(at("0.0.0.0:7444").as_deref(), Some("198.18.12.1:7444"));
        assert_eq!(at("[::]:7444").as_deref(), Some("[2001:db8:12::1]:7444"));
        assert_eq!(at("10.0.0.1:7444").as_deref(), Some("10.0.0.1:7444"));
        assert!(link.on_link("198.18.12.200".parse().unwrap()));
        assert!(!link.on_link("198.18.13.2".parse().unwrap()));
        assert_eq!(
            Link::default().brain_addr("0.0.0.0:1".parse().unwrap()),
            None
        );
    }

    #[test]
    fn loopback_has_no_subnets_to_offer() {
        let lo = links(&["lo".into()]);
        assert_eq!(lo[0].ifindex, 1);
        assert!(lo[0].nets.is_empty());
        assert_eq!(links(&["no-such-if0".into()])[0].ifindex, 0);
    }
}
