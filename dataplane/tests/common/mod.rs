//! A loaded dataplane with a known set of routes, for BPF_PROG_TEST_RUN tests and
//! benchmarks. Needs root (CAP_BPF, CAP_NET_ADMIN): without it the tests fail, loudly.
#![allow(dead_code)]

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU32, Ordering},
    },
};

use x0_dataplane::{
    Dataplane,
    counters::Counters,
    netlink::Link,
    tables::{NextHopSpec, RouteTarget},
};

pub const PORT_A: u32 = 1; // `lo`: a real ifindex in every namespace, so the DEVMAP takes it
pub const PORT_A_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa, 0x01];
pub const NEIGH_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb, 0x02];
pub const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xc, 0x03];
pub const PORT_MTU: u32 = 1500;

/// A dataplane in its own pin directory, removed again on drop.
pub struct Fixture {
    pub dp: Option<Dataplane>,
    pub pin_root: PathBuf,
    /// One fixture at a time per process: tests read the process's own mappings (smaps),
    /// which `cargo test`'s threads would share (nextest runs one test per process).
    _alone: MutexGuard<'static, ()>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

impl Fixture {
    /// Routes:
    /// - 198.18.2.0/24 and 2001:db8:2::/64 via a resolved neighbour on port A,
    /// - 198.18.9.0/24 via a neighbour whose MAC is unknown,
    /// - 198.18.1.1/32 and 2001:db8:1::1/128 local,
    /// - 198.18.7.0/24 via a port with a 576-byte MTU,
    /// - FIB fallback off, so anything else is "no route".
    pub fn new() -> Self {
        Self::with_conntrack(x0_common::policy::CT_DEFAULT_ENTRIES)
    }

    /// The same, with a connection table of `entries`.
    pub fn with_conntrack(entries: u32) -> Self {
        use x0_common::map_names::{CONNTRACK, CONNTRACK_V4};
        Self::with_sizes(&[(CONNTRACK, entries), (CONNTRACK_V4, entries)])
    }

    /// The same, with these map capacities (`Dataplane::load_sized`).
    pub fn with_sizes(sizes: &[(&str, u32)]) -> Self {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "BPF_PROG_TEST_RUN tests need root (CAP_BPF and CAP_NET_ADMIN); run them through ./scripts/test.sh"
        );
        // A test that failed holding it poisons it; the next may still go.
        let alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let pin_root = PathBuf::from(format!(
            "/sys/fs/bpf/x0-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut dp = Dataplane::load_sized(&pin_root, sizes).expect("load the XDP object");
        dp.set_fib_fallback(false).unwrap();
        dp.add_port(&Link {
            ifindex: PORT_A,
            name: "lo".into(),
            mac: PORT_A_MAC,
            mtu: PORT_MTU,
            up: true,
        })
        .unwrap();
        let v4 = |s: &str| -> IpAddr { s.parse().unwrap() };
        let t = dp.tables();
        t.upsert(
            "198.18.2.0/24".parse().unwrap(),
            RouteTarget::NextHops(vec![NextHopSpec {
                gateway: v4("198.18.12.2"),
                ifindex: PORT_A,
            }]),
        )
        .unwrap();
        t.upsert(
            "2001:db8:2::/64".parse().unwrap(),
            RouteTarget::NextHops(vec![NextHopSpec {
                gateway: v4("2001:db8:12::2"),
                ifindex: PORT_A,
            }]),
        )
        .unwrap();
        t.upsert(
            "198.18.9.0/24".parse().unwrap(),
            RouteTarget::NextHops(vec![NextHopSpec {
                gateway: v4("198.18.12.9"),
                ifindex: PORT_A,
            }]),
        )
        .unwrap();
        t.upsert("198.18.1.1/32".parse().unwrap(), RouteTarget::Local)
            .unwrap();
        t.upsert("2001:db8:1::1/128".parse().unwrap(), RouteTarget::Local)
            .unwrap();
        assert!(
            t.set_neighbour(PORT_A, v4("198.18.12.2"), Some(NEIGH_MAC))
                .unwrap()
        );
        assert!(
            t.set_neighbour(PORT_A, v4("2001:db8:12::2"), Some(NEIGH_MAC))
                .unwrap()
        );
        Self {
            dp: Some(dp),
            pin_root,
            _alone: alone,
        }
    }

    pub fn dp(&mut self) -> &mut Dataplane {
        self.dp.as_mut().unwrap()
    }

    pub fn counters(&self) -> Counters {
        self.dp.as_ref().unwrap().counters().unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(dp) = self.dp.take() {
            let _ = dp.shutdown(true);
        }
    }
}
