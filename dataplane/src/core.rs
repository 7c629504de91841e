//! `Dataplane`: the loaded programs and maps, the attached interfaces, and the operations
//! on them. Everything that changes the fast path goes through here.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, Map, MapData, ProgramArray},
    programs::{
        TestRun, TestRunOptions, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use serde::{Deserialize, Serialize};
use x0_common::{CFG_F_FIB_FALLBACK, Config, map_names, policy::JUMP_POLICY, program_names};

use crate::{
    XDP_OBJECT,
    bfd::xsk_transport::XskMaps,
    bpffs,
    counters::{CounterMaps, Counters},
    netlink::Link,
    policy::{CompiledPolicy, PolicyMaps},
    tables::{PortInfo, TableMaps, Tables},
    v4_direct::V4DirectTable,
    v4_filter::V4Filter,
};

/// How to attach: native (driver) mode is what makes XDP fast; generic mode works
/// everywhere but runs after the kernel has built an skb.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum XdpModeChoice {
    /// Native, falling back to generic with a warning.
    #[default]
    Auto,
    /// Native or fail.
    Native,
    /// Generic only.
    Generic,
}

/// The mode an interface ended up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
    /// Took over the link an earlier run left attached (in whatever mode it had).
    Adopted,
}

/// Replaces the program in the pinned link at `pin` with `prog`, atomically.
fn adopt_link(prog: &mut Xdp, pin: &Path) -> Result<FdLink> {
    let pinned = PinnedLink::from_pin(pin).context("opening the pinned link")?;
    let link = XdpLink::try_from(FdLink::from(pinned)).context("not an XDP link")?;
    let id = prog.attach_to_link(link).context("bpf_link_update")?;
    Ok(FdLink::try_from(prog.take_link(id)?)?)
}

/// Removes the link pins and the map pins under `pin_root`. Programs whose links are
/// held by no process any more are detached by the kernel.
pub fn remove_all_pins(pin_root: &Path) -> Result<()> {
    let links = pin_root.join("links");
    if let Ok(entries) = std::fs::read_dir(&links) {
        for e in entries.flatten() {
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
        }
        let _ = std::fs::remove_dir(&links);
    }
    let _ = std::fs::remove_file(pin_root.join(crate::explain::PROGRAM_PIN));
    bpffs::remove_pins(pin_root, &map_names::ALL)
}

struct Port {
    name: String,
    mode: AttachMode,
    /// Our reference to the pinned bpf_link.
    link: FdLink,
    pin: PathBuf,
}

