//! Shared set-up for the lab tests. They need root and the real kernel; without either they
//! fail (never skip).
#![allow(dead_code)]

pub mod six;

use std::{
    net::IpAddr,
    path::Path,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use x0_lab::{Lab, Topology, lab::default_dataplane_bin};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Brings up `topologies/<file>` after `tweak` has adjusted it, under a name no other test uses.
pub fn lab(file: &str, tweak: impl FnOnce(&mut Topology)) -> Lab {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("topologies")
        .join(file);
    let mut topo = Topology::from_file(&path).expect("topology");
    tweak(&mut topo);
    let name = format!(
        "x0t{}n{}",
        std::process::id() % 100_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    Lab::up(
        &name,
        topo,
        default_dataplane_bin().expect("x0-dataplane binary"),
    )
    .expect("lab up")
}

pub fn addr(lab: &Lab, node: &str, v6: bool) -> IpAddr {
    lab.topo.addr_of(node, v6).expect("address")
}

/// Every address of every router, both families.
pub fn router_addrs(lab: &Lab) -> Vec<(String, IpAddr)> {
    let is_router = |n: &str| lab.topo.is_router(n);
    let mut out = Vec::new();
    for l in &lab.topo.links {
        for end in [&l.a, &l.b] {
            if is_router(&end.node) {
                out.extend(end.addrs.iter().map(|a| (end.node.clone(), a.addr())));
            }
        }
    }
    out
}

/// The subnet of `node`'s first link in the family.
pub fn subnet(lab: &Lab, node: &str, v6: bool) -> ipnet::IpNet {
    lab.topo
        .ifaces_of(node)
        .into_iter()
        .flat_map(|end| end.addrs.iter())
        .find(|a| a.addr().is_ipv6() == v6)
        .expect("an address of that family")
        .trunc()
}

/// The virtualenv scripts/setup.sh installs grpcio, grpcio-tools and
/// grpcio-health-checking into (`X0_PYENV` there and here).
pub fn python() -> PathBuf {
    let venv = std::env::var_os("X0_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/x0tta6bl4/pyenv"));
    let python = venv.join("bin").join("python");
    assert!(
        python.is_file(),
        "{} not found: run scripts/setup.sh (it installs the Python gRPC virtualenv)",
        python.display()
    );
    let out = Command::new(&python)
        .args([
            "-c",
            "import grpc, grpc_tools.protoc, grpc_health.v1.health_pb2",
        ])
        .output()
        .expect("run the virtualenv's python");
    assert!(
        out.status.success(),
        "{} lacks grpcio, grpcio-tools or grpcio-health-checking: run scripts/setup.sh\n{}",
        venv.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    python
}
