//! Packets in batches, for handing them from a capture thread to the
//! analysis thread: one allocation per batch instead of per packet, and
//! batches are recycled so steady state allocates nothing.

use analyzers::Timestamp;

use super::RawPacket;

/// Up to [`PacketBatch::CAPACITY`] packets copied out of the capture buffer.
#[derive(Debug, Default)]
pub struct PacketBatch {
    data: Vec<u8>,
    /// (timestamp, wire length, offset into `data`, captured length).
    meta: Vec<(Timestamp, u16, u32, u32, u32)>,
}

impl PacketBatch {
    pub const CAPACITY: usize = 1024;
    /// A batch also closes at this many bytes of packet data, which bounds
    /// the memory of the queue (its depth times this).
    pub const MAX_BYTES: usize = 1 << 20;

    pub fn with_capacity() -> Self {
        PacketBatch {
            data: Vec::with_capacity(Self::CAPACITY * 256),
            meta: Vec::with_capacity(Self::CAPACITY),
        }
    }

    pub fn push(&mut self, p: &RawPacket<'_>) {
        let offset = self.data.len() as u32;
        self.data.extend_from_slice(p.data);
        self.meta
            .push((p.ts, p.nanos, p.wire_len, offset, p.data.len() as u32));
    }

    pub fn is_full(&self) -> bool {
        self.meta.len() >= Self::CAPACITY || self.data.len() >= Self::MAX_BYTES
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Moves the last packet into `other` (a pcapng reader found it is of
    /// another interface than the batch).
    pub fn move_last_to(&mut self, other: &mut PacketBatch) {
        let Some((ts, nanos, wire_len, offset, len)) = self.meta.pop() else {
            return;
        };
        let start = offset as usize;
        let end = (offset + len) as usize;
        if let Some(data) = self.data.get(start..end) {
            other.push(&RawPacket {
                ts,
                nanos,
                wire_len,
                data,
            });
        }
        self.data.truncate(start);
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.meta.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = RawPacket<'_>> {
        self.meta
            .iter()
            .map(|&(ts, nanos, wire_len, offset, len)| RawPacket {
                ts,
                nanos,
                wire_len,
                data: self
                    .data
                    .get(offset as usize..(offset + len) as usize)
                    .unwrap_or(&[]),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_packets() {
        let mut b = PacketBatch::with_capacity();
        for i in 0..3u8 {
            b.push(&RawPacket {
                ts: Timestamp(i64::from(i)),
                nanos: 0,
                wire_len: 100,
                data: &[i; 5],
            });
        }
        let got: Vec<_> = b
            .iter()
            .map(|p| (p.ts.0, p.data[0], p.data.len()))
            .collect();
        assert_eq!(got, vec![(0, 0, 5), (1, 1, 5), (2, 2, 5)]);
        b.clear();
        assert!(b.is_empty());
    }
}