pub struct Dataplane {
    ebpf: Ebpf,
    /// Maps of an earlier run were found pinned and taken over.
    adopted: bool,
    policy: PolicyMaps,
    /// For the BFD AF_XDP transport, which takes them.
    xsk_maps: Option<XskMaps>,
    pin_root: PathBuf,
    tables: Tables,
    tx_ports: DevMapHash<MapData>,
    config: Array<MapData, Config>,
    counters: CounterMaps,
    ports: BTreeMap<u32, Port>,
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("map {name} missing from the object"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

/// A memory-mapped array (the IPv4 probe filter, the IPv4 direct table).
fn mapped<T>(
    ebpf: &mut Ebpf,
    name: &str,
    new: impl FnOnce(MapData) -> std::io::Result<T>,
) -> Result<T> {
    match ebpf.take_map(name) {
        Some(Map::Array(data)) => new(data).with_context(|| format!("memory-mapping map {name}")),
        Some(_) => bail!("map {name} has an unexpected type"),
        None => bail!("map {name} missing from the object"),
    }
}

impl Dataplane {
    /// Loads the programs and creates (or adopts, if already pinned there) the maps
    /// under `pin_root`. Attaches nothing.
    pub fn load(pin_root: &Path) -> Result<Self> {
        Self::load_with(pin_root, x0_common::policy::CT_DEFAULT_ENTRIES)
    }

    /// Like `load`, with the connection tables' capacity, each (when the maps are new).
    pub fn load_with(pin_root: &Path, conntrack_entries: u32) -> Result<Self> {
        Self::load_sized(
            pin_root,
            &[
                (map_names::CONNTRACK, conntrack_entries),
                (map_names::CONNTRACK_V4, conntrack_entries),
            ],
        )
    }

    /// Like `load`, with capacities by map name for the maps created new: the
    /// connection table's from the config; small route maps in tests that need the kernel
    /// to refuse a write.
    /// A load that fails (the verifier refuses a program, say) leaves no maps it created
    /// pinned: each set holds hundreds of MiB of kernel memory.
    pub fn load_sized(pin_root: &Path, sizes: &[(&str, u32)]) -> Result<Self> {
        bpffs::prepare(pin_root)?;
        let adopted = pin_root.join(map_names::STATS).exists();
        let loaded = Self::load_at(pin_root, sizes, adopted);
        if loaded.is_err() && !adopted {
            let _ = bpffs::remove_pins(pin_root, &map_names::ALL);
        }
        loaded
    }

    fn load_at(pin_root: &Path, sizes: &[(&str, u32)], adopted: bool) -> Result<Self> {
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(pin_root);
        for (name, entries) in sizes {
            loader.map_max_entries(name, *entries);
        }
        let mut ebpf = loader.load(XDP_OBJECT).context("loading the XDP object")?;
        for name in [
            program_names::FORWARD,
            program_names::PASS,
            program_names::POLICY,
        ] {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("verifying program {name}"))?;
        }
        // Pinned for `x0-dataplane explain`, which runs it on probe packets.
        let forward_pin = pin_root.join(crate::explain::PROGRAM_PIN);
        let _ = std::fs::remove_file(&forward_pin);
        let forward: &mut Xdp = ebpf
            .program_mut(program_names::FORWARD)
            .expect("loaded")
            .try_into()?;
        forward
            .pin(&forward_pin)
            .with_context(|| format!("pinning {}", forward_pin.display()))?;
        // x0_forward tail-calls x0_policy when policy is on.
        let mut jump: ProgramArray<MapData> = take(&mut ebpf, map_names::JUMP)?;
        let policy: &Xdp = ebpf
            .program(program_names::POLICY)
            .expect("loaded")
            .try_into()?;
        jump.set(JUMP_POLICY, policy.fd()?, 0)
            .context("installing x0_policy")?;
        let capacity = |name: &str| -> Result<u32> {
            let map = MapData::from_pin(pin_root.join(name))
                .with_context(|| format!("opening the pinned {name}"))?;
            Ok(map.info()?.max_entries())
        };
        let capacities = (
            capacity(map_names::ROUTES_V4_EXACT)?,
            capacity(map_names::ROUTES_V6)?,
        );
        let tables = Tables::new(TableMaps {
            capacities,
            routes_v4: take(&mut ebpf, map_names::ROUTES_V4)?,
            routes_v4_exact: take(&mut ebpf, map_names::ROUTES_V4_EXACT)?,
            v4_lengths: take(&mut ebpf, map_names::V4_LENGTHS)?,
            v4_filter: mapped(&mut ebpf, map_names::V4_FILTER, V4Filter::new)?,
            v4_direct: mapped(&mut ebpf, map_names::V4_DIRECT, V4DirectTable::new)?,
            routes_v6: take(&mut ebpf, map_names::ROUTES_V6)?,
            sets: take(&mut ebpf, map_names::NEXTHOP_SETS)?,
            nexthops: take(&mut ebpf, map_names::NEXTHOPS)?,
            live: take(&mut ebpf, map_names::NEXTHOP_LIVE)?,
            nh_stats: take(&mut ebpf, map_names::NEXTHOP_STATS)?,
            health: take(&mut ebpf, map_names::NEXTHOP_HEALTH)?,
            port_state: take(&mut ebpf, map_names::PORTS)?,
        });
        let mut tables = tables;
        let adopted_routes = tables.adopt()?;
        if adopted_routes > 0 {
            tracing::info!(
                adopted_routes,
                "adopted the routes of an earlier run from the pinned maps"
            );
        }
        let counters = CounterMaps {
            stats: take(&mut ebpf, map_names::STATS)?,
            if_stats: take(&mut ebpf, map_names::IF_STATS)?,
            if_stats_high: take(&mut ebpf, map_names::IF_STATS_HIGH)?,
        };
        Ok(Self {
            adopted,
            policy: PolicyMaps {
                state: take(&mut ebpf, map_names::POLICY)?,
                ident_v4: take(&mut ebpf, map_names::IDENTITIES_V4)?,
                ident_v6: take(&mut ebpf, map_names::IDENTITIES_V6)?,
                rules: take(&mut ebpf, map_names::RULES)?,
                rate: take(&mut ebpf, map_names::RATE)?,
            },
            xsk_maps: Some(XskMaps {
                xsks: take(&mut ebpf, map_names::XSKS)?,
                slots: take(&mut ebpf, map_names::XSK_SLOTS)?,
            }),
            tx_ports: take(&mut ebpf, map_names::TX_PORTS)?,
            config: take(&mut ebpf, map_names::CONFIG)?,
            ebpf,
            pin_root: pin_root.to_path_buf(),
            tables,
            counters,
            ports: BTreeMap::new(),
        })
    }

    /// Installs a compiled policy atomically (see policy.rs); `ifindex_of` names the
    /// interfaces. Returns the new policy generation.
    pub fn install_policy(
        &mut self,
        p: &CompiledPolicy,
        ifindex_of: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<u32> {
        let ports: Vec<u32> = self.tables.ports().map(|(i, _)| *i).collect();
        let tables = &mut self.tables;
        let mut set_default = |ifindex: u32, version: u32, deny: bool| -> Result<()> {
            Ok(tables.set_port_default(ifindex, version, deny)?)
        };
        self.policy.install(p, ifindex_of, &mut set_default, &ports)
    }

    /// The maps that steer BFD packets to AF_XDP sockets (once).
    pub fn take_xsk_maps(&mut self) -> Option<XskMaps> {
        self.xsk_maps.take()
    }

    pub fn adopted(&self) -> bool {
        self.adopted
    }

    pub fn pin_root(&self) -> &Path {
        &self.pin_root
    }

    pub fn tables(&mut self) -> &mut Tables {
        &mut self.tables
    }

    pub fn tables_ref(&self) -> &Tables {
        &self.tables
    }

    /// The loaded forwarding program (for BPF_PROG_TEST_RUN).
    pub fn program(&self, name: &str) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(name)
            .with_context(|| format!("program {name} missing"))?
            .try_into()?)
    }

