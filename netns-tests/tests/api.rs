//! The gRPC control API through both listeners of a real dataplane in a namespace lab:
//! every RPC, a 10,000-route batch read back (and surviving a restart), and validation
//! failures that change nothing.

mod common;

use std::{future::Future, time::Duration};

use anyhow::Result;
use tokio_stream::StreamExt;
use tonic::Code;
use x0_lab::{Lab, netns::in_netns};
use x0_proto::dataplane::v1::{self as pb, dataplane_client::DataplaneClient};
use x0ctl::client::{Target, connect};

type Client = DataplaneClient<tonic::transport::Channel>;

/// Runs `f` with a client of r1 inside r1's namespace (its TLS listener is on its loopback).
fn with_client<T: Send + 'static, F: Future<Output = Result<T>> + Send + 'static>(
    lab: &Lab,
    target: Target,
    f: impl FnOnce(Client, Channel) -> F + Send + 'static,
) -> T {
    in_netns(&lab.ns("r1"), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                let conn = connect(&target).await?;
                f(conn.dataplane(64 << 20), conn.channel.clone()).await
            })
    })
    .expect("client")
}

type Channel = tonic::transport::Channel;

/// Runs a command in this thread's namespace (the children inherit it).
fn sh(cmd: &str) {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unix_target(lab: &Lab) -> Target {
    Target {
        addr: format!("unix://{}", lab.api_socket("r1").display()),
        svid: None,
        pq: x0_identity::PqMode::Required,
        server_id: None,
    }
}

fn route(prefix: &str, via: &[(&str, &str)]) -> pb::Route {
    pb::Route {
        prefix: prefix.into(),
        next_hops: via
            .iter()
            .map(|(g, i)| pb::NextHop {
                gateway: g.to_string(),
                interface: i.to_string(),
            })
            .collect(),
        origin: 0,
    }
}

async fn list(dp: &mut Client, origin: pb::RouteOrigin) -> Result<Vec<pb::Route>> {
    Ok(x0ctl::client::list_routes(dp, origin).await?)
}

/// The refusal every invalid request gets: INVALID_ARGUMENT, the message naming `field` first.
fn assert_names_field(e: &tonic::Status, field: &str) {
    assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
    assert!(
        e.message().starts_with(field),
        "{:?} does not name {field}",
        e.message()
    );
}

/// Every RPC of the service, plus health and reflection, through one target.
async fn exercise_every_rpc(
    mut dp: Client,
    channel: Channel,
    h1_ns: String,
    channel_caller: &'static str,
    base: u8,
) -> Result<()> {
    // GetInfo: who we are, the interfaces.
    let info = dp.get_info(pb::GetInfoRequest {}).await?.into_inner();
    assert!(
        info.caller.starts_with(channel_caller),
        "caller {}",
        info.caller
    );
    let names: Vec<&str> = info.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth1", "eth2"]);
    let routes_before = info.routes;

    // Add, replace, list, explain, delete.
    let prefix = format!("10.{base}.0.0/16");
    dp.add_route(pb::AddRouteRequest {
        route: Some(route(&prefix, &[("198.18.2.2", "eth2")])),
    })
    .await?;
    let again = dp
        .add_route(pb::AddRouteRequest {
            route: Some(route(&prefix, &[("198.18.2.2", "eth2")])),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let replaced = dp
        .replace_route(pb::ReplaceRouteRequest {
            route: Some(route(
                &prefix,
                &[("198.18.2.2", "eth2"), ("198.18.1.2", "eth1")],
            )),
        })
        .await?
        .into_inner();
    assert!(!replaced.created);
    let api = list(&mut dp, pb::RouteOrigin::Api).await?;
    let r = api.iter().find(|r| r.prefix == prefix).expect("listed");
    assert_eq!(r.next_hops.len(), 2);
    assert_eq!(r.next_hops[1].gateway, "198.18.1.2");
    let e = dp
        .explain(pb::ExplainRequest {
            ingress: "eth1".into(),
            src: "198.18.1.2".into(),
            dst: format!("10.{base}.7.7"),
            proto: "udp".into(),
            sport: 1234,
            dport: 5000,
        })
        .await?
        .into_inner();
    assert_eq!(
        (e.verdict.as_str(), e.next_hop.as_str()),
        ("forward", "198.18.2.2"),
        "{}",
        e.text
    );
    dp.delete_route(pb::DeleteRouteRequest {
        prefix: prefix.clone(),
    })
    .await?;
    let gone = dp
        .delete_route(pb::DeleteRouteRequest {
            prefix: prefix.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let e = dp
        .explain(pb::ExplainRequest {
            ingress: "eth1".into(),
            src: "198.18.1.2".into(),
            dst: format!("10.{base}.7.7"),
            proto: "udp".into(),
            sport: 1234,
            dport: 5000,
        })
        .await?
        .into_inner();
    assert_ne!(e.verdict, "forward", "no route any more: {}", e.text);

    // A small batch: two adds and a delete of one of them.
    let ops = vec![
        pb::RouteOperation {
            op: Some(pb::route_operation::Op::Add(route(
                &format!("10.{base}.1.0/24"),
                &[("198.18.2.2", "eth2")],
            ))),
        },
        pb::RouteOperation {
            op: Some(pb::route_operation::Op::Add(route(
                &format!("10.{base}.2.0/24"),
                &[("198.18.1.2", "eth1")],
            ))),
        },
        pb::RouteOperation {
            op: Some(pb::route_operation::Op::Delete(format!("10.{base}.1.0/24"))),
        },
    ];
    let b = dp.batch_routes(tokio_stream::iter(ops)).await?.into_inner();
    assert_eq!((b.added, b.replaced, b.deleted), (2, 0, 1));
    let info = dp.get_info(pb::GetInfoRequest {}).await?.into_inner();
    assert_eq!(info.routes, routes_before + 1);
    dp.delete_route(pb::DeleteRouteRequest {
        prefix: format!("10.{base}.2.0/24"),
    })
    .await?;

    // Next hops and BFD.
    let nhs = dp
        .list_next_hops(pb::ListNextHopsRequest {})
        .await?
        .into_inner()
        .next_hops;
    let nh = nhs
        .iter()
        .find(|n| n.gateway == "198.18.2.2")
        .expect("next hop");
    assert!(
        nh.live && nh.resolved && nh.state == "up" && nh.interface == "eth2",
        "{nh:?}"
    );
    let bfd = dp
        .list_bfd_sessions(pb::ListBfdSessionsRequest {})
        .await?
        .into_inner();
    assert!(
        bfd.sessions.is_empty() && bfd.counters.is_some(),
        "the line lab runs no BFD"
    );

    // Stats, once and streamed.
    let s = dp
        .get_stats(pb::GetStatsRequest { include_zero: true })
        .await?
        .into_inner();
    assert!(s.reasons.len() >= 30, "every reason with include_zero");
    assert!(s.next_hops.iter().any(|n| n.gateway == "198.18.1.2"));
    let mut w = dp
        .watch_stats(pb::WatchStatsRequest {
            interval_ms: 100,
            include_zero: false,
        })
        .await?
        .into_inner();
    let first = w.next().await.expect("a first sample")?;
    let second = w.next().await.expect("a second sample")?;
    let gap = second.unix_ns - first.unix_ns;
    assert!(
        (80_000_000..1_000_000_000).contains(&gap),
        "samples {gap} ns apart"
    );

    // Policy: set one, read it back with its generation.
    let g0 = dp
        .get_policy(pb::GetPolicyRequest {})
        .await?
        .into_inner()
        .generation;
    let policy = pb::Policy {
        identities: vec![
            pb::Identity {
                name: "h1".into(),
                id: 10,
                prefixes: vec!["198.18.1.0/24".into()],
            },
            pb::Identity {
                name: "h2".into(),
                id: 20,
                prefixes: vec!["198.18.2.0/24".into()],
            },
        ],
        rules: vec![pb::Rule {
            from: "h1".into(),
            to: "h2".into(),
            proto: "udp".into(),
            ports: format!("{}", 6000 + u32::from(base)),
            action: "deny".into(),
            ..Default::default()
        }],
        defaults: vec![],
        generation: 0,
        enabled: false,
    };
    let g1 = dp
        .set_policy(pb::SetPolicyRequest {
            policy: Some(policy),
            confirm_within_s: 0,
        })
        .await?
        .into_inner()
        .generation;
    assert_eq!(g1, g0 + 1);
    let p = dp.get_policy(pb::GetPolicyRequest {}).await?.into_inner();
    assert_eq!(
        (p.generation, p.enabled, p.rules.len(), p.identities.len()),
        (g1, true, 1, 2)
    );
    let e = dp
        .explain(pb::ExplainRequest {
            ingress: "eth1".into(),
            src: "198.18.1.2".into(),
            dst: "198.18.2.2".into(),
            proto: "udp".into(),
            sport: 1000,
            dport: 6000 + u32::from(base),
        })
        .await?
        .into_inner();
    assert_eq!(
        (e.verdict.as_str(), e.rule_id, e.src_identity.as_str()),
        ("drop", 1, "h1"),
        "{}",
        e.text
    );

    // Drops: the deny rule's drops reach the stream with their rule and port.
    let mut drops = dp
        .monitor_drops(pb::MonitorDropsRequest { max_events: 1 })
        .await?
        .into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let port = 6000 + u32::from(base);
    for _ in 0..3 {
        sh(&format!(
            "ip netns exec {h1_ns} bash -c 'echo x > /dev/udp/198.18.2.2/{port}'"
        ));
    }
    let d = tokio::time::timeout(Duration::from_secs(5), drops.next())
        .await?
        .expect("a drop event")?;
    assert_eq!(
        (
            d.reason.as_str(),
            d.rule_id,
            d.dport,
            d.interface.as_str(),
            d.src.as_str()
        ),
        ("drop_policy_deny", 1, port, "eth1", "198.18.1.2")
    );
    assert!(drops.next().await.is_none(), "max_events ends the stream");

    // Events: carrier loss on eth2 shows as link, next-hop and failover events.
    let mut events = dp
        .watch_events(pb::WatchEventsRequest {
            include_history: false,
        })
        .await?
        .into_inner();
    sh("ip link set eth2 down");
    let mut kinds = std::collections::BTreeSet::new();
    while kinds.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await?
            .expect("an event")?;
        assert!(e.unix_ns > 0 && !e.reason.is_empty());
        use pb::event::Kind;
        match e.kind.expect("a kind") {
            Kind::Link(l) => {
                assert_eq!((l.interface.as_str(), l.up), ("eth2", false));
                kinds.insert("link");
            }
            Kind::NextHop(n) if n.to == "down" => {
                assert_eq!(n.source, "carrier");
                kinds.insert("nexthop");
            }
            Kind::Failover(f) => {
                assert_eq!(f.from.expect("from").interface, "eth2");
                kinds.insert("failover");
            }
            _ => {}
        }
    }
    sh("ip link set eth2 up");
    // Back live after the hold-down (and the neighbour resolved again).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let nhs = dp
            .list_next_hops(pb::ListNextHopsRequest {})
            .await?
            .into_inner()
            .next_hops;
        if nhs.iter().filter(|n| n.interface == "eth2").all(|n| n.live) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "eth2's next hops never came back: {nhs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Health and reflection answer on the same listener.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: x0_proto::DATAPLANE_SERVICE.into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(l)) =
        answers.next().await.expect("an answer")?.message_response
    else {
        panic!("not a service list");
    };
    let services: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
    assert!(
        services.contains(&x0_proto::DATAPLANE_SERVICE.to_string()),
        "{services:?}"
    );
    assert!(
        services.contains(&"grpc.health.v1.Health".to_string()),
        "{services:?}"
    );
    Ok(())
}

#[test]
fn every_rpc_over_both_listeners() {
    let lab = common::lab("line.toml", |_| {});
    let h1 = lab.ns("h1");
    let h1_again = h1.clone();
    with_client(&lab, unix_target(&lab), |dp, ch| {
        exercise_every_rpc(dp, ch, h1, "unix:uid=0", 1)
    });
    with_client(&lab, lab.api_target(x0_lab::pki::OPERATOR), |dp, ch| {
        exercise_every_rpc(
            dp,
            ch,
            h1_again,
            "spiffe://lab.x0tta6bl4/orchestrator/lab",
            2,
        )
    });
}

fn add_op(prefix: String, via: &[(&str, &str)]) -> pb::RouteOperation {
    pb::RouteOperation {
        op: Some(pb::route_operation::Op::Add(route(&prefix, via))),
    }
}

fn batch_prefix(i: u32) -> String {
    format!("10.{}.{}.0/24", 64 + (i >> 8), i & 255)
}

/// (prefix, next hops) of every API route.
async fn api_routes(dp: &mut Client) -> Result<Vec<(String, Vec<String>)>> {
    let mut v: Vec<(String, Vec<String>)> = list(dp, pb::RouteOrigin::Api)
        .await?
        .into_iter()
        .map(|r| {
            let via = r
                .next_hops
                .iter()
                .map(|n| format!("{}@{}", n.gateway, n.interface))
                .collect();
            (r.prefix, via)
        })
        .collect();
    v.sort();
    Ok(v)
}

#[test]
fn batch_of_10000_routes_is_read_back_all_or_nothing_and_kept_across_restarts() {
    const N: u32 = 10_000;
    let lab = common::lab("line.toml", |_| {});
    let mut expected: Vec<(String, Vec<String>)> = (0..N)
        .map(|i| {
            let via = if i % 2 == 0 {
                vec!["198.18.2.2@eth2".to_string(), "198.18.1.2@eth1".to_string()]
            } else {
                vec!["198.18.1.2@eth1".to_string()]
            };
            (batch_prefix(i), via)
        })
        .collect();
    expected.sort();
    let target = lab.api_target(x0_lab::pki::OPERATOR);
    let want = expected.clone();
    with_client(&lab, target.clone(), move |mut dp, _| async move {
        let ops: Vec<pb::RouteOperation> = (0..N)
            .map(|i| {
                if i % 2 == 0 {
                    add_op(
                        batch_prefix(i),
                        &[("198.18.2.2", "eth2"), ("198.18.1.2", "eth1")],
                    )
                } else {
                    add_op(batch_prefix(i), &[("198.18.1.2", "eth1")])
                }
            })
            .collect();
        let started = std::time::Instant::now();
        let r = dp.batch_routes(tokio_stream::iter(ops)).await?.into_inner();
        eprintln!("{N} routes in one batch over mTLS: {:?}", started.elapsed());
        assert_eq!((r.added, r.replaced, r.deleted), (u64::from(N), 0, 0));
        assert_eq!(api_routes(&mut dp).await?, want, "read back exactly");

        // All or nothing: 100 new routes and then one that exists.
        let mut ops: Vec<_> = (N..N + 100)
            .map(|i| add_op(batch_prefix(i), &[("198.18.1.2", "eth1")]))
            .collect();
        ops.push(add_op(batch_prefix(7), &[("198.18.1.2", "eth1")]));
        let e = dp.batch_routes(tokio_stream::iter(ops)).await.unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        assert!(
            e.message().starts_with("operations[100].add.prefix"),
            "{}",
            e.message()
        );
        // ... and one that is invalid in the middle.
        let mut ops: Vec<_> = (N..N + 100)
            .map(|i| add_op(batch_prefix(i), &[("198.18.1.2", "eth1")]))
            .collect();
        ops[50] = add_op("10.250.0.1/24".into(), &[("198.18.1.2", "eth1")]);
        let e = dp.batch_routes(tokio_stream::iter(ops)).await.unwrap_err();
        assert_names_field(&e, "operations[50].add.prefix");
        assert_eq!(
            api_routes(&mut dp).await?,
            want,
            "neither failed batch left a trace"
        );
        Ok(())
    });

    // A restart adopts them; a cold start (pins removed, as after a reboot) reads them back
    // from the state file.
    lab.stop_dataplane("r1").unwrap();
    lab.start_dataplane("r1").unwrap();
    lab.wait_ready("r1", Duration::from_secs(30)).unwrap();
    let want = expected.clone();
    with_client(&lab, target.clone(), move |mut dp, _| async move {
        assert_eq!(api_routes(&mut dp).await?, want, "after a restart");
        Ok(())
    });
    lab.stop_dataplane("r1").unwrap();
    lab.detach_dataplane("r1").unwrap();
    lab.start_dataplane("r1").unwrap();
    lab.wait_ready("r1", Duration::from_secs(30)).unwrap();
    with_client(&lab, target, move |mut dp, _| async move {
        assert_eq!(api_routes(&mut dp).await?, expected, "after a cold start");
        let e = dp
            .explain(pb::ExplainRequest {
                ingress: "eth1".into(),
                src: "198.18.1.2".into(),
                dst: "10.64.0.9".into(),
                proto: "udp".into(),
                sport: 1,
                dport: 2,
            })
            .await?
            .into_inner();
        assert_eq!(
            (e.verdict.as_str(), e.next_hop.as_str()),
            ("forward", "198.18.2.2"),
            "{}",
            e.text
        );
        Ok(())
    });
}

/// What a refused request must leave as it was.
async fn snapshot(dp: &mut Client) -> Result<String> {
    let routes = list(dp, pb::RouteOrigin::Unspecified).await?;
    let mut p = dp.get_policy(pb::GetPolicyRequest {}).await?.into_inner();
    for r in &mut p.rules {
        r.packets = 0;
    }
    Ok(format!("{routes:?}\n{p:?}"))
}

#[test]
fn invalid_requests_are_refused_naming_the_field_and_change_nothing() {
    let lab = common::lab("line.toml", |_| {});
    with_client(&lab, unix_target(&lab), |mut dp, _| async move {
        // A policy in force, so that a refused one visibly leaves it alone.
        let good = pb::Policy {
            identities: vec![pb::Identity {
                name: "h1".into(),
                id: 10,
                prefixes: vec!["198.18.1.0/24".into()],
            }],
            rules: vec![pb::Rule {
                from: "h1".into(),
                to: "any".into(),
                proto: "udp".into(),
                action: "allow".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        dp.set_policy(pb::SetPolicyRequest {
            policy: Some(good.clone()),
            confirm_within_s: 0,
        })
        .await?;
        dp.add_route(pb::AddRouteRequest {
            route: Some(route("10.1.0.0/16", &[("198.18.2.2", "eth2")])),
        })
        .await?;
        let before = snapshot(&mut dp).await?;

        let r1 = |prefix: &str, via: &[(&str, &str)]| Some(route(prefix, via));
        let nine: Vec<(String, String)> = (1..=9)
            .map(|i| (format!("198.18.2.{}", i + 10), "eth2".to_string()))
            .collect();
        let nine: Vec<(&str, &str)> = nine.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let adds: Vec<(Option<pb::Route>, &str)> = vec![
            (None, "route: missing"),
            (r1("banana", &[("198.18.2.2", "eth2")]), "route.prefix"),
            (
                r1("10.2.0.1/16", &[("198.18.2.2", "eth2")]),
                "route.prefix: 10.2.0.1/16 has host bits",
            ),
            (r1("10.2.0.0/33", &[("198.18.2.2", "eth2")]), "route.prefix"),
            (r1("10.2.0.0/16", &[]), "route.next_hops: needs 1 to 8"),
            (r1("10.2.0.0/16", &nine), "route.next_hops: needs 1 to 8"),
            (
                r1("10.2.0.0/16", &[("nonsense", "eth2")]),
                "route.next_hops[0].gateway",
            ),
            (
                r1("10.2.0.0/16", &[("2001:db8:2::2", "eth2")]),
                "route.next_hops[0].gateway",
            ),
            (
                r1("10.2.0.0/16", &[("224.0.0.5", "eth2")]),
                "route.next_hops[0].gateway",
            ),
            (
                r1("10.2.0.0/16", &[("198.18.2.2", "eth9")]),
                "route.next_hops[0].interface",
            ),
            (
                r1("10.2.0.0/16", &[("198.18.2.2", "")]),
                "route.next_hops[0].interface",
            ),
            (
                r1(
                    "10.2.0.0/16",
                    &[("198.18.2.2", "eth2"), ("198.18.2.2", "eth2")],
                ),
                "route.next_hops[1]",
            ),
        ];
        for (route, field) in adds {
            let e = dp
                .add_route(pb::AddRouteRequest {
                    route: route.clone(),
                })
                .await
                .unwrap_err();
            assert_names_field(&e, field);
            let e = dp
                .replace_route(pb::ReplaceRouteRequest { route })
                .await
                .unwrap_err();
            assert_names_field(&e, field);
            assert_eq!(snapshot(&mut dp).await?, before);
        }
        let e = dp
            .delete_route(pb::DeleteRouteRequest {
                prefix: "10.1.0.1/16".into(),
            })
            .await
            .unwrap_err();
        assert_names_field(&e, "prefix");
        // A long value comes back as its start and length, not whole.
        let e = dp
            .add_route(pb::AddRouteRequest {
                route: r1(&"1".repeat(10_000), &[("198.18.2.2", "eth2")]),
            })
            .await
            .unwrap_err();
        assert_names_field(&e, "route.prefix");
        assert!(e.message().len() < 200, "{} bytes", e.message().len());
        assert!(e.message().contains("(10000 bytes)"), "{}", e.message());
        // A request above max_message_bytes (the lab sets 16 MiB) is RESOURCE_EXHAUSTED.
        let e = dp
            .add_route(pb::AddRouteRequest {
                route: r1(&"1".repeat(17 << 20), &[("198.18.2.2", "eth2")]),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("too large"), "{}", e.message());
        assert_eq!(snapshot(&mut dp).await?, before);
        let ops = vec![
            add_op("10.3.0.0/16".into(), &[("198.18.2.2", "eth2")]),
            pb::RouteOperation { op: None },
        ];
        let e = dp.batch_routes(tokio_stream::iter(ops)).await.unwrap_err();
        assert_names_field(&e, "operations[1]");
        assert_eq!(snapshot(&mut dp).await?, before);

        let with = |f: &dyn Fn(&mut pb::Policy)| {
            let mut p = good.clone();
            f(&mut p);
            Some(p)
        };
        let policies: Vec<(Option<pb::Policy>, &str)> = vec![
            (None, "policy: missing"),
            (
                with(&|p| p.identities[0].name = "any".into()),
                "policy.identities[0].name",
            ),
            (with(&|p| p.identities[0].id = 0), "policy.identities[0].id"),
            (
                with(&|p| p.identities[0].prefixes[0] = "zz".into()),
                "policy.identities[0].prefixes[0]",
            ),
            (
                with(&|p| p.rules[0].action = "maybe".into()),
                "policy.rules[0].action",
            ),
            (
                with(&|p| p.rules[0].from = "ghost".into()),
                "policy.rules[0].from",
            ),
            (
                with(&|p| p.rules[0].ports = "9-1".into()),
                "policy.rules[0].ports",
            ),
            (
                with(&|p| p.rules[0].rate = Some(pb::RateLimit { pps: 0, burst: 1 })),
                "policy.rules[0].rate",
            ),
            (
                with(&|p| {
                    p.defaults.push(pb::InterfaceDefault {
                        interface: "eth9".into(),
                        action: "deny".into(),
                    })
                }),
                "policy.defaults[0].interface",
            ),
            (
                with(&|p| {
                    p.defaults.push(pb::InterfaceDefault {
                        interface: "eth1".into(),
                        action: "perhaps".into(),
                    })
                }),
                "policy.defaults[0].action",
            ),
        ];
        for (policy, field) in policies {
            let e = dp
                .set_policy(pb::SetPolicyRequest {
                    policy: policy.clone(),
                    confirm_within_s: 0,
                })
                .await
                .unwrap_err();
            assert_names_field(&e, field);
            assert_eq!(snapshot(&mut dp).await?, before);
        }

        let e = dp
            .watch_stats(pb::WatchStatsRequest {
                interval_ms: 5,
                include_zero: false,
            })
            .await
            .unwrap_err();
        assert_names_field(&e, "interval_ms");
        let probe = pb::ExplainRequest {
            ingress: "eth1".into(),
            src: "198.18.1.2".into(),
            dst: "198.18.2.2".into(),
            proto: "udp".into(),
            sport: 1,
            dport: 2,
        };
        let explains: Vec<(pb::ExplainRequest, &str)> = vec![
            (
                pb::ExplainRequest {
                    src: "x".into(),
                    ..probe.clone()
                },
                "src",
            ),
            (
                pb::ExplainRequest {
                    dst: "2001:db8::1".into(),
                    ..probe.clone()
                },
                "dst",
            ),
            (
                pb::ExplainRequest {
                    proto: "sctp".into(),
                    ..probe.clone()
                },
                "proto",
            ),
            (
                pb::ExplainRequest {
                    ingress: "eth9".into(),
                    ..probe.clone()
                },
                "ingress",
            ),
            (
                pb::ExplainRequest {
                    sport: 70_000,
                    ..probe.clone()
                },
                "sport",
            ),
        ];
        for (req, field) in explains {
            let e = dp.explain(req).await.unwrap_err();
            assert_names_field(&e, field);
        }
        assert_eq!(snapshot(&mut dp).await?, before);
        Ok(())
    });
}

/// A batch that runs out of next-hop sets while it is written (66,000 routes, each with
/// its own pair of next hops; the tables hold 65,536 sets) is undone whole: the routes
/// are as before, and the sets it took are free again.
#[test]
fn a_batch_that_fills_the_tables_while_written_is_undone_whole() {
    let lab = common::lab("line.toml", |_| {});
    let routes = || lab.x0ctl("r1", &["--json", "route", "list"]).unwrap();
    let before = routes();
    let line = |i: u32| {
        format!(
            "add 2001:db8:{:x}:{:x}::/64 2001:db8:2::1:{:x}@eth2 2001:db8:2::2:{:x}@eth2\n",
            0xf000 + i / 65_536,
            i % 65_536,
            i / 256,
            i % 256
        )
    };
    let file = lab.file("r1", "batch.txt");
    std::fs::write(&file, (0..66_000).map(line).collect::<String>()).unwrap();
    let e = lab
        .x0ctl("r1", &["route", "batch", file.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ResourceExhausted") && e.contains("the batch was undone"),
        "{e}"
    );
    assert_eq!(routes(), before, "the failed batch left routes behind");
    std::fs::write(&file, (0..10).map(line).collect::<String>()).unwrap();
    lab.x0ctl("r1", &["route", "batch", file.to_str().unwrap()])
        .unwrap();
}
