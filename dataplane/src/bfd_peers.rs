//! BFD to a neighbour no route uses yet (`AddBfdPeer` / `RemoveBfdPeer`): the brain adds
//! one per link address of a neighbour it accepts, so both ends run a session before any
//! route names the other and adjacency rests on BFD, not on routes that may have gone
//! (a brain restarted after its neighbours routed around it found every session down
//! and stayed apart: the chaos soak). The next hop is held in the tables as a route would
//! hold it; held peers last until removed or the dataplane restarts (the brain adds them
//! again when it reconnects).

use std::net::IpAddr;

use crate::{
    control::{Control, ControlError, ControlResult},
    daemon::Node,
    tables::NextHopSpec,
};

impl Node {
    /// The held next hop for `address` on `interface`, checked: an interface of this
    /// dataplane with BFD on, and a local address of the peer's family on it.
    fn bfd_peer_spec(&self, address: IpAddr, interface: &str) -> ControlResult<NextHopSpec> {
        let Some((&ifindex, _)) = self.ports.iter().find(|(_, l)| l.name == interface) else {
            return Err(ControlError::Invalid(format!(
                "interface: {interface:?} is not one of this dataplane's"
            )));
        };
        if address.is_unspecified() || address.is_multicast() || address.is_loopback() {
            return Err(ControlError::Invalid(format!(
                "address: {address} is not a neighbour's address"
            )));
        }
        if self.config.bfd_for(interface, address).is_none() || self.bfd.is_none() {
            return Err(ControlError::FailedPrecondition(format!(
                "BFD is off on {interface} (turn it on in the interface's config)"
            )));
        }
        Ok(NextHopSpec {
            gateway: address,
            ifindex,
        })
    }

    /// Holds a BFD session to `address`; Ok(false) if it was held already.
    pub(crate) fn add_bfd_peer(&mut self, address: IpAddr, interface: &str) -> ControlResult<bool> {
        let spec = self.bfd_peer_spec(address, interface)?;
        if self.bfd_peers.contains(&spec) {
            return Ok(false);
        }
        self.dp
            .tables()
            .hold_nexthop(spec)
            .map_err(|e| ControlError::Exhausted(format!("{e}")))?;
        self.bfd_peers.insert(spec);
        self.sync_nexthops();
        Ok(true)
    }

    /// Lets go of a held session; NotFound if it was not held.
    pub(crate) fn remove_bfd_peer(
        &mut self,
        address: IpAddr,
        interface: &str,
    ) -> ControlResult<()> {
        let spec = self.bfd_peer_spec(address, interface)?;
        if !self.bfd_peers.remove(&spec) {
            return Err(ControlError::NotFound(format!(
                "no BFD peer {address} on {interface} was added"
            )));
        }
        self.dp.tables().release_held_nexthop(spec);
        self.sync_nexthops();
        Ok(())
    }
}

impl Control {
    /// Ok(true): added; Ok(false): it was already.
    pub fn add_bfd_peer(&self, address: IpAddr, interface: &str) -> ControlResult<bool> {
        self.with(|n| n.add_bfd_peer(address, interface))
    }

    pub fn remove_bfd_peer(&self, address: IpAddr, interface: &str) -> ControlResult<()> {
        self.with(|n| n.remove_bfd_peer(address, interface))
    }
}
