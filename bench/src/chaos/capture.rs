//! The soak's control packets on the links of a few routers (tcpdump in their namespaces,
//! as an operator would look), and the largest burst on any one link: do timers started
//! together stay apart (jittered hellos, refreshes and syncs), or do they pile up?

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use etherparse::{LaxSlicedPacket, TransportSlice};
use x0_lab::{Lab, brains::BRAIN_PORT, netns};

/// BFD (RFC 5881), the brains' hellos, the brains' gRPC (floods, syncs, verification).
const BFD_PORT: u16 = 3784;
const HELLO_PORT: u16 = 7446;
/// The windows a burst is counted in.
pub const WINDOWS_MS: [u64; 3] = [10, 100, 1000];
/// Linux "cooked" capture v2: the interface index of each packet (tcpdump -i any).
const LINKTYPE_LINUX_SLL2: u32 = 276;
const SLL2_LEN: usize = 20;

/// tcpdump running in some routers' namespaces.
pub struct Capture {
    running: Vec<(String, Child, PathBuf)>,
}

/// One kind of control packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Bfd,
    Hello,
    Brain,
}

/// The largest count of control packets on one link within a window.
#[derive(Clone, Debug, Default)]
pub struct Burst {
    /// "all" control packets, or "timers" (BFD and hellos: what jitter keeps apart; the
    /// brains' gRPC comes in TCP segments of one transfer).
    pub of: &'static str,
    pub window_ms: u64,
    pub packets: usize,
    /// "r7 eth2", and what the burst was made of.
    pub link: String,
    pub kinds: BTreeMap<Kind, usize>,
    /// The mean count per window over the busiest link's whole capture.
    pub mean: f64,
}

impl Capture {
    /// Starts tcpdump on every interface of each router (`-i any`), control ports only.
    pub fn start(lab: &Lab, routers: &[String]) -> Result<Capture> {
        let filter =
            format!("udp port {BFD_PORT} or udp port {HELLO_PORT} or tcp port {BRAIN_PORT}");
        let mut running = Vec::new();
        for r in routers {
            let file = lab.file(r, "pcap");
            let child = Command::new("ip")
                .args(["netns", "exec", &lab.ns(r), "tcpdump", "-i", "any", "-y"])
                .args(["LINUX_SLL2", "-nn", "-s", "128", "-B", "4096", "-w"])
                .arg(&file)
                .arg(&filter)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("tcpdump (apt install tcpdump)")?;
            running.push((r.clone(), child, file));
        }
        // tcpdump opens its sockets before it writes the file's header.
        std::thread::sleep(Duration::from_secs(1));
        Ok(Capture { running })
    }

    /// Stops the captures (SIGINT: tcpdump writes out what it holds) and finds the bursts
    /// of all control packets and of the timers' alone.
    pub fn stop(mut self, lab: &Lab) -> Result<Vec<Burst>> {
        let mut links: HashMap<String, Vec<(u64, Kind)>> = HashMap::new();
        for (router, mut child, file) in std::mem::take(&mut self.running) {
            interrupt(&mut child)?;
            let names = interface_names(&lab.ns(&router))?;
            for (ifindex, packets) in read_pcap(&file)? {
                // Loopback carries the brain's calls to its own dataplane: no link.
                match names.get(&ifindex) {
                    Some(name) if name != "lo" => {
                        links.insert(format!("{router} {name}"), packets);
                    }
                    _ => {}
                }
            }
        }
        if links.is_empty() {
            bail!("tcpdump captured no control packets");
        }
        let timers: HashMap<String, Vec<(u64, Kind)>> = links
            .iter()
            .map(|(l, p)| {
                let t = p.iter().filter(|(_, k)| *k != Kind::Brain).copied();
                (l.clone(), t.collect())
            })
            .collect();
        let mut bursts = Vec::new();
        for (of, packets) in [("all", &links), ("timers", &timers)] {
            for &w in &WINDOWS_MS {
                bursts.push(Burst {
                    of,
                    ..largest_burst(packets, w)
                });
            }
        }
        Ok(bursts)
    }
}

/// SIGINT (tcpdump writes out what it holds), then its exit.
fn interrupt(child: &mut Child) -> Result<()> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
    child.wait()?;
    Ok(())
}

/// A soak that fails midway leaves no tcpdump behind (one did, holding its namespace).
impl Drop for Capture {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.running {
            let _ = interrupt(child);
        }
    }
}

