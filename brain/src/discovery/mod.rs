//! Neighbour discovery (docs/DISCOVERY.md): hellos on the mesh links name a router and
//! where its brain listens; a heard router becomes a neighbour only once its brain proves
//! its SVID over mutual TLS. One task owns the socket and the candidates and tells the
//! loop what changed.

pub mod candidates;
pub mod hello;
pub mod link;
pub mod verify;

use std::{
    collections::HashSet,
    net::{SocketAddr, SocketAddrV6},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use tokio::{net::UdpSocket, sync::mpsc};
use x0_identity::FileSource;
use x0_proto::brain::v1 as pb;

use candidates::Candidates;
pub use candidates::Change;
use hello::Heard;
use link::Link;

/// A verification has this long in all (its steps have their own, shorter limits).
const VERIFY_WITHIN: Duration = Duration::from_secs(8);

/// What the discovery task tells the loop.
#[derive(Debug)]
pub enum Found {
    /// A neighbour verified, or one gone.
    Change(Change),
    /// A datagram refused before it became a candidate (by `hello::Refused::label`).
    Refused(&'static str),
    /// A verification's outcome: the router, and why it failed (None: it passed).
    Verified(String, Option<verify::Failed>),
}

/// What the task needs: our name, listener and SVID, the links, the trust domain, and
/// the static neighbours (never discovered: their settings stand).
pub struct Settings {
    pub router: String,
    pub listen: SocketAddr,
    pub tls: FileSource,
    pub trust_domain: String,
    pub config: crate::config::DiscoveryConfig,
    pub statics: HashSet<String>,
}

/// Sends hellos; kept by the loop to say goodbye on the way out.
#[derive(Clone)]
pub struct Speaker {
    socket: Arc<UdpSocket>,
    settings: Arc<Settings>,
}

impl Speaker {
    /// One hello on every mesh link that has an address to offer.
    pub async fn say(&self, interval_ms: u32, sequence: u64) {
        let s = &self.settings;
        for l in link::links(&s.config.interfaces) {
            let _ = self.socket.join_multicast_v6(&hello::GROUP, l.ifindex);
            let Some(brain) = l.brain_addr(s.listen) else {
                continue;
            };
            let hello = pb::Hello {
                version: hello::VERSION,
                router: s.router.clone(),
                brain: brain.to_string(),
                addrs: l.nets.iter().map(|n| n.addr().to_string()).collect(),
                interval_ms,
                sequence,
            };
            let to = SocketAddrV6::new(hello::GROUP, s.config.port, 0, l.ifindex);
            if let Err(e) = self.socket.send_to(&hello::encode(&hello), to).await {
                tracing::debug!(iface = %l.name, error = %e, "hello not sent");
            }
        }
    }

    /// "Going away" on every link: the neighbours drop us at once.
    pub async fn goodbye(&self) {
        self.say(0, u64::MAX).await;
    }
}

/// Opens the socket and starts the task; what it finds comes out of `found`.
pub fn start(settings: Settings, found: mpsc::UnboundedSender<Found>) -> Result<Speaker> {
    let socket = link::socket(settings.config.port)
        .with_context(|| format!("discovery: UDP port {}", settings.config.port))?;
    let speaker = Speaker {
        socket: Arc::new(socket),
        settings: Arc::new(settings),
    };
    tokio::spawn(run(speaker.clone(), found));
    Ok(speaker)
}

async fn run(speaker: Speaker, found: mpsc::UnboundedSender<Found>) {
    let settings = speaker.settings.clone();
    let interval = Duration::from_millis(settings.config.hello_interval_ms.into());
    let mut rng = StdRng::seed_from_u64(seed());
    let (mut candidates, mut sequence) = (Candidates::default(), 0u64);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Option<verify::Failed>)>();
    let mut next_hello = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_hello) => {
                sequence += 1;
                speaker.say(settings.config.hello_interval_ms, sequence).await;
                // +-25 %: routers started together must not stay in step (RFC 8966).
                next_hello += interval.mul_f64(rng.random_range(0.75..1.25));
            }
            got = link::receive(&speaker.socket, &mut buf) => {
                let (n, from, hops) = match got {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading a hello failed");
                        continue;
                    }
                };
                let outcome = heard(&buf[..n], from, hops, &settings);
                tracing::debug!(%from, hops, ?outcome, "datagram on the hello port");
                match outcome {
                    Ok(h) => {
                        if let Some(c) = candidates.on_hello(h, Instant::now()) {
                            let _ = found.send(Found::Change(c));
                        }
                    }
                    Err(why) => { let _ = found.send(Found::Refused(why.label())); }
                }
            }
            Some((router, failure)) = done_rx.recv() => {
                let now = Instant::now();
                if let Some(c) = candidates.verified(&router, failure.is_none(), now) {
                    let _ = found.send(Found::Change(c));
                }
                let _ = found.send(Found::Verified(router, failure));
            }
            _ = tick.tick() => {
                let now = Instant::now();
                for c in candidates.expire(now) {
                    let _ = found.send(Found::Change(c));
                }
                for h in candidates.due(now) {
                    tracing::info!(router = %h.router, brain = %h.brain, ifindex = h.ifindex, "verifying a router that said hello");
                    spawn_verify(h, settings.clone(), done_tx.clone());
                }
            }
        }
    }
}

fn spawn_verify(
    h: Heard,
    settings: Arc<Settings>,
    done: mpsc::UnboundedSender<(String, Option<verify::Failed>)>,
) {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let verifying = verify::verify(&h, &settings.tls, &settings.trust_domain);
        let outcome = match tokio::time::timeout(VERIFY_WITHIN, verifying).await {
            Ok(o) => o,
            Err(_) => Err(verify::Failed {
                reason: "timeout",
                detail: format!("no verdict within {VERIFY_WITHIN:?}"),
            }),
        };
        tracing::debug!(router = %h.router, took = ?started.elapsed(), ok = outcome.is_ok(), "verified");
        let _ = done.send((h.router, outcome.err()));
    });
}

/// A datagram's checks: sent from this link (hop limit 255) by a link-local address on
/// one of our mesh links, then the hello's own (`hello::decode`).
fn heard(
    bytes: &[u8],
    from: SocketAddrV6,
    hops: i32,
    s: &Settings,
) -> Result<Heard, hello::Refused> {
    if hops != 255 {
        return Err(hello::Refused::HopLimit);
    }
    let ours: Vec<Link> = link::links(&s.config.interfaces);
    let Some(l) = ours
        .iter()
        .find(|l| l.ifindex == from.scope_id() && l.ifindex != 0)
    else {
        return Err(hello::Refused::Addresses);
    };
    if !from.ip().is_unicast_link_local() {
        return Err(hello::Refused::Addresses);
    }
    let h = hello::decode(bytes, l, &s.router)?;
    if s.statics.contains(&h.router) {
        return Err(hello::Refused::Ours);
    }
    Ok(h)
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()).rotate_left(32)
}
