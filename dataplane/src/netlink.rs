//! What the dataplane asks of the kernel over rtnetlink (neli): links, local addresses,
//! neighbours, neighbour resolution, and a stream of changes to all of them.

use std::{
    fmt::Debug,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result, anyhow, bail};
use neli::{
    FromBytesWithInput, Size, ToBytes,
    consts::{
        nl::NlmF,
        rtnl::{Ifa, Iff, Ifla, Nda, Ntf, Nud, RtAddrFamily, Rtm, Rtn},
        socket::NlFamily,
    },
    nl::NlmsghdrBuilder,
    nl::{NlPayload, Nlmsghdr},
    router::synchronous::{NlRouter, NlRouterReceiverHandle},
    rtnl::{
        Ifaddrmsg, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, Ndmsg, NdmsgBuilder,
        RtattrBuilder,
    },
    socket::synchronous::NlSocketHandle,
    types::{Buffer, RtBuffer},
    utils::Groups,
};

/// An interface as the dataplane needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Administratively up and carrier present (IFF_UP and IFF_LOWER_UP).
    pub up: bool,
}

/// A neighbour table entry. `mac` is set only when the kernel considers it usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub mac: Option<[u8; 6]>,
}

/// A local address of the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAddr {
    pub ifindex: u32,
    pub addr: IpAddr,
}

/// A change the kernel announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Neighbour(Neighbour),
    NeighbourGone(Neighbour),
    Link(Link),
    LinkGone(u32),
    AddrAdded(LocalAddr),
    AddrRemoved(LocalAddr),
}

/// Request/response rtnetlink socket. Each request is sent and its answer read on the
/// calling thread. (neli's `NlRouter` reads on a thread of its own; a read that overlaps the
/// start of the next dump can find that dump already finished, and the kernel then fails
/// the read with EINVAL: a daemon once died of it at start-up.)
pub struct Netlink {
    socket: NlSocketHandle,
    seq: AtomicU32,
}

/// A dump the kernel marked inconsistent (NLM_F_DUMP_INTR: the table changed while it was
/// read) is asked again this many times; after that the last answer stands, and the event
/// stream, subscribed before the first dump, brings the changes.
const DUMP_ATTEMPTS: usize = 3;

impl Netlink {
    pub fn connect() -> Result<Self> {
        let socket = NlSocketHandle::connect(NlFamily::Route, None, Groups::empty())
            .context("opening an rtnetlink socket")?;
        Ok(Self {
            socket,
            seq: AtomicU32::new(0),
        })
    }

    pub fn links(&self) -> Result<Vec<Link>> {
        let msg = || {
            IfinfomsgBuilder::default()
                .ifi_family(RtAddrFamily::Unspecified)
                .build()
        };
        self.dump(Rtm::Getlink, msg, |m: &Ifinfomsg| decode_link(m))
    }

    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    /// Every local address (both families), link-local ones included.
    pub fn addresses(&self) -> Result<Vec<LocalAddr>> {
        let mut out = Vec::new();
        for family in [RtAddrFamily::Inet, RtAddrFamily::Inet6] {
            let msg = || {
                IfaddrmsgBuilder::default()
                    .ifa_family(family)
                    .ifa_prefixlen(0)
                    .ifa_scope(neli::consts::rtnl::RtScope::Universe)
                    .ifa_index(0)
                    .build()
            };
            out.extend(self.dump(Rtm::Getaddr, msg, |m: &Ifaddrmsg| decode_addr(m))?);
        }
        Ok(out)
    }

    pub fn neighbours(&self) -> Result<Vec<Neighbour>> {
        let mut out = Vec::new();
        for family in [RtAddrFamily::Inet, RtAddrFamily::Inet6] {
            let msg = || {
                NdmsgBuilder::default()
                    .ndm_family(family)
                    .ndm_index(0)
                    .ndm_state(Nud::empty())
                    .ndm_type(Rtn::Unspec)
                    .build()
            };
            out.extend(self.dump(Rtm::Getneigh, msg, |m: &Ndmsg| decode_neighbour(m))?);
        }
        Ok(out)
    }

