//! What the dataplane asks of the kernel over rtnetlink (neli): links, local addresses,
//! neighbours, neighbour resolution, and a stream of changes to all of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, anyhow, bail};
use neli::{
    consts::{
        nl::NlmF,
        rtnl::{Ifa, Iff, Ifla, Nda, Ntf, Nud, RtAddrFamily, Rtm, Rtn},
        socket::NlFamily,
    },
    nl::{NlPayload, Nlmsghdr},
    router::synchronous::{NlRouter, NlRouterReceiverHandle},
    rtnl::{
        Ifaddrmsg, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, Ndmsg, NdmsgBuilder,
        RtattrBuilder,
    },
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

/// Request/response rtnetlink socket.
pub struct Netlink {
    rtnl: NlRouter,
}

impl Netlink {
    pub fn connect() -> Result<Self> {
        let (rtnl, _) = NlRouter::connect(NlFamily::Route, None, Groups::empty())
            .context("opening an rtnetlink socket")?;
        Ok(Self { rtnl })
    }

    pub fn links(&self) -> Result<Vec<Link>> {
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .build()?;
        let recv = self
            .rtnl
            .send::<_, _, Rtm, Ifinfomsg>(Rtm::Getlink, NlmF::DUMP, NlPayload::Payload(msg))
            .context("RTM_GETLINK")?;
        let mut links = Vec::new();
        for response in recv {
            let response = response.context("RTM_GETLINK response")?;
            if let Some(link) = response.get_payload().and_then(decode_link) {
                links.push(link);
            }
        }
        Ok(links)
    }

    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    /// Every local address (both families), link-local ones included.
    pub fn addresses(&self) -> Result<Vec<LocalAddr>> {
        let mut out = Vec::new();
        for family in [RtAddrFamily::Inet, RtAddrFamily::Inet6] {
            let msg = IfaddrmsgBuilder::default()
                .ifa_family(family)
                .ifa_prefixlen(0)
                .ifa_scope(neli::consts::rtnl::RtScope::Universe)
                .ifa_index(0)
                .build()?;
            let recv = self
                .rtnl
                .send::<_, _, Rtm, Ifaddrmsg>(Rtm::Getaddr, NlmF::DUMP, NlPayload::Payload(msg))
                .context("RTM_GETADDR")?;
            for response in recv {
                let response = response.context("RTM_GETADDR response")?;
                if let Some(a) = response.get_payload().and_then(decode_addr) {
                    out.push(a);
                }
            }
        }
        Ok(out)
    }

    pub fn neighbours(&self) -> Result<Vec<Neighbour>> {
        let mut out = Vec::new();
        for family in [RtAddrFamily::Inet, RtAddrFamily::Inet6] {
            let msg = NdmsgBuilder::default()
                .ndm_family(family)
                .ndm_index(0)
                .ndm_state(Nud::empty())
                .ndm_type(Rtn::Unspec)
                .build()?;
            let recv = self
                .rtnl
                .send::<_, _, Rtm, Ndmsg>(Rtm::Getneigh, NlmF::DUMP, NlPayload::Payload(msg))
                .context("RTM_GETNEIGH")?;
            for response in recv {
                let response = response.context("RTM_GETNEIGH response")?;
                if let Some(n) = response.get_payload().and_then(decode_neighbour) {
                    out.push(n);
                }
            }
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
        let recv = self
            .rtnl
            .send::<_, _, Rtm, Ndmsg>(
                Rtm::Newneigh,
                NlmF::CREATE | NlmF::REPLACE | NlmF::ACK,
                NlPayload::Payload(msg),
            )
            .with_context(|| format!("RTM_NEWNEIGH (resolve {addr} on ifindex {ifindex})"))?;
        for response in recv {
            response.with_context(|| format!("resolving {addr} on ifindex {ifindex}"))?;
        }
        Ok(())
    }
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

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
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
