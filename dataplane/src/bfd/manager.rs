//! The BFD thread: runs every session's timers and packets on its own OS thread (raised to
//! real-time priority where allowed), so that probes keep their pace when the host is
//! busy. Talks to the daemon through channels.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, Sender, TryRecvError, channel},
    },
    time::{Duration, Instant},
};

use super::{
    packet::{BfdState, ControlPacket, Malformed},
    session::{Change, Session, SessionConfig},
    transport::{Path, Transport},
};
use crate::{config::BfdTimers, tables::NextHopSpec};

/// A session to run, for one next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSpec {
    pub path: Path,
    pub timers: BfdTimers,
}

pub enum Command {
    Add(NextHopSpec, SessionSpec),
    /// The MACs for a session's frames (source: our port; destination: the neighbour's,
    /// None while unresolved).
    Neighbour(NextHopSpec, [u8; 6], Option<[u8; 6]>),
    Remove(NextHopSpec),
    /// Ends the thread; with `admin_down`, every session first tells its peer AdminDown
    /// (a hitless restart: the fast path forwards on, so the peers keep their next hops).
    Stop {
        admin_down: bool,
    },
}

/// A session changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEvent {
    pub nexthop: NextHopSpec,
    pub change: Change,
    pub at: Instant,
    /// The session's detection time when it changed.
    pub detection_time: Duration,
}

/// What the BFD thread has seen (malformed packets never reach a session).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BfdStats {
    pub rx_valid: u64,
    pub rx_malformed: HashMap<Malformed, u64>,
    /// Not TTL/hop limit 255 (RFC 5881: not from a neighbour on the link).
    pub rx_bad_ttl: u64,
    /// Valid, but for no session of ours.
    pub rx_no_session: u64,
    pub tx: u64,
    pub tx_errors: u64,
    /// Of `tx`: sent through AF_XDP, and through UDP sockets.
    pub tx_af_xdp: u64,
    pub tx_udp: u64,
}

/// A session as the daemon sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub nexthop: NextHopSpec,
    pub path: Path,
    pub state: BfdState,
    pub remote_state: BfdState,
    pub local_disc: u32,
    pub remote_disc: u32,
    pub tx_interval: Duration,
    pub detection_time: Duration,
    pub rx_packets: u64,
    pub rx_interval: Duration,
}

pub struct BfdHandle {
    commands: Sender<Command>,
    pub stats: Arc<Mutex<BfdStats>>,
    pub sessions: Arc<Mutex<Vec<SessionInfo>>>,
    pub transport: &'static str,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BfdHandle {
    pub fn add(&self, nexthop: NextHopSpec, spec: SessionSpec) {
        let _ = self.commands.send(Command::Add(nexthop, spec));
    }
    pub fn neighbour(&self, nexthop: NextHopSpec, src_mac: [u8; 6], dst_mac: Option<[u8; 6]>) {
        let _ = self
            .commands
            .send(Command::Neighbour(nexthop, src_mac, dst_mac));
    }
    pub fn remove(&self, nexthop: NextHopSpec) {
        let _ = self.commands.send(Command::Remove(nexthop));
    }
}

impl BfdHandle {
    /// Stops the sessions saying AdminDown to every peer, for a restart that leaves the
    /// fast path forwarding (RFC 5880 6.8.16, RFC 5882 3.2).
    pub fn stop_for_restart(mut self) {
        self.stop(true);
    }

    fn stop(&mut self, admin_down: bool) {
        let _ = self.commands.send(Command::Stop { admin_down });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BfdHandle {
    fn drop(&mut self) {
        self.stop(false);
    }
}

struct Entry {
    nexthop: NextHopSpec,
    path: Path,
    session: Session,
}

/// Starts the BFD thread over `transport`; state changes arrive on `events`.
pub fn spawn(
    transport: Box<dyn Transport>,
    events: Sender<StateEvent>,
) -> std::io::Result<BfdHandle> {
    let (tx, rx) = channel();
    let stats = Arc::new(Mutex::new(BfdStats::default()));
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let name = transport.name();
    let (st, se) = (stats.clone(), sessions.clone());
    let thread = std::thread::Builder::new()
        .name("bfd".into())
        .spawn(move || run(transport, rx, events, st, se))?;
    Ok(BfdHandle {
        commands: tx,
        stats,
        sessions,
        transport: name,
        thread: Some(thread),
    })
}

fn raise_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        tracing::info!("BFD thread runs at real-time priority (SCHED_FIFO 10)");
    } else {
        tracing::warn!(error = %std::io::Error::last_os_error(), "BFD thread keeps normal priority");
    }
}