    /// Asks the kernel to resolve `addr` on `ifindex` (ARP or ND), as `ip neigh replace ADDR
    /// dev IF use` does: the answer arrives later as a neighbour event.
    pub fn resolve(&self, ifindex: u32, addr: IpAddr) -> Result<()> {
        let (family, bytes) = match addr {
            IpAddr::V4(a) => (RtAddrFamily::Inet, a.octets().to_vec()),
            IpAddr::V6(a) => (RtAddrFamily::Inet6, a.octets().to_vec()),
        };
        let mut attrs = RtBuffer::<Nda, Buffer>::new();
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Nda::Dst)
                .rta_payload(bytes)
                .build()?,
        );
        let msg = NdmsgBuilder::default()
            .ndm_family(family)
            .ndm_index(ifindex as i32)
            .ndm_state(Nud::NONE)
            .ndm_flags(Ntf::USE)
            .ndm_type(Rtn::Unspec)
            .rtattrs(attrs)
            .build()?;
        let flags = NlmF::CREATE | NlmF::REPLACE | NlmF::ACK;
        self.request(Rtm::Newneigh, flags, msg, |_: &Ndmsg| None::<()>)
            .with_context(|| format!("RTM_NEWNEIGH (resolve {addr} on ifindex {ifindex})"))?;
        Ok(())
    }

    /// A whole table, asked again while the kernel says it changed mid-read.
    pub(crate) fn dump<P, R, T, E>(
        &self,
        ty: Rtm,
        msg: impl Fn() -> Result<P, E>,
        decode: impl Fn(&R) -> Option<T>,
    ) -> Result<Vec<T>>
    where
        P: Size + ToBytes + Debug,
        R: Size + FromBytesWithInput<Input = usize> + Debug,
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 1;
        loop {
            let answer = self
                .request(ty, NlmF::DUMP, msg()?, &decode)
                .with_context(|| format!("{ty:?} dump"))?;
            if !answer.interrupted || attempt == DUMP_ATTEMPTS {
                return Ok(answer.payloads);
            }
            attempt += 1;
        }
    }

    /// Sends one request and reads its whole answer: the payloads of a dump up to its
    /// NLMSG_DONE (each through `decode`), or the acknowledgement of a change. A refusal
    /// is an error holding the kernel's `std::io::Error` (see [`errno_of`]).
    pub(crate) fn request<P, R, T>(
        &self,
        ty: Rtm,
        flags: NlmF,
        msg: P,
        decode: impl Fn(&R) -> Option<T>,
    ) -> Result<Answer<T>>
    where
        P: Size + ToBytes + Debug,
        R: Size + FromBytesWithInput<Input = usize> + Debug,
    {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let request = NlmsghdrBuilder::default()
            .nl_type(ty)
            .nl_flags(flags | NlmF::REQUEST)
            .nl_pid(self.socket.pid())
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(msg))
            .build()?;
        self.socket.send(&request)?;
        let mut answer = Answer {
            payloads: Vec::new(),
            interrupted: false,
        };
        loop {
            let (messages, _) = self.socket.recv::<u16, R>()?;
            for message in messages {
                let message = message?;
                if *message.nl_seq() != seq {
                    continue; // a late answer to an earlier request that gave up
                }
                answer.interrupted |= message.nl_flags().contains(NlmF::DUMP_INTR);
                match message.nl_payload() {
                    NlPayload::Ack(_) => return Ok(answer),
                    NlPayload::Err(e) => {
                        return Err(std::io::Error::from_raw_os_error(-*e.error()).into());
                    }
                    NlPayload::DumpExtAck(e) if *e.error() != 0 => {
                        return Err(std::io::Error::from_raw_os_error(-*e.error()).into());
                    }
                    NlPayload::DumpExtAck(_) | NlPayload::Empty => return Ok(answer),
                    NlPayload::Payload(p) => answer.payloads.extend(decode(p)),
                }
                if !flags.contains(NlmF::DUMP) && !flags.contains(NlmF::ACK) {
                    return Ok(answer);
                }
            }
        }
    }
}

/// The errno of a request the kernel refused, if that is what `e` is.
pub fn errno_of(e: &anyhow::Error) -> Option<i32> {
    e.chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .and_then(|io| io.raw_os_error())
}

/// What the kernel answered to one request.
pub(crate) struct Answer<R> {
    pub(crate) payloads: Vec<R>,
    /// The kernel flagged the dump as read across a change (NLM_F_DUMP_INTR).
    interrupted: bool,
}

/// A stream of link, address and neighbour changes.
pub struct Events {
    _rtnl: NlRouter,
    receiver: NlRouterReceiverHandle<u16, neli::genl::Genlmsghdr<u8, u16>>,
}

impl Events {
    pub fn subscribe() -> Result<Self> {
        let groups = Groups::new_bitmask(
            (libc::RTMGRP_NEIGH
                | libc::RTMGRP_LINK
                | libc::RTMGRP_IPV4_IFADDR
                | libc::RTMGRP_IPV6_IFADDR) as u32,
        );
        let (rtnl, receiver) = NlRouter::connect(NlFamily::Route, None, groups)
            .context("subscribing to rtnetlink events")?;
        Ok(Self {
            _rtnl: rtnl,
            receiver,
        })
    }

