//! Time bins: packets and bytes per VNet and bin (default 1 s), split by
//! protocol, plus decode errors. This is the paper's Fig. 5 view.
//!
//! Bins are aligned to multiples of `bin_secs` since the Unix epoch, on
//! packet time. A bin stays open until the capture has moved two bins past
//! it, so packets reordered by up to one bin still land in their bin. A
//! packet later than that opens a second row for the same bin: sum rows by
//! (vnet, bin_start) when reading. At most `max_open_bins` bins are open; on
//! overflow the oldest are emitted early (same rule).

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
    /// Open bins, unsorted: there are few (VNets × 2), so a short scan
    /// beats a tree lookup on every packet.
    open: Vec<((i64, VnetId), BinRecord)>,
    newest_bin: i64,
    /// Index of the last bin touched (most packets hit the same one).
    last: Option<usize>,
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
            open: Vec::new(),
            newest_bin: i64::MIN,
            last: None,
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
        let protocol = d.ip.map(|ip| ip.protocol);
        self.count(ts, wire_len, vnet, protocol, d.error.is_some(), out);
    }

    /// One frame of `wire_len` bytes carrying IP `protocol` (if IP).
    #[inline]
    fn count(
        &mut self,
        ts: Timestamp,
        wire_len: u32,
        vnet: VnetId,
        protocol: Option<u8>,
        error: bool,
        out: &mut Vec<BinRecord>,
    ) {
        let bin = ts.secs_floor().div_euclid(i64::from(self.config.bin_secs));
        if bin > self.newest_bin {
            self.newest_bin = bin;
            self.emit_before(bin - 1, out);
        }
        let key = (bin, vnet);
        let idx = match self
            .last
            .filter(|&i| self.open.get(i).is_some_and(|(k, _)| *k == key))
        {
            Some(i) => i,
            None => match self.open.iter().rposition(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    if self.open.len() >= self.config.max_open_bins {
                        if let Some(oldest) = self.open.iter().map(|(k, _)| k.0).min() {
                            self.emit_before(oldest + 1, out);
                        }
                    }
                    if bin < self.emitted_below {
                        self.late_rows += 1;
                    }
                    self.open.push((
                        key,
                        BinRecord {
                            vnet,
                            bin_start: Timestamp::from_secs(bin * i64::from(self.config.bin_secs)),
                            bin_secs: self.config.bin_secs,
                            ..BinRecord::default()
                        },
                    ));
                    self.open.len() - 1
                }
            },
        };
        self.last = Some(idx);
        let Some((_, rec)) = self.open.get_mut(idx) else {
            return;
        };
        rec.total.add(wire_len);
        if error {
            rec.decode_errors += 1;
        }
        match protocol {
            Some(6) => rec.tcp.add(wire_len),
            Some(17) => rec.udp.add(wire_len),
            Some(1) | Some(58) => rec.icmp.add(wire_len),
            _ => rec.other.add(wire_len),
        }
    }

    /// Counts `frames` frames of `bytes` wire bytes carrying IP `protocol`
    /// at `ts` that reached no decode of their own: the fragments of a
    /// tunnel datagram that never completed.
    pub fn observe_frames(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        protocol: u8,
        frames: u32,
        bytes: u64,
        out: &mut Vec<BinRecord>,
    ) {
        let frames = frames.max(1);
        let (each, rest) = (bytes / u64::from(frames), bytes % u64::from(frames));
        for i in 0..frames {
            let len = each + u64::from(u64::from(i) < rest);
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            self.count(ts, len, vnet, Some(protocol), false, out);
        }
    }

    /// Closes bins by the clock when packets stop (live capture): every bin
    /// ending more than one bin width before `now` is emitted, the same
    /// grace a newer packet would give it.
    pub fn advance(&mut self, now: Timestamp, out: &mut Vec<BinRecord>) {
        let bin = now.secs_floor().div_euclid(i64::from(self.config.bin_secs));
        if bin > self.newest_bin {
            self.newest_bin = bin;
            self.emit_before(bin - 1, out);
        }
    }

    /// Emits every open bin (end of input).
    pub fn flush(&mut self, out: &mut Vec<BinRecord>) {
        self.emit_before(i64::MAX, out);
    }

    fn emit_before(&mut self, bin: i64, out: &mut Vec<BinRecord>) {
        if self.open.iter().any(|(k, _)| k.0 < bin) {
            self.open.sort_by_key(|(k, _)| *k);
            let split = self.open.partition_point(|(k, _)| k.0 < bin);
            out.extend(self.open.drain(..split).map(|(_, r)| r));
        }
        self.last = None;
        self.emitted_below = self.emitted_below.max(bin);
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