/// The busiest window of `window_ms` on any link (windows slide packet by packet).
fn largest_burst(links: &HashMap<String, Vec<(u64, Kind)>>, window_ms: u64) -> Burst {
    let window_ns = window_ms * 1_000_000;
    let mut best = Burst {
        window_ms,
        ..Burst::default()
    };
    for (link, packets) in links {
        let mut start = 0;
        for end in 0..packets.len() {
            while packets[end].0 - packets[start].0 >= window_ns {
                start += 1;
            }
            let count = end - start + 1;
            if count > best.packets {
                let mut kinds = BTreeMap::new();
                for (_, k) in &packets[start..=end] {
                    *kinds.entry(*k).or_default() += 1;
                }
                let span_ns = packets.last().map_or(0, |l| l.0) - packets[0].0;
                let windows = (span_ns as f64 / window_ns as f64).max(1.0);
                best = Burst {
                    of: "all",
                    window_ms,
                    packets: count,
                    link: link.clone(),
                    kinds,
                    mean: packets.len() as f64 / windows,
                };
            }
        }
    }
    best
}

/// Interface index -> name in a namespace.
fn interface_names(ns: &str) -> Result<HashMap<u32, String>> {
    let out = netns::exec_ok(ns, &["ip", "-o", "link", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split(": ");
            let index = f.next()?.trim().parse().ok()?;
            let name = f.next()?.split('@').next()?.to_string();
            Some((index, name))
        })
        .collect())
}

/// A pcap file's control packets by interface index: (time in ns, kind), in time order.
fn read_pcap(path: &Path) -> Result<HashMap<u32, Vec<(u64, Kind)>>> {
    let data = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    if data.len() < 24 {
        bail!("{}: no pcap header", path.display());
    }
    let nanos = match u32_at(&data, 0) {
        0xa1b2_c3d4 => false,
        0xa1b2_3c4d => true,
        m => bail!("{}: not a little-endian pcap file ({m:#x})", path.display()),
    };
    if u32_at(&data, 20) != LINKTYPE_LINUX_SLL2 {
        bail!("{}: not a LINUX_SLL2 capture", path.display());
    }
    let mut out: HashMap<u32, Vec<(u64, Kind)>> = HashMap::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let (sec, frac, len) = (
            u32_at(&data, at) as u64,
            u32_at(&data, at + 4) as u64,
            u32_at(&data, at + 8) as usize,
        );
        let frame = data
            .get(at + 16..at + 16 + len)
            .context("a truncated record")?;
        at += 16 + len;
        let ns = sec * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        if let Some((ifindex, kind)) = classify(frame) {
            out.entry(ifindex).or_default().push((ns, kind));
        }
    }
    Ok(out)
}

/// The interface index (SLL2 header, big-endian) and kind of a captured frame.
fn classify(frame: &[u8]) -> Option<(u32, Kind)> {
    let ifindex = u32::from_be_bytes(frame.get(4..8)?.try_into().ok()?);
    let ip = LaxSlicedPacket::from_ip(frame.get(SLL2_LEN..)?).ok()?;
    let kind = match ip.transport? {
        TransportSlice::Udp(u) if u.destination_port() == BFD_PORT => Kind::Bfd,
        TransportSlice::Udp(u) if u.destination_port() == HELLO_PORT => Kind::Hello,
        TransportSlice::Tcp(_) => Kind::Brain,
        _ => return None,
    };
    Some((ifindex, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_window_slides_packet_by_packet() {
        let ms = 1_000_000;
        let packets = |times: &[u64]| times.iter().map(|t| (t * ms, Kind::Bfd)).collect();
        let links = HashMap::from([
            ("r1 eth1".to_string(), packets(&[0, 50, 100, 150])),
            // Three within 10 ms, across a fixed window's edge (8, 12, 17).
            ("r2 eth1".to_string(), packets(&[0, 8, 12, 17, 100])),
        ]);
        let b = largest_burst(&links, 10);
        assert_eq!((b.packets, b.link.as_str()), (3, "r2 eth1"));
        assert_eq!(b.kinds[&Kind::Bfd], 3);
        assert!(
            (b.mean - 0.5).abs() < 1e-9,
            "5 packets over 10 windows: {}",
            b.mean
        );
    }

    #[test]
    fn frames_are_told_apart_by_port() {
        let frame = |dst_port: u16| {
            let mut f = vec![0u8; SLL2_LEN];
            f[4..8].copy_from_slice(&7u32.to_be_bytes());
            let builder =
                etherparse::PacketBuilder::ipv6([0xfe; 16], [0xff; 16], 255).udp(49152, dst_port);
            builder.write(&mut f, &[0u8; 24]).unwrap();
            f
        };
        assert_eq!(classify(&frame(BFD_PORT)), Some((7, Kind::Bfd)));
        assert_eq!(classify(&frame(HELLO_PORT)), Some((7, Kind::Hello)));
        assert_eq!(classify(&frame(53)), None);
        assert_eq!(classify(&[0u8; 12]), None, "truncated");
    }
}
