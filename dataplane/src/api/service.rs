//! The gRPC service: checks each request, converts it, calls `Control`, converts back.
//! No logic of its own beyond validation and conversion.

use std::{net::IpAddr, pin::Pin, time::Duration};
use x0_proto::status::Shown;

use ipnet::IpNet;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use x0_proto::dataplane::v1::{self as pb, dataplane_server::Dataplane};

use crate::{
    config::ViaCache,
    control::{Control, ControlError, NextHopView, Origin, RouteOp, StatsView},
    events::{Event, EventKind},
    explain::Probe,
    policy::{IdentityConfig, RateConfig, RuleConfig},
    state::PolicySpec,
};
use x0_identity::listen::Peer;

/// Routes per ListRoutes message.
const LIST_CHUNK: usize = 1000;
/// Operations in one BatchRoutes stream (the tables' capacity, and a bound on memory).
pub const MAX_BATCH: usize = 3 << 20;

type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct Service {
    control: Control,
}

impl Service {
    pub fn new(control: Control) -> Self {
        Self { control }
    }

    /// Runs a blocking core call off the async threads.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(Control) -> Result<T, ControlError> + Send + 'static,
    ) -> Result<T, Status> {
        let c = self.control.clone();
        tokio::task::spawn_blocking(move || f(c))
            .await
            .map_err(|e| Status::internal(format!("task failed: {e}")))?
            .map_err(status)
    }
}

pub fn status(e: ControlError) -> Status {
    let msg = x0_proto::status::short(&e.to_string());
    match e {
        ControlError::Invalid(_) => Status::invalid_argument(msg),
        ControlError::AlreadyExists(_) => Status::already_exists(msg),
        ControlError::NotFound(_) => Status::not_found(msg),
        ControlError::FailedPrecondition(_) => Status::failed_precondition(msg),
        ControlError::Exhausted(_) => Status::resource_exhausted(msg),
        ControlError::Internal(_) => Status::internal(msg),
        ControlError::Unavailable => Status::unavailable(msg),
    }
}

/// A BFD peer's address and interface as text, checked for form (the node checks the rest).
fn bfd_peer(address: &str, interface: &str) -> Result<(std::net::IpAddr, String), Status> {
    let a = address.parse().map_err(|_| {
        Status::invalid_argument(format!("address: {} is not an IP address", Shown(address)))
    })?;
    if interface.is_empty() || interface.len() > 15 {
        return Err(Status::invalid_argument(
            "interface: an interface name (1 to 15 characters)",
        ));
    }
    Ok((a, interface.to_string()))
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(x0_proto::status::short(&format!("{e:#}")))
}

/// Checks a route message; `field` names it in errors ("route", "operations[7].add").
/// `cache` shares the next-hop lists of a batch's routes.
fn route_from(
    field: &str,
    r: Option<&pb::Route>,
    interfaces: &[String],
    cache: &mut ViaCache,
) -> Result<crate::config::ValidRoute, Status> {
    let r = r.ok_or_else(|| Status::invalid_argument(format!("{field}: missing")))?;
    let via: Vec<(String, String)> = r
        .next_hops
        .iter()
        .map(|n| (n.gateway.clone(), n.interface.clone()))
        .collect();
    cache
        .route(field, &r.prefix, via, &|name| {
            interfaces.iter().any(|i| i == name)
        })
        .map_err(|e| invalid(format!("{e:#}").replace(".via", ".next_hops")))
}

fn prefix_from(field: &str, s: &str) -> Result<IpNet, Status> {
    let p: IpNet = s.trim().parse().map_err(|_| {
        Status::invalid_argument(format!(
            "{field}: {} is not an address/length prefix",
            Shown(s)
        ))
    })?;
    if p.trunc() != p {
        return Err(Status::invalid_argument(format!(
            "{field}: {p} has host bits set (did you mean {}?)",
            p.trunc()
        )));
    }
    Ok(p)
}

fn route_to(v: crate::control::RouteView) -> pb::Route {
    pb::Route {
        prefix: v.prefix.to_string(),
        next_hops: v
            .via
            .into_iter()
            .map(|(g, i)| pb::NextHop {
                gateway: g.to_string(),
                interface: i,
            })
            .collect(),
        origin: match v.origin {
            Origin::Config => pb::RouteOrigin::Config,
            Origin::Api => pb::RouteOrigin::Api,
            Origin::Local => pb::RouteOrigin::Local,
        } as i32,
    }
}

