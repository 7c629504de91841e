//! The hello datagram: what a router says on a mesh link, and the checks a heard one must
//! pass before it is even a candidate (it still proves nothing: see `verify`).

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use prost::Message;
use x0_proto::brain::v1 as pb;

use super::link::Link;

/// The link-local group hellos go to (IANA: "any private experiment").
pub const GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x114);
pub const VERSION: u32 = 1;
/// A hello is one small datagram; anything longer is not one.
pub const MAX_LEN: usize = 512;

/// A hello that passed the checks, and the interface it came in on.
#[derive(Clone, Debug, PartialEq)]
pub struct Heard {
    pub router: String,
    /// The mesh link it came in on.
    pub interface: String,
    pub ifindex: u32,
    pub brain: SocketAddr,
    pub addrs: Vec<IpAddr>,
    /// Zero: the sender is going away.
    pub interval: Duration,
    pub sequence: u64,
}

/// Why a datagram was not taken (the metric's `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Below 255: it was routed here, so it is not from this link.
    HopLimit,
    TooLong,
    Malformed,
    Version,
    Name,
    Interval,
    /// An address not on the link it came in on, or a brain address not among them.
    Addresses,
    /// Our own (a looped-back copy), or a neighbour we have statically.
    Ours,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::HopLimit => "hop-limit",
            Refused::TooLong => "too-long",
            Refused::Malformed => "malformed",
            Refused::Version => "version",
            Refused::Name => "name",
            Refused::Interval => "interval",
            Refused::Addresses => "addresses",
            Refused::Ours => "ours",
        }
    }
}

pub fn encode(h: &pb::Hello) -> Vec<u8> {
    h.encode_to_vec()
}

/// Decodes and checks a datagram that came in on `link` (every address it names must be
/// in one of the link's subnets); `us` is our router's name.
pub fn decode(bytes: &[u8], link: &Link, us: &str) -> Result<Heard, Refused> {
    if bytes.len() > MAX_LEN {
        return Err(Refused::TooLong);
    }
    let h = pb::Hello::decode(bytes).map_err(|_| Refused::Malformed)?;
    if h.version != VERSION {
        return Err(Refused::Version);
    }
    if !valid_name(&h.router) {
        return Err(Refused::Name);
    }
    if h.router == us {
        return Err(Refused::Ours);
    }
    if h.interval_ms != 0 && !(100..=60_000).contains(&h.interval_ms) {
        return Err(Refused::Interval);
    }
    let addrs: Vec<IpAddr> = h
        .addrs
        .iter()
        .map(|a| a.parse::<IpAddr>())
        .collect::<Result<_, _>>()
        .map_err(|_| Refused::Addresses)?;
    let brain: SocketAddr = h.brain.parse().map_err(|_| Refused::Addresses)?;
    if addrs.is_empty()
        || addrs.len() > 8
        || !addrs.iter().all(|a| link.on_link(*a))
        || !addrs.contains(&brain.ip())
    {
        return Err(Refused::Addresses);
    }
    Ok(Heard {
        router: h.router,
        interface: link.name.clone(),
        ifindex: link.ifindex,
        brain,
        addrs,
        interval: Duration::from_millis(h.interval_ms.into()),
        sequence: h.sequence,
    })
}

/// A router name fits in a SPIFFE path segment: 1 to 63 of letters, digits, `.-_`.
pub fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name != "."
        && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> pb::Hello {
        pb::Hello {
            version: VERSION,
            router: "r2".into(),
            brain: "198.18.12.2:7444".into(),
            addrs: vec!["198.18.12.2".into(), "2001:db8:12::2".into()],
            interval_ms: 1000,
            sequence: 7,
        }
    }

    fn eth1() -> Link {
        Link {
            name: "eth1".into(),
            ifindex: 3,
            nets: vec![
                "198.18.12.1/24".parse().unwrap(),
                "2001:db8:12::1/64".parse().unwrap(),
            ],
        }
    }

    fn check(h: &pb::Hello) -> Result<Heard, Refused> {
        decode(&encode(h), &eth1(), "r1")
    }

    #[test]
    fn a_good_hello_is_heard_with_its_interface() {
        let heard = check(&hello()).unwrap();
        assert_eq!(heard.router, "r2");
        assert_eq!((heard.ifindex, heard.interface.as_str()), (3, "eth1"));
        assert_eq!(heard.brain.port(), 7444);
        assert_eq!(heard.addrs.len(), 2);
        assert_eq!(heard.interval, Duration::from_secs(1));
        let leaving = pb::Hello {
            interval_ms: 0,
            ..hello()
        };
        assert_eq!(check(&leaving).unwrap().interval, Duration::ZERO);
    }

    #[test]
    fn bad_hellos_are_refused_by_reason() {
        let cases: Vec<(pb::Hello, Refused)> = vec![
            (
                pb::Hello {
                    version: 2,
                    ..hello()
                },
                Refused::Version,
            ),
            (
                pb::Hello {
                    router: "".into(),
                    ..hello()
                },
                Refused::Name,
            ),
            (
                pb::Hello {
                    router: "r/../x".into(),
                    ..hello()
                },
                Refused::Name,
            ),
            (
                pb::Hello {
                    router: "r1".into(),
                    ..hello()
                },
                Refused::Ours,
            ),
            (
                pb::Hello {
                    interval_ms: 5,
                    ..hello()
                },
                Refused::Interval,
            ),
            // An address of another link: it would make us send traffic elsewhere.
            (
                pb::Hello {
                    addrs: vec!["198.18.99.2".into()],
                    brain: "198.18.99.2:7444".into(),
                    ..hello()
                },
                Refused::Addresses,
            ),
            // A brain somewhere else in the mesh than on this link.
            (
                pb::Hello {
                    brain: "198.18.34.4:7444".into(),
                    ..hello()
                },
                Refused::Addresses,
            ),
            (
                pb::Hello {
                    addrs: vec!["not an address".into()],
                    ..hello()
                },
                Refused::Addresses,
            ),
            (
                pb::Hello {
                    addrs: vec![],
                    ..hello()
                },
                Refused::Addresses,
            ),
        ];
        for (h, why) in cases {
            assert_eq!(check(&h), Err(why), "{h:?}");
        }
        assert_eq!(decode(&[0xff; 40], &eth1(), "r1"), Err(Refused::Malformed));
        assert_eq!(decode(&[0; 600], &eth1(), "r1"), Err(Refused::TooLong));
    }
}