    /// Blocks until the next event the dataplane cares about.
    pub fn next_event(&mut self) -> Result<Event> {
        loop {
            let msg = self
                .receiver
                .next_typed::<u16, Buffer>()
                .ok_or_else(|| anyhow!("rtnetlink event socket closed"))?
                .context("rtnetlink event")?;
            if let Some(event) = decode_event(msg)? {
                return Ok(event);
            }
        }
    }
}

fn decode_event(msg: Nlmsghdr<u16, Buffer>) -> Result<Option<Event>> {
    let ty = Rtm::from(*msg.nl_type());
    Ok(match ty {
        Rtm::Newneigh | Rtm::Delneigh => {
            let msg = msg
                .to_typed::<Rtm, Ndmsg>()
                .context("decoding a neighbour event")?;
            msg.get_payload().and_then(decode_neighbour).map(|n| {
                if ty == Rtm::Delneigh {
                    Event::NeighbourGone(n)
                } else {
                    Event::Neighbour(n)
                }
            })
        }
        Rtm::Newlink => {
            let msg = msg
                .to_typed::<Rtm, Ifinfomsg>()
                .context("decoding a link event")?;
            msg.get_payload().and_then(decode_link).map(Event::Link)
        }
        Rtm::Dellink => {
            let msg = msg
                .to_typed::<Rtm, Ifinfomsg>()
                .context("decoding a link event")?;
            msg.get_payload()
                .map(|i| Event::LinkGone(*i.ifi_index() as u32))
        }
        Rtm::Newaddr | Rtm::Deladdr => {
            let msg = msg
                .to_typed::<Rtm, Ifaddrmsg>()
                .context("decoding an address event")?;
            msg.get_payload().and_then(decode_addr).map(|a| {
                if ty == Rtm::Newaddr {
                    Event::AddrAdded(a)
                } else {
                    Event::AddrRemoved(a)
                }
            })
        }
        _ => None,
    })
}

fn decode_link(info: &Ifinfomsg) -> Option<Link> {
    let attrs = info.rtattrs().get_attr_handle();
    let name = attrs
        .get_attr_payload_as_with_len::<String>(Ifla::Ifname)
        .ok()?
        .trim_end_matches('\0')
        .to_string();
    let mac = attrs
        .get_attribute(Ifla::Address)
        .and_then(|a| <[u8; 6]>::try_from(a.rta_payload().as_ref()).ok())
        .unwrap_or_default();
    let mtu = attrs.get_attr_payload_as::<u32>(Ifla::Mtu).unwrap_or(1500);
    let flags = info.ifi_flags();
    Some(Link {
        ifindex: *info.ifi_index() as u32,
        name,
        mac,
        mtu,
        up: flags.contains(Iff::UP) && flags.contains(Iff::LOWERUP),
    })
}

fn decode_neighbour(msg: &Ndmsg) -> Option<Neighbour> {
    let attrs = msg.rtattrs().get_attr_handle();
    let dst = attrs.get_attribute(Nda::Dst)?;
    let addr = ip_from_bytes(dst.rta_payload().as_ref())?;
    let usable =
        Nud::REACHABLE | Nud::STALE | Nud::DELAY | Nud::PROBE | Nud::PERMANENT | Nud::NOARP;
    let mac = attrs
        .get_attribute(Nda::Lladdr)
        .and_then(|a| <[u8; 6]>::try_from(a.rta_payload().as_ref()).ok())
        .filter(|_| msg.ndm_state().intersects(usable));
    Some(Neighbour {
        ifindex: *msg.ndm_index() as u32,
        addr,
        mac,
    })
}

fn decode_addr(msg: &Ifaddrmsg) -> Option<LocalAddr> {
    let attrs = msg.rtattrs().get_attr_handle();
    // IFA_LOCAL is the address itself on point-to-point links; IFA_ADDRESS otherwise.
    let a = attrs
        .get_attribute(Ifa::Local)
        .or_else(|| attrs.get_attribute(Ifa::Address))?;
    Some(LocalAddr {
        ifindex: *msg.ifa_index(),
        addr: ip_from_bytes(a.rta_payload().as_ref())?,
    })
}

pub(crate) fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

/// ifindex of an interface by name, or an error naming it.
pub fn ifindex_of(name: &str) -> Result<u32> {
    match nix::net::if_::if_nametoindex(name) {
        Ok(i) => Ok(i),
        Err(_) => bail!("no interface named {name:?}"),
    }
}