fn nexthop_to(n: NextHopView) -> pb::NextHopState {
    let r = n.report;
    pb::NextHopState {
        id: r.id,
        gateway: r.gateway.to_string(),
        interface: n.interface,
        resolved: n.resolved,
        mac: n.mac,
        live: r.live,
        state: r.state.to_string(),
        packets: r.packets,
        bytes: r.bytes,
        switches_to: r.switches_to,
        switches_from: r.switches_from,
        last_switch_unix_ns: r.last_switch_unix_ns,
    }
}

fn stats_to(s: StatsView, include_zero: bool) -> pb::Stats {
    pb::Stats {
        unix_ns: unix_ns(s.at),
        reasons: s
            .counters
            .reasons
            .iter()
            .filter(|r| include_zero || r.packets > 0)
            .map(|r| pb::ReasonCount {
                reason: r.reason.to_string(),
                packets: r.packets,
                bytes: r.bytes,
            })
            .collect(),
        interfaces: s
            .counters
            .interfaces
            .iter()
            .map(|(ifindex, c)| pb::InterfaceStats {
                interface: s.interface_names.get(ifindex).cloned().unwrap_or_default(),
                ifindex: *ifindex,
                rx_packets: c.rx_packets,
                rx_bytes: c.rx_bytes,
                forwarded_packets: c.forwarded_packets,
                passed_packets: c.passed_packets,
                dropped_packets: c.dropped_packets,
                tx_packets: c.tx_packets,
                tx_bytes: c.tx_bytes,
            })
            .collect(),
        next_hops: s.nexthops.into_iter().map(nexthop_to).collect(),
    }
}