fn discriminator(seed: &mut u64) -> u32 {
    loop {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let d = (*seed >> 16) as u32;
        if d != 0 {
            return d;
        }
    }
}

fn run(
    mut transport: Box<dyn Transport>,
    commands: Receiver<Command>,
    events: Sender<StateEvent>,
    stats: Arc<Mutex<BfdStats>>,
    infos: Arc<Mutex<Vec<SessionInfo>>>,
) {
    raise_priority();
    let mut seed = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id() as u64);
        h.finish() | 1
    };
    let mut sessions: HashMap<u32, Entry> = HashMap::new();
    let mut last_publish = Instant::now();
    loop {
        loop {
            match commands.try_recv() {
                Ok(Command::Add(nexthop, spec)) => {
                    if sessions.values().any(|e| e.nexthop == nexthop) {
                        continue;
                    }
                    if let Err(e) = transport.open_path(&spec.path) {
                        tracing::warn!(peer = %spec.path.peer, iface = %spec.path.ifname, error = %e, "BFD session not started");
                        continue;
                    }
                    let cfg = SessionConfig {
                        desired_min_tx: Duration::from_millis(spec.timers.tx_interval_ms as u64),
                        required_min_rx: Duration::from_millis(spec.timers.rx_interval_ms as u64),
                        detect_mult: spec.timers.multiplier,
                    };
                    let mut disc = discriminator(&mut seed);
                    while sessions.contains_key(&disc) {
                        disc = discriminator(&mut seed);
                    }
                    tracing::info!(peer = %spec.path.peer, iface = %spec.path.ifname, local = %spec.path.local, disc, "BFD session started");
                    sessions.insert(
                        disc,
                        Entry {
                            nexthop,
                            path: spec.path,
                            session: Session::new(cfg, disc, Instant::now()),
                        },
                    );
                }
                Ok(Command::Neighbour(nexthop, src, dst)) => {
                    if let Some(e) = sessions.values().find(|e| e.nexthop == nexthop) {
                        transport.set_neighbour(&e.path, src, dst);
                    }
                }
                Ok(Command::Remove(nexthop)) => {
                    if let Some(d) = sessions
                        .iter()
                        .find(|(_, e)| e.nexthop == nexthop)
                        .map(|(d, _)| *d)
                    {
                        let e = sessions.remove(&d).expect("found");
                        transport.close_path(&e.path);
                    }
                }
                Ok(Command::Stop { admin_down }) => {
                    if admin_down {
                        say_admin_down(transport.as_mut(), &mut sessions);
                    }
                    return;
                }
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }

        let now = Instant::now();
        let mut next = now + Duration::from_millis(50);
        for e in sessions.values_mut() {
            let (change, packet) = e.session.poll_timers(now);
            if let Some(c) = change {
                report(&events, e, c, now);
            }
            if let Some(p) = packet {
                let ok = transport.send(&e.path, &p.encode()).is_ok();
                let mut s = stats.lock().expect("stats");
                if ok { s.tx += 1 } else { s.tx_errors += 1 }
            }
            next = next.min(e.session.next_deadline(now));
        }

        let wait = next.saturating_duration_since(Instant::now());
        match transport.recv(wait) {
            Ok(Some(r)) => {
                let now = Instant::now();
                let mut s = stats.lock().expect("stats");
                if r.ttl != 255 {
                    s.rx_bad_ttl += 1;
                    continue;
                }
                let p = match ControlPacket::decode(&r.payload) {
                    Ok(p) => p,
                    Err(m) => {
                        *s.rx_malformed.entry(m).or_default() += 1;
                        continue;
                    }
                };
                // Demultiplex: by our discriminator, or (when the peer does not know it
                // yet) by the source address and interface (RFC 5881 section 3).
                let disc = if p.your_disc != 0 {
                    Some(p.your_disc).filter(|d| sessions.contains_key(d))
                } else {
                    sessions
                        .iter()
                        .find(|(_, e)| e.path.peer == r.src && e.path.ifindex == r.ifindex)
                        .map(|(d, _)| *d)
                };
                let Some(e) = disc.and_then(|d| sessions.get_mut(&d)) else {
                    s.rx_no_session += 1;
                    continue;
                };
                s.rx_valid += 1;
                drop(s);
                if let Some(c) = e.session.on_packet(&p, now) {
                    report(&events, e, c, now);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "BFD receive");
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        if last_publish.elapsed() >= Duration::from_millis(100) {
            last_publish = Instant::now();
            let (xsk, udp) = transport.sent();
            {
                let mut s = stats.lock().expect("stats");
                if s.tx_af_xdp == 0 && xsk > 0 {
                    tracing::info!("BFD packets are leaving through AF_XDP");
                }
                (s.tx_af_xdp, s.tx_udp) = (xsk, udp);
            }
            let list = sessions
                .values()
                .map(|e| SessionInfo {
                    nexthop: e.nexthop,
                    path: e.path.clone(),
                    state: e.session.state(),
                    remote_state: e.session.remote_state(),
                    local_disc: e.session.local_disc(),
                    remote_disc: e.session.remote_disc(),
                    tx_interval: e.session.tx_interval(),
                    detection_time: e.session.detection_time(),
                    rx_packets: e.session.rx_packets(),
                    rx_interval: e.session.rx_interval(),
                })
                .collect();
            *infos.lock().expect("infos") = list;
        }
    }
}

/// Tells every peer whose session is up or coming up that ours goes AdminDown. Twice: the
/// process is about to exit and cannot repeat it for a detection time as 6.8.16 asks, and
/// one lost packet would turn a restart into a failure at the peer.
fn say_admin_down(transport: &mut dyn Transport, sessions: &mut HashMap<u32, Entry>) {
    let mut told = 0;
    for e in sessions.values_mut() {
        if !matches!(e.session.state(), BfdState::Up | BfdState::Init) {
            continue;
        }
        let bytes = e.session.admin_down().encode();
        for _ in 0..2 {
            let _ = transport.send(&e.path, &bytes);
        }
        told += 1;
    }
    tracing::info!(
        peers = told,
        "BFD: told the peers AdminDown (the fast path forwards on)"
    );
}

fn report(events: &Sender<StateEvent>, e: &Entry, change: Change, at: Instant) {
    tracing::info!(
        peer = %e.path.peer, iface = %e.path.ifname, from = %change.from.name(), to = %change.to.name(),
        diag = ?change.diag, "BFD session state"
    );
    let detection_time = e.session.detection_time();
    let _ = events.send(StateEvent {
        nexthop: e.nexthop,
        change,
        at,
        detection_time,
    });
}

#[cfg(test)]
mod tests {
    use std::{io, sync::mpsc};

    use super::*;
    use crate::bfd::{session::SessionConfig, transport::Received};

    /// A transport over channels: what the thread sends comes out of `sent`, and `inbox`
    /// feeds it packets.
    struct ChannelTransport {
        inbox: mpsc::Receiver<Received>,
        sent: mpsc::Sender<Vec<u8>>,
    }

    impl Transport for ChannelTransport {
        fn name(&self) -> &'static str {
            "test"
        }
        fn open_path(&mut self, _: &Path) -> io::Result<()> {
            Ok(())
        }
        fn close_path(&mut self, _: &Path) {}
        fn sent(&self) -> (u64, u64) {
            (0, 0)
        }
        fn send(&mut self, _: &Path, packet: &[u8]) -> io::Result<()> {
            let _ = self.sent.send(packet.to_vec());
            Ok(())
        }
        fn recv(&mut self, timeout: Duration) -> io::Result<Option<Received>> {
            Ok(self.inbox.recv_timeout(timeout).ok())
        }
    }

    fn wait(what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn malformed_packets_are_dropped_and_counted_without_touching_the_session() {
        let (inbox_tx, inbox) = mpsc::channel();
        let (sent, sent_rx) = mpsc::channel();
        let (events_tx, events) = mpsc::channel();
        let handle = spawn(Box::new(ChannelTransport { inbox, sent }), events_tx).unwrap();
        let nexthop = NextHopSpec {
            gateway: "198.18.12.2".parse().unwrap(),
            ifindex: 3,
        };
        let path = Path {
            ifindex: 3,
            ifname: "eth1".into(),
            local: "198.18.12.1".parse().unwrap(),
            peer: nexthop.gateway,
        };
        handle.add(
            nexthop,
            SessionSpec {
                path,
                timers: BfdTimers {
                    tx_interval_ms: 10,
                    rx_interval_ms: 10,
                    multiplier: 3,
                },
            },
        );

        // A peer session, answering on its own thread, brings ours Up and keeps it Up.
        let cfg = SessionConfig {
            desired_min_tx: Duration::from_millis(10),
            required_min_rx: Duration::from_millis(10),
            detect_mult: 3,
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (peer_stop, peer_inbox) = (stop.clone(), inbox_tx.clone());
        let (last_tx, last_rx) = mpsc::channel::<Vec<u8>>();
        let peer_thread = std::thread::spawn(move || {
            let mut peer = Session::new(cfg, 77, Instant::now());
            while !peer_stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(bytes) = sent_rx.recv_timeout(Duration::from_millis(1)) {
                    peer.on_packet(&ControlPacket::decode(&bytes).unwrap(), Instant::now());
                }
                if let (_, Some(p)) = peer.poll_timers(Instant::now()) {
                    let bytes = p.encode().to_vec();
                    let _ = last_tx.send(bytes.clone());
                    let _ = peer_inbox.send(Received {
                        src: "198.18.12.2".parse().unwrap(),
                        ifindex: 3,
                        ttl: 255,
                        payload: bytes,
                    });
                }
            }
        });
        let deliver = |bytes: Vec<u8>, ttl: u8| {
            inbox_tx
                .send(Received {
                    src: nexthop.gateway,
                    ifindex: 3,
                    ttl,
                    payload: bytes,
                })
                .unwrap();
        };
        wait("session up", || {
            events.try_iter().any(|e| e.change.to == BfdState::Up)
        });
        wait("published", || {
            handle
                .sessions
                .lock()
                .unwrap()
                .first()
                .is_some_and(|s| s.state == BfdState::Up)
        });
        let before = handle.sessions.lock().unwrap()[0].clone();
        let valid_before = handle.stats.lock().unwrap().rx_valid;

        // Malformed: each must be counted under its reason and change nothing.
        let good = {
            let latest = last_rx
                .try_iter()
                .last()
                .unwrap_or_else(|| last_rx.recv().unwrap());
            let mut p = ControlPacket::decode(&latest).unwrap();
            p.state = BfdState::Down; // would take the session down if it were accepted
            p.encode()
        };
        let mut bad: Vec<(Vec<u8>, Malformed)> = vec![
            (good[..20].to_vec(), Malformed::Short),
            (
                {
                    let mut b = good.to_vec();
                    b[0] = (2 << 5) | b[0] & 0x1f;
                    b
                },
                Malformed::Version,
            ),
            (
                {
                    let mut b = good.to_vec();
                    b[3] = 30;
                    b
                },
                Malformed::Length,
            ),
            (
                {
                    let mut b = good.to_vec();
                    b[2] = 0;
                    b
                },
                Malformed::DetectMult,
            ),
            (
                {
                    let mut b = good.to_vec();
                    b[4..8].copy_from_slice(&[0; 4]);
                    b
                },
                Malformed::MyDiscZero,
            ),
        ];
        bad.push((
            {
                let mut b = good.to_vec();
                b[1] = (3 << 6) | 0x01;
                b
            },
            Malformed::Multipoint,
        ));
        for (bytes, _) in &bad {
            deliver(bytes.clone(), 255);
        }
        deliver(good.to_vec(), 64); // right packet, wrong TTL: not from a neighbour
        wait("counted", || {
            let s = handle.stats.lock().unwrap();
            s.rx_malformed.values().sum::<u64>() == bad.len() as u64 && s.rx_bad_ttl == 1
        });
        let stats = handle.stats.lock().unwrap().clone();
        for (_, reason) in &bad {
            assert_eq!(stats.rx_malformed.get(reason), Some(&1), "{reason:?}");
        }
        assert!(stats.rx_valid >= valid_before);
        std::thread::sleep(Duration::from_millis(150)); // let the session list republish
        let after = handle.sessions.lock().unwrap()[0].clone();
        assert_eq!(
            (after.state, after.remote_disc, after.local_disc),
            (before.state, before.remote_disc, before.local_disc)
        );
        assert!(
            events.try_iter().all(|e| e.change.to != BfdState::Down),
            "no state change from bad packets"
        );
        assert_eq!(after.state, BfdState::Up);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        peer_thread.join().unwrap();
    }
}
