//! A scripted BFD peer (RFC 5880 asynchronous mode over RFC 5881 single-hop UDP) in a
//! namespace: a minimal state machine of its own, written from the RFCs and not from the
//! dataplane's code, whose packets a test bends (timers, Demand, AdminDown, a wrong Your
//! Discriminator, the authentication bit, a TTL below 255, silence) while it records every
//! packet the dataplane sends, with its arrival time.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::netns::spawn_in_netns;

pub const ADMIN_DOWN: u8 = 0;
pub const DOWN: u8 = 1;
pub const INIT: u8 = 2;
pub const UP: u8 = 3;
/// Our discriminator.
pub const PEER_DISC: u32 = 0x5eed_0001;

/// One BFD Control packet's fields (RFC 5880 4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pkt {
    pub diag: u8,
    pub state: u8,
    pub poll: bool,
    pub final_: bool,
    pub demand: bool,
    pub auth: bool,
    pub mult: u8,
    pub my_disc: u32,
    pub your_disc: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
}

impl Pkt {
    pub fn bytes(&self) -> Vec<u8> {
        let flags = (self.state << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.auth) << 2)
            | (u8::from(self.demand) << 1);
        let mut b = vec![(1 << 5) | self.diag, flags, self.mult, 24];
        for w in [
            self.my_disc,
            self.your_disc,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            0,
        ] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        if self.auth {
            // Simple Password (type 1), key 1, "x0": a well-formed section (RFC 5880 4.2).
            b.extend_from_slice(&[1, 5, 1, b'x', b'0']);
            b[3] = b.len() as u8;
        }
        b
    }

    pub fn parse(b: &[u8]) -> Option<Pkt> {
        if b.len() < 24 || b[0] >> 5 != 1 {
            return None;
        }
        let word = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
        Some(Pkt {
            diag: b[0] & 0x1f,
            state: b[1] >> 6,
            poll: b[1] & 0x20 != 0,
            final_: b[1] & 0x10 != 0,
            demand: b[1] & 0x02 != 0,
            auth: b[1] & 0x04 != 0,
            mult: b[2],
            my_disc: word(4),
            your_disc: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
        })
    }
}

/// What the peer does; a test changes it while the peer runs.
#[derive(Clone, Debug)]
pub struct Script {
    /// How often it sends (its own periodic transmission).
    pub interval: Duration,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub mult: u8,
    pub demand: bool,
    pub ttl: u32,
    pub auth: bool,
    /// Sends this Your Discriminator instead of the dataplane's.
    pub your_disc: Option<u32>,
    /// Sends this state instead of its state machine's (AdminDown).
    pub state: Option<u8>,
    /// Sends nothing (not even Finals).
    pub silent: bool,
    /// Sets Poll until a Final arrives.
    pub poll: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            interval: Duration::from_millis(10),
            desired_min_tx_us: 10_000,
            required_min_rx_us: 10_000,
            mult: 3,
            demand: false,
            ttl: 255,
            auth: false,
            your_disc: None,
            state: None,
            silent: false,
            poll: false,
        }
    }
}

/// A packet the dataplane sent, when it arrived.
pub type Received = (Instant, Pkt);