    pub fn set_fib_fallback(&mut self, on: bool) -> Result<()> {
        let flags = if on { CFG_F_FIB_FALLBACK } else { 0 };
        self.config.set(0, Config { flags, _pad: 0 }, 0)?;
        Ok(())
    }

    /// Makes `link` a port: a valid egress for next hops and redirects. Does not attach.
    pub fn add_port(&mut self, link: &Link) -> Result<()> {
        let info = PortInfo {
            mac: link.mac,
            mtu: link.mtu,
            up: link.up,
        };
        self.tables.set_port(link.ifindex, info)?;
        self.tx_ports.insert(link.ifindex, link.ifindex, None, 0)?;
        Ok(())
    }

    fn link_pin(&self, name: &str) -> PathBuf {
        self.pin_root.join("links").join(name)
    }

    /// Attaches the forwarding program to a port through a bpf_link pinned under
    /// `pin_root/links/<name>`. If an earlier run left such a link, the program in it is
    /// replaced atomically by this one (no frame sees the interface without a program).
    pub fn attach(&mut self, link: &Link, mode: XdpModeChoice) -> Result<AttachMode> {
        if self.ports.contains_key(&link.ifindex) {
            bail!("{} is already attached", link.name);
        }
        self.add_port(link)?;
        let pin = self.link_pin(&link.name);
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(program_names::FORWARD)
            .expect("loaded")
            .try_into()?;
        if pin.exists() {
            match adopt_link(prog, &pin) {
                Ok(fd) => {
                    tracing::info!(iface = %link.name, ifindex = link.ifindex, "replaced the program in the existing link (hitless)");
                    self.ports.insert(
                        link.ifindex,
                        Port {
                            name: link.name.clone(),
                            mode: AttachMode::Adopted,
                            link: fd,
                            pin,
                        },
                    );
                    return Ok(AttachMode::Adopted);
                }
                Err(e) => {
                    tracing::warn!(iface = %link.name, error = %e, "stale link pin; attaching anew");
                    let _ = std::fs::remove_file(&pin);
                }
            }
        }
        let (id, mode) = match mode {
            XdpModeChoice::Generic => (
                prog.attach_to_if_index(link.ifindex, XdpMode::Skb)?,
                AttachMode::Generic,
            ),
            XdpModeChoice::Native => (
                prog.attach_to_if_index(link.ifindex, XdpMode::Driver)
                    .with_context(|| format!("attaching to {} in native mode", link.name))?,
                AttachMode::Native,
            ),
            XdpModeChoice::Auto => match prog.attach_to_if_index(link.ifindex, XdpMode::Driver) {
                Ok(id) => (id, AttachMode::Native),
                Err(e) => {
                    tracing::warn!(iface = %link.name, error = %e, "native XDP refused; falling back to generic mode (slower)");
                    (
                        prog.attach_to_if_index(link.ifindex, XdpMode::Skb)?,
                        AttachMode::Generic,
                    )
                }
            },
        };
        let fd =
            FdLink::try_from(prog.take_link(id)?).context("XDP attached without a bpf_link")?;
        std::fs::create_dir_all(pin.parent().expect("under pin_root"))?;
        let fd: FdLink = fd
            .pin(&pin)
            .with_context(|| format!("pinning the link at {}", pin.display()))?
            .into();
        tracing::info!(iface = %link.name, ifindex = link.ifindex, ?mode, "attached x0_forward");
        self.ports.insert(
            link.ifindex,
            Port {
                name: link.name.clone(),
                mode,
                link: fd,
                pin,
            },
        );
        Ok(mode)
    }

