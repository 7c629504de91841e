//! The connection to our router's dataplane: made (and remade) by the loop, with two
//! follower tasks that turn its event and stats streams into `Observation`s.

use tokio::{sync::mpsc, task::JoinHandle};
use tonic::transport::Channel;
use x0_identity::PqMode;
use x0_proto::dataplane::v1::{self as dpb, dataplane_client::DataplaneClient};
use x0ctl::client::{Target, connect};

use super::{RPC_TIMEOUT, events::Observation};
use crate::config::BrainConfig;

pub type Client = DataplaneClient<Channel>;

/// What the dataplane says of our links: its next hops (BFD, carrier) and interfaces.
pub struct View {
    pub next_hops: Vec<dpb::NextHopState>,
    pub interfaces: Vec<dpb::Interface>,
}

pub struct Dataplane {
    target: Target,
    /// BFD peers (address, interface) added over the current connection, and those the
    /// dataplane refused (BFD off there): neither is asked again until it reconnects.
    bfd_peers: std::collections::BTreeSet<(String, String)>,
    stats_every_ms: u32,
    client: Option<Client>,
    followers: Vec<JoinHandle<()>>,
    observations: mpsc::Sender<Observation>,
}

impl Dataplane {
    /// Not yet connected; the observations come out of the receiver.
    pub fn new(config: &BrainConfig) -> (Self, mpsc::Receiver<Observation>) {
        let (tx, rx) = mpsc::channel(256);
        let target = Target {
            addr: config.dataplane.clone(),
            svid: Some(config.tls.clone()),
            pq: PqMode::Required,
            server_id: None,
        };
        let dp = Dataplane {
            target,
            bfd_peers: Default::default(),
            stats_every_ms: config.telemetry_interval_ms as u32,
            client: None,
            followers: Vec::new(),
            observations: tx,
        };
        (dp, rx)
    }

    /// Connects if not connected, restarting the followers on the new connection.
    pub async fn ensure_connected(&mut self) {
        if self.client.is_some() {
            return;
        }
        match tokio::time::timeout(RPC_TIMEOUT, connect(&self.target)).await {
            Ok(Ok(c)) => {
                let dp = c.dataplane(64 << 20);
                for f in self.followers.drain(..) {
                    f.abort();
                }
                self.followers = follow(dp.clone(), self.observations.clone(), self.stats_every_ms);
                self.client = Some(dp);
                // A restarted dataplane holds none of them.
                self.bfd_peers.clear();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "dataplane unreachable; keeping what is installed")
            }
            Err(_) => tracing::warn!("dataplane connection timed out"),
        }
    }

    pub fn client(&mut self) -> Option<&mut Client> {
        self.client.as_mut()
    }

    /// The connection failed: the next tick makes a new one.
    pub fn lost(&mut self) {
        self.client = None;
    }

    /// BFD to every link address of every neighbour, whether or not a route uses it yet,
    /// so that adjacency never waits for routes (AddBfdPeer); peers of neighbours gone
    /// are let go.
    pub async fn sync_bfd_peers(&mut self, neighbors: &[crate::config::NeighborConfig]) {
        let Some(dp) = self.client.as_mut() else {
            return;
        };
        let wanted: std::collections::BTreeSet<(String, String)> = neighbors
            .iter()
            .flat_map(|n| n.addrs.iter().map(|a| (a.to_string(), n.interface.clone())))
            .collect();
        for (address, interface) in wanted.difference(&self.bfd_peers.clone()) {
            let req = dpb::AddBfdPeerRequest {
                address: address.clone(),
                interface: interface.clone(),
            };
            match tokio::time::timeout(RPC_TIMEOUT, dp.add_bfd_peer(req)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.code() == tonic::Code::FailedPrecondition => {
                    tracing::debug!(%address, %interface, error = %e.message(), "no BFD peer");
                }
                _ => return, // the next tick tries again
            }
            self.bfd_peers.insert((address.clone(), interface.clone()));
        }
        for (address, interface) in self.bfd_peers.clone().difference(&wanted) {
            let req = dpb::RemoveBfdPeerRequest {
                address: address.clone(),
                interface: interface.clone(),
            };
            match tokio::time::timeout(RPC_TIMEOUT, dp.remove_bfd_peer(req)).await {
                Ok(Ok(_)) => {}
                // Not held (never added, or refused because BFD is off there).
                Ok(Err(e))
                    if matches!(
                        e.code(),
                        tonic::Code::NotFound | tonic::Code::FailedPrecondition
                    ) => {}
                _ => return,
            }
            self.bfd_peers.remove(&(address.clone(), interface.clone()));
        }
    }

    /// Next hops and interfaces, or None (not connected, or it stopped answering).
    pub async fn view(&mut self) -> Option<View> {
        let dp = self.client.as_mut()?;
        let nhs = tokio::time::timeout(RPC_TIMEOUT, dp.list_next_hops(dpb::ListNextHopsRequest {}));
        let nhs = nhs.await;
        let info = tokio::time::timeout(RPC_TIMEOUT, dp.get_info(dpb::GetInfoRequest {})).await;
        match (nhs, info) {
            (Ok(Ok(n)), Ok(Ok(i))) => Some(View {
                next_hops: n.into_inner().next_hops,
                interfaces: i.into_inner().interfaces,
            }),
            _ => {
                self.lost();
                None
            }
        }
    }
}

/// The follower tasks; they end with the connection.
fn follow(dp: Client, tx: mpsc::Sender<Observation>, every_ms: u32) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(follow_events(dp.clone(), tx.clone())),
        tokio::spawn(follow_stats(dp, tx, every_ms)),
    ]
}

async fn follow_events(mut dp: Client, tx: mpsc::Sender<Observation>) {
    let request = dpb::WatchEventsRequest {
        include_history: false,
    };
    let Ok(stream) = dp.watch_events(request).await else {
        return;
    };
    let mut stream = stream.into_inner();
    while let Ok(Some(e)) = stream.message().await {
        if tx.send(Observation::Event(e)).await.is_err() {
            return;
        }
    }
    tracing::warn!("the dataplane's event stream ended");
}

/// Stats every telemetry interval, each followed by the BFD sessions' counters.
async fn follow_stats(mut dp: Client, tx: mpsc::Sender<Observation>, every_ms: u32) {
    let request = dpb::WatchStatsRequest {
        interval_ms: every_ms,
        include_zero: false,
    };
    let Ok(stream) = dp.watch_stats(request).await else {
        return;
    };
    let mut stream = stream.into_inner();
    while let Ok(Some(s)) = stream.message().await {
        let asked = crate::linkstate::state::unix_ns(std::time::SystemTime::now());
        let bfd = dp.list_bfd_sessions(dpb::ListBfdSessionsRequest {});
        let bfd = tokio::time::timeout(RPC_TIMEOUT, bfd).await;
        let answered = crate::linkstate::state::unix_ns(std::time::SystemTime::now());
        let read_at = asked + (answered.saturating_sub(asked)) / 2;
        if tx.send(Observation::Stats(s)).await.is_err() {
            return;
        }
        if let Ok(Ok(b)) = bfd
            && tx
                .send(Observation::Bfd(b.into_inner().sessions, read_at))
                .await
                .is_err()
        {
            return;
        }
    }
    tracing::warn!("the dataplane's stats stream ended");
}
