//! `x0ctl bfd list|add|remove`: the BFD sessions, and BFD to a neighbour no route uses
//! yet (what a brain does for each neighbour it accepts).

use anyhow::Result;
use tonic::transport::Channel;
use x0_proto::dataplane::v1::{self as pb, dataplane_client::DataplaneClient};

use crate::client::rpc_error;

#[derive(clap::Subcommand)]
pub enum BfdCmd {
    /// Sessions, their state and timers, and the BFD counters.
    List,
    /// BFD to ADDRESS on --interface (which must have BFD on), held until removed.
    Add {
        address: String,
        #[arg(long)]
        interface: String,
    },
    /// Lets go of a peer added with `add`.
    Remove {
        address: String,
        #[arg(long)]
        interface: String,
    },
}

pub async fn run(dp: &mut DataplaneClient<Channel>, cmd: &BfdCmd, json: bool) -> Result<()> {
    match cmd {
        BfdCmd::List => list(dp, json).await,
        BfdCmd::Add { address, interface } => {
            let req = pb::AddBfdPeerRequest {
                address: address.clone(),
                interface: interface.clone(),
            };
            let r = dp.add_bfd_peer(req).await.map_err(|s| rpc_error(&s))?;
            if r.into_inner().created {
                println!("BFD peer {address} on {interface} added");
            } else {
                println!("BFD peer {address} on {interface} was already added");
            }
            Ok(())
        }
        BfdCmd::Remove { address, interface } => {
            let req = pb::RemoveBfdPeerRequest {
                address: address.clone(),
                interface: interface.clone(),
            };
            dp.remove_bfd_peer(req).await.map_err(|s| rpc_error(&s))?;
            println!("BFD peer {address} on {interface} removed");
            Ok(())
        }
    }
}

async fn list(dp: &mut DataplaneClient<Channel>, json: bool) -> Result<()> {
    let r = dp
        .list_bfd_sessions(pb::ListBfdSessionsRequest {})
        .await
        .map_err(|s| rpc_error(&s))?
        .into_inner();
    if json {
        let s: Vec<_> = r
            .sessions
            .iter()
            .map(|s| {
                serde_json::json!({
                "peer": s.peer, "interface": s.interface, "local": s.local, "state": s.state,
                "remote_state": s.remote_state, "local_discriminator": s.local_discriminator,
                "remote_discriminator": s.remote_discriminator, "tx_interval_us": s.tx_interval_us,
                "detection_time_us": s.detection_time_us})
            })
            .collect();
        let c = r.counters.unwrap_or_default();
        let counters = serde_json::json!({
                "rx_valid": c.rx_valid, "rx_malformed": c.rx_malformed, "rx_bad_ttl": c.rx_bad_ttl,
                "rx_no_session": c.rx_no_session, "tx": c.tx, "tx_af_xdp": c.tx_af_xdp,
                "tx_udp": c.tx_udp, "tx_errors": c.tx_errors});
        print_json(
            &serde_json::json!({"transport": r.transport, "sessions": s, "counters": counters}),
        )?;
    } else {
        println!(
            "transport: {}",
            if r.transport.is_empty() {
                "(BFD not running)"
            } else {
                &r.transport
            }
        );
        println!(
            "{:<26} {:<12} {:<9} {:<9} {:>10} {:>12}",
            "peer", "interface", "state", "remote", "tx (us)", "detect (us)"
        );
        for s in &r.sessions {
            println!(
                "{:<26} {:<12} {:<9} {:<9} {:>10} {:>12}",
                s.peer, s.interface, s.state, s.remote_state, s.tx_interval_us, s.detection_time_us
            );
        }
        if let Some(c) = r.counters {
            println!(
                "rx valid {}, malformed {}, bad TTL {}, no session {}; tx {} (AF_XDP {}, UDP {}), errors {}",
                c.rx_valid,
                c.rx_malformed,
                c.rx_bad_ttl,
                c.rx_no_session,
                c.tx,
                c.tx_af_xdp,
                c.tx_udp,
                c.tx_errors
            );
        }
    }
    Ok(())
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
