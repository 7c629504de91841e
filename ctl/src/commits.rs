//! `x0ctl commit list|confirm ID|rollback ID`: changes made with `--confirm-within`, which
//! the dataplane undoes by itself unless confirmed in time.

use anyhow::Result;
use tonic::transport::Channel;
use x0_proto::dataplane::v1::{self as pb, dataplane_client::DataplaneClient};

use crate::client::rpc_error;

#[derive(clap::Subcommand)]
pub enum CommitCmd {
    /// Pending commits and their deadlines.
    List,
    /// Keeps a pending change.
    Confirm { id: u64 },
    /// Undoes a pending change now.
    Rollback { id: u64 },
}

pub async fn run(dp: &mut DataplaneClient<Channel>, cmd: &CommitCmd, json: bool) -> Result<()> {
    match cmd {
        CommitCmd::List => {
            let r = dp
                .list_commits(pb::ListCommitsRequest {})
                .await
                .map_err(|s| rpc_error(&s))?
                .into_inner();
            print_list(&r.commits, json)?;
        }
        CommitCmd::Confirm { id } => {
            dp.confirm_commit(pb::ConfirmCommitRequest { id: *id })
                .await
                .map_err(|s| rpc_error(&s))?;
            println!("commit {id} confirmed: it stays");
        }
        CommitCmd::Rollback { id } => {
            dp.rollback_commit(pb::RollbackCommitRequest { id: *id })
                .await
                .map_err(|s| rpc_error(&s))?;
            println!("commit {id} rolled back");
        }
    }
    Ok(())
}

/// Seconds until a deadline (negative: past, the rollback is under way).
fn seconds_left(deadline_unix_ns: u64) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as f64)
        .unwrap_or(0.0);
    (deadline_unix_ns as f64 - now) / 1e9
}

fn print_list(commits: &[pb::PendingCommit], json: bool) -> Result<()> {
    if json {
        let v: Vec<_> = commits
            .iter()
            .map(|c| {
                serde_json::json!({"id": c.id, "kind": c.kind, "summary": c.summary, "by": c.by,
                    "made_unix_ns": c.made_unix_ns, "deadline_unix_ns": c.deadline_unix_ns,
                    "seconds_left": seconds_left(c.deadline_unix_ns)})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for c in commits {
        println!(
            "commit {:>4} {:<7} rolls back in {:>7.1} s unless confirmed  {}  (by {})",
            c.id,
            c.kind,
            seconds_left(c.deadline_unix_ns),
            c.summary,
            c.by
        );
    }
    println!("{} pending", commits.len());
    Ok(())
}

/// What a change made with a deadline says: how to keep it.
pub fn pending_note(commit: u64, within_s: u32) -> String {
    format!(
        "pending commit {commit}: rolled back in {within_s} s unless `x0ctl commit confirm {commit}`"
    )
}
