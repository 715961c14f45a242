//! Time bins: packets and bytes per VNet and bin (default 1 s), split by
//! protocol, plus decode errors. This is the paper's Fig. 5 view.
//!
//! Bins are aligned to multiples of `bin_secs` since the Unix epoch, on
//! packet time. A bin stays open until the capture has moved two bins past
//! it, so packets reordered by up to one bin still land in their bin. A
//! packet later than that opens a second row for the same bin: sum rows by
//! (vnet, bin_start) when reading. At most `max_open_bins` bins are open; on
//! overflow the oldest are emitted early (same rule).

use std::collections::BTreeMap;

use crate::decode::Decoded;
use crate::record::BinRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;

/// Bins settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinConfig {
    /// Width of a bin in seconds. Default 1.
    pub bin_secs: u32,
    /// Cap on bins open at once. Default 4096.
    pub max_open_bins: usize,
}

impl Default for BinConfig {
    fn default() -> Self {
        BinConfig {
            bin_secs: 1,
            max_open_bins: 4096,
        }
    }
}

/// Accumulates [`BinRecord`]s.
#[derive(Debug)]
pub struct Binner {
    config: BinConfig,
    open: BTreeMap<(i64, VnetId), BinRecord>,
    newest_bin: i64,
    /// Cache of the last bin touched (most packets hit the same one).
    last_key: Option<(i64, VnetId)>,
    /// Rows emitted for a bin that had already been emitted once.
    pub late_rows: u64,
    emitted_below: i64,
}

impl Binner {
    pub fn new(config: BinConfig) -> Self {
        Binner {
            config: BinConfig {
                bin_secs: config.bin_secs.max(1),
                max_open_bins: config.max_open_bins.max(1),
            },
            open: BTreeMap::new(),
            newest_bin: i64::MIN,
            last_key: None,
            late_rows: 0,
            emitted_below: i64::MIN,
        }
    }

    pub fn bin_secs(&self) -> u32 {
        self.config.bin_secs
    }

    /// Counts one frame (decoded or not) of `wire_len` bytes.
    pub fn observe(
        &mut self,
        ts: Timestamp,
        wire_len: u32,
        vnet: VnetId,
        d: &Decoded<'_>,
        out: &mut Vec<BinRecord>,
    ) {
        let bin = ts.secs_floor().div_euclid(i64::from(self.config.bin_secs));
        if bin > self.newest_bin {
            self.newest_bin = bin;
            self.emit_before(bin - 1, out);
        }
        let key = (bin, vnet);
        if self.last_key != Some(key) && !self.open.contains_key(&key) {
            if self.open.len() >= self.config.max_open_bins {
                if let Some((&(oldest, _), _)) = self.open.iter().next() {
                    self.emit_before(oldest + 1, out);
                }
            }
            if bin < self.emitted_below {
                self.late_rows += 1;
            }
            self.open.insert(
                key,
                BinRecord {
                    vnet,
                    bin_start: Timestamp::from_secs(bin * i64::from(self.config.bin_secs)),
                    bin_secs: self.config.bin_secs,
                    ..BinRecord::default()
                },
            );
        }
        self.last_key = Some(key);
        let Some(rec) = self.open.get_mut(&key) else {
            return;
        };
        rec.total.add(wire_len);
        if d.error.is_some() {
            rec.decode_errors += 1;
        }
        match d.ip.map(|ip| ip.protocol) {
            Some(6) => rec.tcp.add(wire_len),
            Some(17) => rec.udp.add(wire_len),
            Some(1) | Some(58) => rec.icmp.add(wire_len),
            _ => rec.other.add(wire_len),
        }
    }

    /// Emits every open bin (end of input).
    pub fn flush(&mut self, out: &mut Vec<BinRecord>) {
        self.emit_before(i64::MAX, out);
    }

    fn emit_before(&mut self, bin: i64, out: &mut Vec<BinRecord>) {
        while let Some(entry) = self.open.first_entry() {
            if entry.key().0 >= bin {
                break;
            }
            out.push(entry.remove());
        }
        self.emitted_below = self.emitted_below.max(bin);
        self.last_key = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, LinkType};

    #[test]
    fn counts_per_bin_and_protocol() {
        let mut b = Binner::new(BinConfig::default());
        let mut out = Vec::new();
        let garbage = [0u8; 5];
        let d = decode(LinkType::Ethernet, &garbage);
        for i in 0..10 {
            b.observe(Timestamp(i * 300_000), 100, VnetId(0), &d, &mut out);
            b.observe(Timestamp(i * 300_000), 50, VnetId(1), &d, &mut out);
        }
        b.flush(&mut out);
        // 0.0 .. 2.7 s: bins 0,1,2 for each of the two VNets.
        assert_eq!(out.len(), 6);
        let v0: Vec<u64> = out
            .iter()
            .filter(|r| r.vnet == VnetId(0))
            .map(|r| r.total.packets)
            .collect();
        assert_eq!(v0, vec![4, 3, 3]);
        assert!(out.iter().all(|r| r.decode_errors == r.total.packets));
        assert!(out.iter().all(|r| r.other.packets == r.total.packets));
        assert_eq!(out[0].bin_start, Timestamp(0));
        assert_eq!(out.iter().map(|r| r.total.bytes).sum::<u64>(), 1500);
    }

    #[test]
    fn open_bins_are_capped() {
        let mut b = Binner::new(BinConfig {
            bin_secs: 1,
            max_open_bins: 8,
        });
        let mut out = Vec::new();
        let d = decode(LinkType::Ethernet, &[]);
        for v in 0..100u16 {
            b.observe(Timestamp(0), 1, VnetId(v), &d, &mut out);
        }
        assert!(b.open.len() <= 8);
        b.flush(&mut out);
        assert_eq!(out.iter().map(|r| r.total.packets).sum::<u64>(), 100);
    }
}
