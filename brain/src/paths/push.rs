//! What to send the dataplane: only the difference between the routes the plan wants and
//! the routes installed, as one batch (the dataplane applies it all or nothing).

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use x0_proto::dataplane::v1 as pb;

pub type Routes = BTreeMap<IpNet, Vec<(IpAddr, String)>>;

/// Replace operations for every wanted route that is missing or different. Routes the
/// plan does not mention are left alone (fail-static: the brain never removes what it
/// cannot reach a decision on).
pub fn diff(wanted: &Routes, installed: &Routes) -> Vec<pb::RouteOperation> {
    wanted
        .iter()
        .filter(|(p, via)| installed.get(p) != Some(via))
        .map(|(p, via)| pb::RouteOperation {
            op: Some(pb::route_operation::Op::Replace(pb::Route {
                prefix: p.to_string(),
                next_hops: via
                    .iter()
                    .map(|(g, i)| pb::NextHop {
                        gateway: g.to_string(),
                        interface: i.clone(),
                    })
                    .collect(),
                origin: 0,
            })),
        })
        .collect()
}

/// Reads the installed routes and sends the difference (enforce) or logs it (observe).
/// Returns how many routes differed.
pub async fn sync(
    dp: &mut x0_proto::dataplane::v1::dataplane_client::DataplaneClient<tonic::transport::Channel>,
    wanted: &Routes,
    mode: crate::config::Mode,
) -> anyhow::Result<usize> {
    use x0ctl::client::rpc_error;
    let all = x0ctl::client::list_routes(dp, pb::RouteOrigin::Unspecified)
        .await
        .map_err(|s| rpc_error(&s))?;
    let ops = diff(wanted, &installed(&all));
    let n = ops.len();
    if n == 0 {
        return Ok(0);
    }
    match mode {
        crate::config::Mode::Observe => {
            for op in &ops {
                if let Some(pb::route_operation::Op::Replace(r)) = &op.op {
                    let via: Vec<String> = r
                        .next_hops
                        .iter()
                        .map(|h| format!("{}@{}", h.gateway, h.interface))
                        .collect();
                    tracing::info!(prefix = %r.prefix, next_hops = ?via, "observe: would replace");
                }
            }
        }
        crate::config::Mode::Enforce => {
            dp.batch_routes(tokio_stream::iter(ops))
                .await
                .map_err(|s| rpc_error(&s))?;
        }
    }
    Ok(n)
}

/// The installed routes from ListRoutes (local-address routes left out).
pub fn installed(routes: &[pb::Route]) -> Routes {
    routes
        .iter()
        .filter(|r| r.origin != pb::RouteOrigin::Local as i32)
        .filter_map(|r| {
            let prefix: IpNet = r.prefix.parse().ok()?;
            let via = r
                .next_hops
                .iter()
                .filter_map(|n| Some((n.gateway.parse().ok()?, n.interface.clone())))
                .collect();
            Some((prefix, via))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_differs() {
        let r = |s: &str| s.parse::<IpNet>().unwrap();
        let hop = |g: &str, i: &str| (g.parse().unwrap(), i.to_string());
        let mut wanted = Routes::new();
        wanted.insert(r("10.1.0.0/16"), vec![hop("192.0.2.1", "eth0")]);
        wanted.insert(
            r("10.2.0.0/16"),
            vec![hop("192.0.2.1", "eth0"), hop("192.0.2.9", "eth1")],
        );
        wanted.insert(r("10.3.0.0/16"), vec![hop("192.0.2.9", "eth1")]);
        let mut installed = Routes::new();
        installed.insert(r("10.1.0.0/16"), vec![hop("192.0.2.1", "eth0")]);
        installed.insert(
            r("10.2.0.0/16"),
            vec![hop("192.0.2.9", "eth1"), hop("192.0.2.1", "eth0")],
        );
        installed.insert(r("10.9.0.0/16"), vec![hop("192.0.2.1", "eth0")]);
        let ops = diff(&wanted, &installed);
        let prefixes: Vec<String> = ops
            .iter()
            .map(|o| match &o.op {
                Some(pb::route_operation::Op::Replace(r)) => r.prefix.clone(),
                _ => panic!("replace only"),
            })
            .collect();
        assert_eq!(
            prefixes,
            ["10.2.0.0/16", "10.3.0.0/16"],
            "order changed, and new"
        );
        assert!(diff(&wanted, &wanted).is_empty());
    }
}
