//! Turning a candidate into a neighbour: a hello only says where to look, so we connect
//! to the brain it names over mutual TLS, require its SVID to be
//! spiffe://<td>/brain/<router>, and ask it who it is.

use std::time::Duration;

use x0_identity::{FileSource, IdPattern, PqMode};
use x0_proto::brain::v1::{self as pb, brain_client::BrainClient};
use x0ctl::client::{Target, connect};

use super::hello::Heard;

const WAIT: Duration = Duration::from_secs(3);

/// Why a candidate was not taken (the metric's `reason` label, and a sentence).
#[derive(Debug)]
pub struct Failed {
    pub reason: &'static str,
    pub detail: String,
}

/// Ok if the brain at `heard.brain` proves the SVID of `heard.router` in `td` and says
/// it is that router.
pub async fn verify(heard: &Heard, tls: &FileSource, td: &str) -> Result<(), Failed> {
    let id = format!("spiffe://{td}/brain/{}", heard.router);
    let target = Target {
        addr: format!("https://{}", heard.brain),
        svid: Some(tls.clone()),
        pq: PqMode::Required,
        server_id: Some(id.parse::<IdPattern>().map_err(|e| Failed {
            reason: "name",
            detail: format!("{id}: {e}"),
        })?),
    };
    let connection = match tokio::time::timeout(WAIT, connect(&target)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(failed("tls", format!("{e:#}"))),
        Err(_) => return Err(failed("timeout", format!("no handshake within {WAIT:?}"))),
    };
    let mut client = BrainClient::new(connection.channel);
    let status = tokio::time::timeout(WAIT, client.get_status(pb::GetStatusRequest {})).await;
    match status {
        Ok(Ok(s)) if s.get_ref().router == heard.router => Ok(()),
        Ok(Ok(s)) => Err(failed(
            "status",
            format!("its status names {:?}", s.get_ref().router),
        )),
        Ok(Err(e)) => Err(failed("status", e.message().to_string())),
        Err(_) => Err(failed("timeout", format!("no status within {WAIT:?}"))),
    }
}

fn failed(reason: &'static str, detail: String) -> Failed {
    Failed { reason, detail }
}