    pub fn attached(&self) -> impl Iterator<Item = (u32, &str, AttachMode)> {
        self.ports
            .iter()
            .map(|(i, p)| (*i, p.name.as_str(), p.mode))
    }

    /// Ends this process's hold on the fast path. With `detach`, the programs are detached
    /// and every pin removed: nothing of x0tta6bl4 stays in the kernel. Without, the
    /// programs keep forwarding from the pinned maps until a new daemon adopts them.
    pub fn shutdown(mut self, detach: bool) -> Result<()> {
        if !detach {
            tracing::info!("leaving the programs attached and the maps pinned (hitless restart)");
            return Ok(());
        }
        for (_, port) in std::mem::take(&mut self.ports) {
            let _ = std::fs::remove_file(&port.pin);
            drop(port.link); // the last reference: the kernel detaches the program
            tracing::info!(iface = %port.name, "detached");
        }
        remove_all_pins(&self.pin_root)
    }

    /// Runs the forwarding program once on `frame` through BPF_PROG_TEST_RUN against the
    /// live maps. Returns the XDP action and the frame as the program left it.
    pub fn test_run(&self, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let prog = self.program(program_names::FORWARD)?;
        let mut out = vec![0u8; frame.len() + 256];
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Packets and bytes forwarded through each next hop, by id.
    pub fn nexthop_counters(&self) -> Result<std::collections::BTreeMap<u32, x0_common::Counter>> {
        Ok(self.tables.nexthop_counters()?)
    }

    pub fn counters(&self) -> Result<Counters> {
        self.counters.read()
    }

    /// The per-reason counters alone, in `Reason::ALL` order (cheap: no interface walk).
    pub fn reason_counters(&self) -> Result<Vec<crate::counters::ReasonCount>> {
        self.counters.reasons()
    }
}