/// The running peer; stops when dropped.
pub struct ScriptedPeer {
    pub script: Arc<Mutex<Script>>,
    received: Arc<Mutex<Vec<Received>>>,
    /// When the peer last sent a packet (and which).
    sent: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl ScriptedPeer {
    /// Runs the peer in `ns` at `local` (port 3784), talking to the dataplane at `remote`.
    pub fn start(ns: &str, local: Ipv4Addr, remote: Ipv4Addr) -> Result<ScriptedPeer> {
        let script = Arc::new(Mutex::new(Script::default()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let state = Shared {
            script: script.clone(),
            received: received.clone(),
            sent: sent.clone(),
            stop: stop.clone(),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = spawn_in_netns(ns, move || {
            let rx = UdpSocket::bind(SocketAddrV4::new(local, 3784)).context("bind 3784")?;
            let tx = UdpSocket::bind(SocketAddrV4::new(local, 49_999)).context("bind 49999")?;
            tx.connect(SocketAddrV4::new(remote, 3784))?;
            let _ = ready_tx.send(());
            run(rx, tx, state)
        })?;
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("the scripted peer did not start")?;
        Ok(ScriptedPeer {
            script,
            received,
            sent,
            stop,
            thread: Some(thread),
        })
    }

    pub fn set(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.script.lock().expect("script"));
    }

    /// Every packet received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received").clone()
    }

    /// Every packet sent so far.
    pub fn sent(&self) -> Vec<Received> {
        self.sent.lock().expect("sent").clone()
    }

    /// Waits up to `timeout` for a packet arriving at or after `since` that matches.
    pub fn wait_for(
        &self,
        since: Instant,
        timeout: Duration,
        what: impl Fn(&Pkt) -> bool,
    ) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let found = self
                .received()
                .into_iter()
                .find(|(t, p)| *t >= since && what(p));
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Shared {
    script: Arc<Mutex<Script>>,
    received: Arc<Mutex<Vec<Received>>>,
    sent: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

/// The peer's own session (RFC 5880 6.8.6, the subset a peer needs).
#[derive(Default)]
struct Machine {
    state: u8,
    remote_disc: u32,
    final_due: bool,
}

impl Machine {
    fn on_packet(&mut self, p: &Pkt, script: &mut Script) {
        self.remote_disc = p.my_disc;
        self.state = match (self.state, p.state) {
            (DOWN | ADMIN_DOWN, DOWN) => INIT,
            (DOWN | ADMIN_DOWN, INIT) | (INIT, INIT | UP) => UP,
            (UP, DOWN | ADMIN_DOWN) => DOWN,
            (s, _) => s,
        };
        if p.poll {
            self.final_due = true;
        }
        if p.final_ {
            script.poll = false;
        }
    }

    fn packet(&self, s: &Script) -> Pkt {
        Pkt {
            diag: 0,
            state: s.state.unwrap_or(self.state),
            poll: s.poll && !self.final_due,
            final_: self.final_due,
            demand: s.demand,
            auth: s.auth,
            mult: s.mult,
            my_disc: PEER_DISC,
            your_disc: s.your_disc.unwrap_or(self.remote_disc),
            desired_min_tx_us: s.desired_min_tx_us,
            required_min_rx_us: s.required_min_rx_us,
        }
    }
}

fn run(rx: UdpSocket, tx: UdpSocket, shared: Shared) -> Result<()> {
    let mut m = Machine {
        state: DOWN,
        ..Default::default()
    };
    let mut next_tx = Instant::now();
    let mut buf = [0u8; 256];
    while !shared.stop.load(Ordering::Relaxed) {
        let wait = next_tx.saturating_duration_since(Instant::now());
        rx.set_read_timeout(Some(wait.max(Duration::from_micros(200))))?;
        if let Ok(n) = rx.recv(&mut buf) {
            let now = Instant::now();
            if let Some(p) = Pkt::parse(&buf[..n]) {
                shared.received.lock().expect("received").push((now, p));
                m.on_packet(&p, &mut shared.script.lock().expect("script"));
            }
        }
        let periodic = Instant::now() >= next_tx;
        if !(periodic || m.final_due) {
            continue;
        }
        let s = shared.script.lock().expect("script").clone();
        if periodic {
            next_tx = Instant::now() + s.interval;
        }
        if s.silent {
            m.final_due = false;
            continue;
        }
        let p = m.packet(&s);
        tx.set_ttl(s.ttl)?;
        tx.send(&p.bytes())?;
        shared.sent.lock().expect("sent").push((Instant::now(), p));
        m.final_due = false;
    }
    Ok(())
}
