//! `x0-dataplane run`: bring the fast path up from a config, keep next hops in step with
//! the kernel's neighbour table, and take everything down on SIGTERM.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use ipnet::IpNet;

use crate::{
    Dataplane,
    config::Config,
    netlink::{Event, Events, Link, LocalAddr, Netlink},
    tables::{NextHopSpec, RouteTarget},
};

/// How often next hops without a MAC are re-resolved.
const RESOLVE_RETRY: Duration = Duration::from_secs(1);
/// How long start-up waits for next hops to resolve before declaring itself ready.
const READY_WAIT: Duration = Duration::from_secs(3);

pub struct RunOptions {
    pub config: Config,
    /// Touched once every interface is attached (for supervisors and the lab).
    pub ready_file: Option<PathBuf>,
}

type Shared = Arc<Mutex<Option<Dataplane>>>;

/// Builds the dataplane from the config. On error, whatever was attached is detached again.
pub fn bring_up(config: &Config, nl: &Netlink) -> Result<Dataplane> {
    let routes = config.routes()?;
    let links = nl.links()?;
    let mut ports: HashMap<&str, Link> = HashMap::new();
    for (i, iface) in config.interfaces.iter().enumerate() {
        let link = links.iter().find(|l| l.name == iface.name).ok_or_else(|| {
            anyhow!(
                "interface[{i}].name: no interface named {:?} in this network namespace",
                iface.name
            )
        })?;
        ports.insert(iface.name.as_str(), link.clone());
    }

    let mut dp = Dataplane::load(&config.pin_root)?;
    let result = (|| -> Result<()> {
        dp.set_fib_fallback(config.fib_fallback)?;
        for link in ports.values() {
            dp.add_port(link)?;
        }
        for a in nl.addresses()? {
            set_local(&mut dp, &a, true);
        }
        for (i, r) in routes.iter().enumerate() {
            let specs = r
                .via
                .iter()
                .map(|(gateway, name)| NextHopSpec {
                    gateway: *gateway,
                    ifindex: ports[name.as_str()].ifindex,
                })
                .collect();
            dp.tables()
                .upsert(r.prefix, RouteTarget::NextHops(specs))
                .with_context(|| format!("route[{i}] ({})", r.prefix))?;
        }
        let pruned = dp.tables().prune_foreign()?;
        if pruned > 0 {
            tracing::info!(
                pruned,
                "removed routes left in the pinned maps by an earlier run"
            );
        }
        for n in nl.neighbours()? {
            dp.tables().set_neighbour(n.ifindex, n.addr, n.mac)?;
        }
        resolve_missing(&dp, nl);
        for iface in &config.interfaces {
            dp.attach(&ports[iface.name.as_str()], config.xdp_mode)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(dp),
        Err(e) => {
            if let Err(e2) = dp.shutdown() {
                tracing::warn!(error = %e2, "cleanup after a failed start");
            }
            Err(e)
        }
    }
}

/// Local addresses get a local route, so packets for the router go to its kernel.
fn set_local(dp: &mut Dataplane, a: &LocalAddr, present: bool) {
    let is_link_local = match a.addr {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if is_link_local || a.addr.is_loopback() {
        return; // never forwarded anyway
    }
    let prefix = IpNet::from(a.addr);
    let tables = dp.tables();
    let result = if present {
        tables.upsert(prefix, RouteTarget::Local)
    } else if tables
        .routes()
        .any(|(p, t)| *p == prefix && *t == RouteTarget::Local)
    {
        tables.remove(prefix)
    } else {
        Ok(())
    };
    match result {
        Ok(()) => tracing::debug!(%prefix, present, "local route"),
        Err(e) => tracing::warn!(%prefix, error = %e, "local route not updated"),
    }
}

fn resolve_missing(dp: &Dataplane, nl: &Netlink) {
    for spec in dp.tables_ref().unresolved() {
        if let Err(e) = nl.resolve(spec.ifindex, spec.gateway) {
            tracing::warn!(gateway = %spec.gateway, ifindex = spec.ifindex, error = %e, "cannot ask the kernel to resolve");
        } else {
            tracing::debug!(gateway = %spec.gateway, ifindex = spec.ifindex, "resolving next hop");
        }
    }
}

fn handle_event(dp: &mut Dataplane, nl: &Netlink, event: Event) -> Result<()> {
    match event {
        Event::Neighbour(n) => {
            if dp.tables().set_neighbour(n.ifindex, n.addr, n.mac)? {
                match n.mac {
                    Some(mac) => {
                        tracing::info!(gateway = %n.addr, ifindex = n.ifindex, mac = %fmt_mac(&mac), "next hop resolved")
                    }
                    None => {
                        tracing::info!(gateway = %n.addr, ifindex = n.ifindex, "next hop unresolved: packets go to the kernel")
                    }
                }
            }
        }
        Event::NeighbourGone(n) => {
            let spec = NextHopSpec {
                gateway: n.addr,
                ifindex: n.ifindex,
            };
            if dp.tables_ref().nexthops().any(|s| s.spec == spec) {
                // Keep forwarding with the last MAC (as the kernel does with a stale entry)
                // and ask again; a failed resolution then marks it unresolved.
                nl.resolve(n.ifindex, n.addr)?;
            }
        }
        Event::Link(link) => {
            if dp.attached().any(|(i, _, _)| i == link.ifindex) {
                dp.tables().set_port(
                    link.ifindex,
                    crate::tables::PortInfo {
                        mac: link.mac,
                        mtu: link.mtu,
                    },
                )?;
            }
        }
        Event::LinkGone(ifindex) => {
            if dp.attached().any(|(i, _, _)| i == ifindex) {
                tracing::warn!(ifindex, "an attached interface was deleted");
            }
        }
        Event::AddrAdded(a) => set_local(dp, &a, true),
        Event::AddrRemoved(a) => set_local(dp, &a, false),
    }
    Ok(())
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Runs until SIGTERM or SIGINT, then detaches everything.
pub async fn run(opts: RunOptions) -> Result<()> {
    // Subscribe before the first dump, so no change between the two is lost.
    let mut events = Events::subscribe()?;
    let nl = Netlink::connect()?;
    let dp = bring_up(&opts.config, &nl)?;
    for (ifindex, name, mode) in dp.attached() {
        tracing::info!(iface = name, ifindex, ?mode, "forwarding");
    }
    let shared: Shared = Arc::new(Mutex::new(Some(dp)));

    let ev_shared = shared.clone();
    std::thread::Builder::new()
        .name("netlink-events".into())
        .spawn(move || {
            let nl = match Netlink::connect() {
                Ok(nl) => nl,
                Err(e) => return tracing::error!(error = %e, "netlink"),
            };
            loop {
                match events.next_event() {
                    Ok(event) => {
                        let mut guard = ev_shared.lock().expect("dataplane lock");
                        let Some(dp) = guard.as_mut() else { return };
                        if let Err(e) = handle_event(dp, &nl, event) {
                            tracing::warn!(error = %e, "netlink event not applied");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "netlink event stream failed");
                        return;
                    }
                }
            }
        })?;

    // Ready once every next hop has a MAC (or the wait is over): until then their packets
    // go through the kernel, which may not forward them.
    let deadline = std::time::Instant::now() + READY_WAIT;
    loop {
        let unresolved = shared
            .lock()
            .expect("dataplane lock")
            .as_ref()
            .map_or(0, |dp| dp.tables_ref().unresolved().len());
        if unresolved == 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            tracing::warn!(unresolved, "next hops still unresolved; going ready anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(p) = &opts.ready_file {
        std::fs::write(p, b"ready\n").with_context(|| format!("writing {}", p.display()))?;
    }
    tracing::info!(pin_root = %opts.config.pin_root.display(), "x0-dataplane ready");

    let retry_shared = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESOLVE_RETRY);
        loop {
            tick.tick().await;
            let guard = retry_shared.lock().expect("dataplane lock");
            match guard.as_ref() {
                Some(dp) => resolve_missing(dp, &nl),
                None => return,
            }
        }
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
    let dp = shared
        .lock()
        .expect("dataplane lock")
        .take()
        .expect("running");
    dp.shutdown()?;
    if let Some(p) = &opts.ready_file {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("detached and unpinned; bye");
    Ok(())
}
