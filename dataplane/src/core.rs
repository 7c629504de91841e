//! `Dataplane`: the loaded programs and maps, the attached interfaces, and the operations
//! on them. Everything that changes the fast path goes through here.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, Map, MapData},
    programs::{TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use serde::{Deserialize, Serialize};
use x0_common::{CFG_F_FIB_FALLBACK, Config, map_names, program_names};

use crate::{
    XDP_OBJECT, bpffs,
    counters::{CounterMaps, Counters},
    netlink::Link,
    tables::{PortInfo, Tables},
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
}

struct Port {
    name: String,
    mode: AttachMode,
    link: XdpLinkId,
}

pub struct Dataplane {
    ebpf: Ebpf,
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

impl Dataplane {
    /// Loads the programs and creates (or adopts, if already pinned there) the maps
    /// under `pin_root`. Attaches nothing.
    pub fn load(pin_root: &Path) -> Result<Self> {
        bpffs::prepare(pin_root)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_root)
            .load(XDP_OBJECT)
            .context("loading the XDP object")?;
        for name in [program_names::FORWARD, program_names::PASS] {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("verifying program {name}"))?;
        }
        let tables = Tables::new(
            take(&mut ebpf, map_names::ROUTES_V4)?,
            take(&mut ebpf, map_names::ROUTES_V6)?,
            take(&mut ebpf, map_names::NEXTHOP_SETS)?,
            take(&mut ebpf, map_names::NEXTHOPS)?,
        );
        let counters = CounterMaps {
            stats: take(&mut ebpf, map_names::STATS)?,
            if_stats: take(&mut ebpf, map_names::IF_STATS)?,
            if_stats_high: take(&mut ebpf, map_names::IF_STATS_HIGH)?,
        };
        Ok(Self {
            tx_ports: take(&mut ebpf, map_names::TX_PORTS)?,
            config: take(&mut ebpf, map_names::CONFIG)?,
            ebpf,
            pin_root: pin_root.to_path_buf(),
            tables,
            counters,
            ports: BTreeMap::new(),
        })
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
        self.tables.set_port(
            link.ifindex,
            PortInfo {
                mac: link.mac,
                mtu: link.mtu,
            },
        )?;
        self.tx_ports.insert(link.ifindex, link.ifindex, None, 0)?;
        Ok(())
    }

    /// Attaches the forwarding program to a port.
    pub fn attach(&mut self, link: &Link, mode: XdpModeChoice) -> Result<AttachMode> {
        if self.ports.contains_key(&link.ifindex) {
            bail!("{} is already attached", link.name);
        }
        self.add_port(link)?;
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(program_names::FORWARD)
            .expect("loaded")
            .try_into()?;
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
        tracing::info!(iface = %link.name, ifindex = link.ifindex, ?mode, "attached x0_forward");
        self.ports.insert(
            link.ifindex,
            Port {
                name: link.name.clone(),
                mode,
                link: id,
            },
        );
        Ok(mode)
    }

    pub fn attached(&self) -> impl Iterator<Item = (u32, &str, AttachMode)> {
        self.ports
            .iter()
            .map(|(i, p)| (*i, p.name.as_str(), p.mode))
    }

    /// Detaches every port and removes the pins: nothing of x0tta6bl4 stays in the kernel.
    pub fn shutdown(mut self) -> Result<()> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(program_names::FORWARD)
            .expect("loaded")
            .try_into()?;
        for (_, port) in std::mem::take(&mut self.ports) {
            if let Err(e) = prog.detach(port.link) {
                tracing::warn!(iface = %port.name, error = %e, "detach failed");
            } else {
                tracing::info!(iface = %port.name, "detached");
            }
        }
        bpffs::remove_pins(&self.pin_root, &map_names::ALL)
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

    pub fn counters(&self) -> Result<Counters> {
        self.counters.read()
    }
}