fn unix_ns(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn hop(h: Option<(IpAddr, String)>) -> Option<pb::NextHop> {
    h.map(|(g, i)| pb::NextHop {
        gateway: g.to_string(),
        interface: i,
    })
}

fn event_to(e: Event) -> pb::Event {
    use pb::event::Kind;
    let unix_ns = e.unix_ns();
    let kind = match e.kind {
        EventKind::Link { interface, up, mtu } => Kind::Link(pb::LinkEvent { interface, up, mtu }),
        EventKind::NextHop {
            gateway,
            interface,
            from,
            to,
            source,
        } => Kind::NextHop(pb::NextHopEvent {
            gateway: gateway.to_string(),
            interface,
            from: from.into(),
            to: to.into(),
            source: source.into(),
        }),
        EventKind::Bfd {
            peer,
            interface,
            from,
            to,
            diagnostic,
        } => Kind::Bfd(pb::BfdEvent {
            peer: peer.to_string(),
            interface,
            from,
            to,
            diagnostic,
        }),
        EventKind::Failover { from, to, sets } => Kind::Failover(pb::FailoverEvent {
            from: hop(from),
            to: hop(to),
            sets,
        }),
    };
    pb::Event {
        unix_ns,
        reason: e.reason,
        kind: Some(kind),
    }
}

/// A policy message as the core's spec (pub: the fuzz targets drive it).
pub fn policy_from(p: pb::Policy) -> Result<PolicySpec, Status> {
    let rules = p
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let rate = match r.rate {
                None => None,
                Some(RateLimitMsg { pps, burst }) => {
                    if !(1..=10_000_000).contains(&pps) || !(1..=10_000_000).contains(&burst) {
                        return Err(Status::invalid_argument(format!(
                            "policy.rules[{i}].rate: pps and burst must be 1 to 10000000"
                        )));
                    }
                    Some(RateConfig { pps, burst })
                }
            };
            Ok(RuleConfig {
                from: r.from,
                to: r.to,
                proto: if r.proto.is_empty() {
                    "any".into()
                } else {
                    r.proto
                },
                ports: (!r.ports.is_empty()).then_some(r.ports),
                action: r.action,
                rate,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PolicySpec {
        identities: p
            .identities
            .into_iter()
            .map(|i| IdentityConfig {
                name: i.name,
                id: i.id,
                prefixes: i.prefixes,
            })
            .collect(),
        rules,
        defaults: p
            .defaults
            .into_iter()
            .map(|d| (d.interface, d.action))
            .collect(),
    })
}

use pb::RateLimit as RateLimitMsg;

fn caller(req: &Request<impl Sized>) -> String {
    req.extensions()
        .get::<Peer>()
        .map(|p| p.caller.to_string())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl Dataplane for Service {
    async fn get_info(
        &self,
        req: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::Info>, Status> {
        let caller = caller(&req);
        let i = self.call(|c| c.info()).await?;
        Ok(Response::new(pb::Info {
            version: env!("CARGO_PKG_VERSION").into(),
            pin_root: i.pin_root.display().to_string(),
            interfaces: i
                .interfaces
                .into_iter()
                .map(|v| pb::Interface {
                    name: v.name,
                    ifindex: v.ifindex,
                    xdp_mode: v.mode,
                    up: v.up,
                    mac: v.mac,
                    mtu: v.mtu,
                })
                .collect(),
            routes: i.routes,
            route_capacity: self.control.route_capacity().map_err(status)?,
            fib_fallback: i.fib_fallback,
            policy_generation: i.policy_generation,
            started_unix_ns: unix_ns(i.started),
            caller,
        }))
    }

    async fn add_route(
        &self,
        req: Request<pb::AddRouteRequest>,
    ) -> Result<Response<pb::AddRouteResponse>, Status> {
        let ifaces = self.control.interface_names();
        let r = route_from(
            "route",
            req.get_ref().route.as_ref(),
            ifaces,
            &mut ViaCache::default(),
        )?;
        self.call(move |c| c.apply_routes(vec![RouteOp::Add(r)]))
            .await
            .map_err(|s| {
                Status::new(s.code(), s.message().replace("operations[0].add", "route"))
            })?;
        Ok(Response::new(pb::AddRouteResponse {}))
    }

    async fn replace_route(
        &self,
        req: Request<pb::ReplaceRouteRequest>,
    ) -> Result<Response<pb::ReplaceRouteResponse>, Status> {
        let ifaces = self.control.interface_names();
        let r = route_from(
            "route",
            req.get_ref().route.as_ref(),
            ifaces,
            &mut ViaCache::default(),
        )?;
        let res = self
            .call(move |c| c.apply_routes(vec![RouteOp::Replace(r)]))
            .await
            .map_err(|s| {
                Status::new(
                    s.code(),
                    s.message().replace("operations[0].replace", "route"),
                )
            })?;
        Ok(Response::new(pb::ReplaceRouteResponse {
            created: res.added == 1,
        }))
    }

    async fn delete_route(
        &self,
        req: Request<pb::DeleteRouteRequest>,
    ) -> Result<Response<pb::DeleteRouteResponse>, Status> {
        let p = prefix_from("prefix", &req.get_ref().prefix)?;
        self.call(move |c| c.apply_routes(vec![RouteOp::Delete(p)]))
            .await
            .map_err(|s| {
                Status::new(
                    s.code(),
                    s.message().replace("operations[0].delete", "prefix"),
                )
            })?;
        Ok(Response::new(pb::DeleteRouteResponse {}))
    }

    type ListRoutesStream = RpcStream<pb::ListRoutesResponse>;

    async fn list_routes(
        &self,
        req: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<Self::ListRoutesStream>, Status> {
        let want = req.get_ref().origin();
        let routes = self.call(|c| c.routes()).await?;
        let routes: Vec<pb::Route> = routes
            .into_iter()
            .map(route_to)
            .filter(|r| want == pb::RouteOrigin::Unspecified || r.origin == want as i32)
            .collect();
        let chunks: Vec<Result<pb::ListRoutesResponse, Status>> = routes
            .chunks(LIST_CHUNK)
            .map(|c| Ok(pb::ListRoutesResponse { routes: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn batch_routes(
        &self,
        req: Request<Streaming<pb::RouteOperation>>,
    ) -> Result<Response<pb::BatchRoutesResponse>, Status> {
        let ifaces = self.control.interface_names();
        let by = caller(&req);
        let mut stream = req.into_inner();
        let mut ops = Vec::new();
        let mut confirm_within_s = 0;
        let mut lists = ViaCache::default();
        // The whole batch is read and checked before anything is applied.
        let mut read = 0;
        while let Some(op) = stream.next().await {
            let op = op?;
            let i = ops.len();
            read += 1;
            if i >= MAX_BATCH {
                return Err(Status::resource_exhausted(format!(
                    "operations: more than {MAX_BATCH} in one batch"
                )));
            }
            use pb::route_operation::Op;
            ops.push(match op.op {
                Some(Op::Add(r)) => RouteOp::Add(route_from(
                    &format!("operations[{i}].add"),
                    Some(&r),
                    ifaces,
                    &mut lists,
                )?),
                Some(Op::Replace(r)) => RouteOp::Replace(route_from(
                    &format!("operations[{i}].replace"),
                    Some(&r),
                    ifaces,
                    &mut lists,
                )?),
                Some(Op::Delete(p)) => {
                    RouteOp::Delete(prefix_from(&format!("operations[{i}].delete"), &p)?)
                }
                Some(Op::Options(o)) if read == 1 => {
                    confirm_within_s = o.confirm_within_s;
                    continue;
                }
                Some(Op::Options(_)) => {
                    return Err(Status::invalid_argument(format!(
                        "operations[{i}].options: only the stream's first message may set options"
                    )));
                }
                None => {
                    return Err(Status::invalid_argument(format!(
                        "operations[{i}]: no operation"
                    )));
                }
            });
        }
        let (r, commit) = match confirm_within_s {
            0 => (self.call(move |c| c.apply_routes(ops)).await?, 0),
            s => self.call(move |c| c.commit_routes(ops, s, by)).await?,
        };
        Ok(Response::new(pb::BatchRoutesResponse {
            added: r.added,
            replaced: r.replaced,
            deleted: r.deleted,
            commit,
        }))
    }

    async fn list_next_hops(
        &self,
        _req: Request<pb::ListNextHopsRequest>,
    ) -> Result<Response<pb::ListNextHopsResponse>, Status> {
        let nhs = self.call(|c| c.nexthops()).await?;
        Ok(Response::new(pb::ListNextHopsResponse {
            next_hops: nhs.into_iter().map(nexthop_to).collect(),
        }))
    }

    async fn add_bfd_peer(
        &self,
        req: Request<pb::AddBfdPeerRequest>,
    ) -> Result<Response<pb::AddBfdPeerResponse>, Status> {
        let (address, interface) = bfd_peer(&req.get_ref().address, &req.get_ref().interface)?;
        let created = self
            .call(move |c| c.add_bfd_peer(address, &interface))
            .await?;
        Ok(Response::new(pb::AddBfdPeerResponse { created }))
    }

    async fn remove_bfd_peer(
        &self,
        req: Request<pb::RemoveBfdPeerRequest>,
    ) -> Result<Response<pb::RemoveBfdPeerResponse>, Status> {
        let (address, interface) = bfd_peer(&req.get_ref().address, &req.get_ref().interface)?;
        self.call(move |c| c.remove_bfd_peer(address, &interface))
            .await?;
        Ok(Response::new(pb::RemoveBfdPeerResponse {}))
    }

    async fn list_bfd_sessions(
        &self,
        _req: Request<pb::ListBfdSessionsRequest>,
    ) -> Result<Response<pb::ListBfdSessionsResponse>, Status> {
        let v = self.call(|c| c.bfd()).await?;
        Ok(Response::new(pb::ListBfdSessionsResponse {
            sessions: v
                .sessions
                .into_iter()
                .map(|s| pb::BfdSession {
                    peer: s.path.peer.to_string(),
                    interface: s.path.ifname.clone(),
                    local: s.path.local.to_string(),
                    state: format!("{:?}", s.state),
                    remote_state: format!("{:?}", s.remote_state),
                    local_discriminator: s.local_disc,
                    remote_discriminator: s.remote_disc,
                    tx_interval_us: s.tx_interval.as_micros() as u64,
                    detection_time_us: s.detection_time.as_micros() as u64,
                    rx_packets: s.rx_packets,
                    rx_interval_us: s.rx_interval.as_micros() as u64,
                })
                .collect(),
            counters: Some(pb::BfdCounters {
                rx_valid: v.stats.rx_valid,
                rx_malformed: v.stats.rx_malformed.values().sum(),
                rx_bad_ttl: v.stats.rx_bad_ttl,
                rx_no_session: v.stats.rx_no_session,
                tx: v.stats.tx,
                tx_errors: v.stats.tx_errors,
                tx_af_xdp: v.stats.tx_af_xdp,
                tx_udp: v.stats.tx_udp,
            }),
            transport: v.transport.into(),
        }))
    }

    async fn get_policy(
        &self,
        _req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let v = self.call(|c| c.policy()).await?;
        Ok(Response::new(pb::Policy {
            identities: v
                .spec
                .identities
                .into_iter()
                .map(|i| pb::Identity {
                    name: i.name,
                    id: i.id,
                    prefixes: i.prefixes,
                })
                .collect(),
            rules: v
                .spec
                .rules
                .into_iter()
                .enumerate()
                .map(|(i, r)| pb::Rule {
                    from: r.from,
                    to: r.to,
                    proto: r.proto,
                    ports: r.ports.unwrap_or_default(),
                    action: r.action,
                    rate: r.rate.map(|r| pb::RateLimit {
                        pps: r.pps,
                        burst: r.burst,
                    }),
                    packets: v.hits.get(&(i as u32 + 1)).copied().unwrap_or(0),
                    id: i as u32 + 1,
                })
                .collect(),
            defaults: v
                .spec
                .defaults
                .into_iter()
                .map(|(interface, action)| pb::InterfaceDefault { interface, action })
                .collect(),
            generation: v.generation,
            enabled: v.enabled,
        }))
    }

    async fn set_policy(
        &self,
        req: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::SetPolicyResponse>, Status> {
        let by = caller(&req);
        let req = req.into_inner();
        let p = req
            .policy
            .ok_or_else(|| Status::invalid_argument("policy: missing"))?;
        let spec = policy_from(p)?;
        let (generation, commit) = match req.confirm_within_s {
            0 => (self.call(move |c| c.set_policy(spec)).await?, 0),
            s => self.call(move |c| c.commit_policy(spec, s, by)).await?,
        };
        Ok(Response::new(pb::SetPolicyResponse { generation, commit }))
    }

    async fn list_commits(
        &self,
        _req: Request<pb::ListCommitsRequest>,
    ) -> Result<Response<pb::ListCommitsResponse>, Status> {
        let commits = self.call(|c| c.commits()).await?;
        Ok(Response::new(pb::ListCommitsResponse {
            commits: commits
                .into_iter()
                .map(|c| pb::PendingCommit {
                    id: c.id,
                    kind: c.kind().into(),
                    summary: c.summary,
                    by: c.by,
                    made_unix_ns: c.made_unix_ns,
                    deadline_unix_ns: c.deadline_unix_ns,
                })
                .collect(),
        }))
    }

    async fn confirm_commit(
        &self,
        req: Request<pb::ConfirmCommitRequest>,
    ) -> Result<Response<pb::ConfirmCommitResponse>, Status> {
        let id = req.into_inner().id;
        self.call(move |c| c.confirm_commit(id)).await?;
        Ok(Response::new(pb::ConfirmCommitResponse {}))
    }

    async fn rollback_commit(
        &self,
        req: Request<pb::RollbackCommitRequest>,
    ) -> Result<Response<pb::RollbackCommitResponse>, Status> {
        let id = req.into_inner().id;
        self.call(move |c| c.rollback_commit(id)).await?;
        Ok(Response::new(pb::RollbackCommitResponse {}))
    }

    async fn get_stats(
        &self,
        req: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let zero = req.get_ref().include_zero;
        let s = self.call(|c| c.stats()).await?;
        Ok(Response::new(stats_to(s, zero)))
    }

    type WatchStatsStream = RpcStream<pb::Stats>;

    async fn watch_stats(
        &self,
        req: Request<pb::WatchStatsRequest>,
    ) -> Result<Response<Self::WatchStatsStream>, Status> {
        let r = req.into_inner();
        if !(100..=60_000).contains(&r.interval_ms) {
            return Err(Status::invalid_argument(format!(
                "interval_ms: {} is not 100 to 60000",
                r.interval_ms
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let control = self.control.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(u64::from(r.interval_ms)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let c = control.clone();
                let s = match tokio::task::spawn_blocking(move || c.stats()).await {
                    Ok(Ok(s)) => Ok(stats_to(s, r.include_zero)),
                    Ok(Err(e)) => Err(status(e)),
                    Err(e) => Err(Status::internal(e.to_string())),
                };
                let stop = s.is_err();
                if tx.send(s).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchEventsStream = RpcStream<pb::Event>;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let (past, mut rx) = self.control.events.subscribe(req.get_ref().include_history);
        let (tx, out) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            for e in past {
                if tx.send(Ok(event_to(e))).await.is_err() {
                    return;
                }
            }
            loop {
                let item = match rx.recv().await {
                    Ok(e) => Ok(event_to(e)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        Err(Status::data_loss(format!(
                            "this subscriber fell {n} events behind; subscribe again (with include_history)"
                        )))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn explain(
        &self,
        req: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        let r = req.into_inner();
        let addr = |field: &str, s: &str| -> Result<IpAddr, Status> {
            s.trim().parse().map_err(|_| {
                Status::invalid_argument(format!("{field}: {} is not an address", Shown(s)))
            })
        };
        let (src, dst) = (addr("src", &r.src)?, addr("dst", &r.dst)?);
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(Status::invalid_argument("dst: not of the family of src"));
        }
        if !["tcp", "udp", "icmp"].contains(&r.proto.as_str()) {
            return Err(Status::invalid_argument(format!(
                "proto: {} is not tcp, udp or icmp",
                Shown(&r.proto)
            )));
        }
        let port = |field: &str, p: u32| {
            u16::try_from(p)
                .map_err(|_| Status::invalid_argument(format!("{field}: {p} is not a port")))
        };
        let probe = Probe {
            ingress: r.ingress.clone(),
            src,
            dst,
            proto: r.proto.clone(),
            sport: port("sport", r.sport)?,
            dport: port("dport", r.dport)?,
        };
        let ifaces = self.control.interface_names();
        if !ifaces.contains(&probe.ingress) {
            return Err(Status::invalid_argument(format!(
                "ingress: {} is not one of the dataplane's interfaces",
                Shown(&probe.ingress)
            )));
        }
        let (e, text, src_identity, dst_identity) = self.call(move |c| c.explain(&probe)).await?;
        use x0_common::policy::{TRACE_F_CONNTRACK_HIT, TRACE_F_POLICY_CHECKED};
        Ok(Response::new(pb::ExplainResponse {
            verdict: match e.action {
                1 => "drop",
                2 => "pass",
                3 => "tx",
                4 => "forward",
                _ => "aborted",
            }
            .into(),
            reason: e.reason().map_or("?", |r| r.name()).into(),
            next_hop: e.nexthop_gateway.map(|g| g.to_string()).unwrap_or_default(),
            src_identity,
            dst_identity,
            rule_id: e.trace.rule_id,
            conntrack_hit: e.trace.flags & TRACE_F_CONNTRACK_HIT != 0,
            policy_checked: e.trace.flags & TRACE_F_POLICY_CHECKED != 0,
            text,
        }))
    }

    type MonitorDropsStream = RpcStream<pb::DropEvent>;

    async fn monitor_drops(
        &self,
        req: Request<pb::MonitorDropsRequest>,
    ) -> Result<Response<Self::MonitorDropsStream>, Status> {
        let max = req.get_ref().max_events;
        let mut rx = self.call(|c| c.subscribe_drops()).await?;
        let names = self.call(|c| c.port_names()).await?;
        let (tx, out) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut sent = 0u32;
            loop {
                let (at, d) = match rx.recv().await {
                    Ok(x) => x,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let e = pb::DropEvent {
                    unix_ns: unix_ns(at),
                    reason: d.reason.into(),
                    interface: names.get(&d.ifindex).cloned().unwrap_or_default(),
                    proto: d.proto.into(),
                    src: d.src.to_string(),
                    sport: d.sport.into(),
                    dst: d.dst.to_string(),
                    dport: d.dport.into(),
                    rule_id: d.rule_id,
                };
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
                sent += 1;
                if max != 0 && sent >= max {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}
