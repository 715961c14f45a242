//! Ports for later IP fragments.
//!
//! Only the first fragment of a datagram carries the transport header. The
//! tracker remembers its ports by (VNet, overlay segment, addresses,
//! protocol, IP id) so later fragments are counted in the same flow: two
//! tenants of different VNIs may send datagrams with the same addresses and
//! IP id, and must not take each other's ports. Bounded: at most `capacity`
//! datagrams are remembered, the oldest forgotten first; a later fragment
//! whose first fragment is unknown (lost, reordered or forgotten) is counted
//! in a port-less flow and in [`FragmentTracker::unmatched`].

use std::collections::VecDeque;
use std::net::IpAddr;

use hashbrown::HashMap;

use crate::vnet::VnetId;

/// (VNet, overlay segment as in the flow key, source, destination,
/// protocol, IP id).
type FragKey = (VnetId, u32, IpAddr, IpAddr, u8, u32);

#[derive(Debug)]
pub struct FragmentTracker {
    ports: HashMap<FragKey, (u16, u16), foldhash::fast::RandomState>,
    order: VecDeque<FragKey>,
    capacity: usize,
    /// Later fragments whose first fragment was not known.
    pub unmatched: u64,
    /// Datagrams forgotten because the tracker was full.
    pub evicted: u64,
}

impl FragmentTracker {
    pub fn new(capacity: usize) -> Self {
        FragmentTracker {
            ports: HashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            unmatched: 0,
            evicted: 0,
        }
    }

    /// Remembers the ports of a first fragment.
    pub fn first(&mut self, key: FragKey, ports: (u16, u16)) {
        if self.ports.insert(key, ports).is_none() {
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.ports.remove(&old);
                    self.evicted += 1;
                }
            }
        }
    }

    /// The ports of a later fragment's datagram, if its first was seen.
    pub fn later(&mut self, key: FragKey) -> Option<(u16, u16)> {
        let found = self.ports.get(&key).copied();
        if found.is_none() {
            self.unmatched += 1;
        }
        found
    }

    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded() {
        let mut t = FragmentTracker::new(10);
        let a: IpAddr = "10.0.0.1".parse().expect("addr");
        for id in 0..100 {
            t.first((VnetId(0), 0, a, a, 17, id), (1, 2));
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.evicted, 90);
        assert_eq!(t.later((VnetId(0), 0, a, a, 17, 99)), Some((1, 2)));
        assert_eq!(t.later((VnetId(0), 0, a, a, 17, 0)), None);
        assert_eq!(t.unmatched, 1);
    }
}
