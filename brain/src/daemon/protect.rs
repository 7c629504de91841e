//! MAPE-K for misbehaving neighbours: the guard may quarantine a router or rate-limit what
//! it sends, by policy; an action the dataplane does not confirm is rolled back.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use x0_proto::dataplane::v1 as dpb;

use super::{RPC_TIMEOUT, dataplane::Client};
use crate::{
    config::{BrainConfig, Mode},
    linkstate::state::Shared,
    mapek::guard::{self, Action, Guard},
};

pub struct Protector {
    pub guard: Guard,
    /// Each neighbour's receive rate, packets per second, from the interface stats.
    pub pps: HashMap<String, f64>,
    /// A rollback the dataplane has not taken yet.
    pending_undo: Option<Action>,
}

impl Protector {
    pub fn new(now: Instant) -> Self {
        Protector {
            guard: Guard::new(now),
            pps: HashMap::new(),
            pending_undo: None,
        }
    }

    /// One round: decide, apply, confirm (or undo).
    pub async fn step(&mut self, dp: &mut Client, shared: &Mutex<Shared>, config: &BrainConfig) {
        let action = self.decide(shared, config);
        if let Some(action) = action {
            let ok = set_policy_action(dp, &action).await;
            if !matches!(action, Action::Lift { .. }) {
                let kb = &shared.lock().expect("brain lock").knowledge;
                if let Some(undo) = self.guard.confirm(ok, kb, Instant::now()) {
                    tracing::warn!(?action, "policy action not confirmed: rolling back");
                    self.pending_undo = Some(undo);
                }
            }
        }
        if let Some(undo) = self.pending_undo.take()
            && !set_policy_action(dp, &undo).await
        {
            self.pending_undo = Some(undo);
        }
    }

    fn decide(&mut self, shared: &Mutex<Shared>, config: &BrainConfig) -> Option<Action> {
        let s = shared.lock().expect("brain lock");
        let now = Instant::now();
        for n in &config.neighbors {
            let bad = s.bad_from.get(&n.router).copied().unwrap_or(0);
            self.guard.on_bad_records(&n.router, bad, now);
        }
        let prefixes = |router: &str| own_prefixes(&s, config, router);
        let observe = config.mode == Mode::Observe;
        self.guard
            .tick(now, &s.knowledge, observe, &self.pps, &prefixes)
    }
}

/// A router's own prefixes, to quarantine: what it announces alone (a link's subnet,
/// which both ends announce, would take the innocent end's traffic down too) and its
/// addresses on our links.
fn own_prefixes(s: &Shared, config: &BrainConfig, router: &str) -> Vec<String> {
    let shared_with_others = |p: &String| {
        s.lsdb
            .records()
            .any(|o| o.record.originator != router && o.record.prefixes.contains(p))
    };
    let mut v: Vec<String> = s
        .lsdb
        .get(router)
        .map(|r| r.record.prefixes.clone())
        .unwrap_or_default();
    v.retain(|p| !shared_with_others(p));
    for n in config.neighbors.iter().filter(|n| n.router == router) {
        v.extend(n.addrs.iter().map(|a| ipnet::IpNet::from(*a).to_string()));
    }
    v
}

/// Applies a guard action to the dataplane's policy and reads it back: whether it is in force.
async fn set_policy_action(dp: &mut Client, action: &Action) -> bool {
    let result = async {
        let now = dp.get_policy(dpb::GetPolicyRequest {}).await?.into_inner();
        let want = guard::apply(&now, action);
        dp.set_policy(dpb::SetPolicyRequest {
            policy: Some(want),
            confirm_within_s: 0,
        })
        .await?;
        let after = dp.get_policy(dpb::GetPolicyRequest {}).await?.into_inner();
        Ok::<bool, tonic::Status>(guard::in_force(&after, action))
    };
    match tokio::time::timeout(RPC_TIMEOUT, result).await {
        Ok(Ok(ok)) => {
            tracing::warn!(?action, in_force = ok, "policy action applied");
            ok
        }
        Ok(Err(e)) => {
            tracing::warn!(?action, error = %e.message(), "policy action failed");
            false
        }
        Err(_) => false,
    }
}
