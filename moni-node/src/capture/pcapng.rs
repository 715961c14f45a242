//! The records of a pcapng file with the interface each packet was
//! captured on (libpcap reads pcapng but does not tell the interface),
//! so that replay can map interfaces to VNets (`iface:#N`, `iface:NAME`).
//!
//! Reads section header, interface description, enhanced, simple and
//! (obsolete) packet blocks in either byte order and skips every other
//! block. A block longer than [`MAX_BLOCK`] or shorter than its header is
//! an error, not an allocation: the file is outside input. So are a block
//! cut short (also within its first four bytes), a trailing length that
//! differs from the leading one, and a time beyond what 64-bit
//! microseconds hold. Each interface keeps its own link type (libpcap
//! refuses a file whose interfaces differ; moni decodes each packet with
//! its interface's).

use std::io::{self, BufRead, BufReader, Read};

use super::classic::{ReadError, CHUNK};

/// Largest block accepted (a packet block holds one frame; 16 MiB is far
/// above any snaplen).
const MAX_BLOCK: usize = 16 << 20;

/// One interface of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub linktype: u16,
    /// `if_name`, when the file names it.
    pub name: Option<String>,
    /// Timestamp units per second (`if_tsresol`; default 10^6).
    units_per_sec: u64,
}

/// One packet record.
pub struct Record<'a> {
    pub interface: u32,
    pub ts_us: i64,
    /// Nanoseconds past `ts_us` where `if_tsresol` is finer than µs.
    pub nanos: u16,
    pub orig_len: u32,
    pub data: &'a [u8],
}

pub struct PcapngReader<R: Read> {
    r: BufReader<R>,
    big_endian: bool,
    interfaces: Vec<Interface>,
    /// A block's body copied out of the reader (one that did not lie whole
    /// in its buffer, and the section header): its first `body` bytes.
    /// The vector only grows (to the longest block), so that a copy
    /// writes the bytes once, not zeros first.
    block: Vec<u8>,
    body: usize,
    /// Whether the body lies in the reader's buffer (nearly every block):
    /// read there, not copied; `consume` bytes of the buffer are taken
    /// when the next block is read, once the record is no longer borrowed.
    in_place: bool,
    consume: usize,
}

impl<R: Read> PcapngReader<R> {
    /// A reader at the start of a file; `None` when it is not pcapng, the
    /// reason when it starts as pcapng (the section header's block type)
    /// but its section header is refused, for example a trailing length
    /// that differs from the leading one. tshark refuses such a file as
    /// damaged; libpcap reads it, so that a caller falling back to libpcap
    /// would take a file whose block lengths cannot be trusted.
    pub fn open(inner: R) -> Result<Option<Self>, ReadError> {
        // Read as the pcap reader reads: a chunk that stays in the core's
        // cache between the kernel's copy and the parse ([`super::classic`]
        // measured the copy against larger chunks).
        let mut p = PcapngReader {
            r: BufReader::with_capacity(CHUNK, inner),
            big_endian: false,
            interfaces: Vec::new(),
            block: Vec::new(),
            body: 0,
            in_place: false,
            consume: 0,
        };
        let shb = matches!(p.r.fill_buf(), Ok(b) if b.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]));
        match p.read_block() {
            Ok(Some(0x0a0d_0d0a)) => Ok(Some(p)),
            Err(e) if shb => Err(e),
            _ => Ok(None),
        }
    }

    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    fn u32_at(&self, b: &[u8], at: usize) -> Option<u32> {
        let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        })
    }

    fn u16_at(&self, b: &[u8], at: usize) -> Option<u16> {
        let s: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        })
    }

    /// Reads the next block (its body: [`PcapngReader::body`]) and returns
    /// its type; `None` at a clean end of file.
    fn read_block(&mut self) -> Result<Option<u32>, ReadError> {
        self.r.consume(std::mem::take(&mut self.consume));
        self.in_place = false;
        let mut head = [0u8; 8];
        // The end of the file only between blocks: within a block's first
        // four bytes it is a file cut short.
        let mut got = 0;
        while got < 4 {
            match self.r.read(&mut head[got..4]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(ReadError::Truncated(format!(
                        "pcapng block cut short after {got} bytes"
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Invalid(e.to_string())),
            }
        }
        let truncated = |e: io::Error| {
            ReadError::Truncated(if e.kind() == io::ErrorKind::UnexpectedEof {
                "pcapng block cut short: the file ends inside a block".into()
            } else {
                format!("pcapng block cut short: {e}")
            })
        };
        self.r.read_exact(&mut head[4..]).map_err(truncated)?;
        let kind_le = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if kind_le == 0x0a0d_0d0a {
            // A section header: its byte-order magic sets the order.
            let mut magic = [0u8; 4];
            self.r.read_exact(&mut magic).map_err(truncated)?;
            self.big_endian = match u32::from_le_bytes(magic) {
                0x1a2b_3c4d => false,
                0x4d3c_2b1a => true,
                _ => return Err(ReadError::Invalid("bad pcapng byte-order magic".into())),
            };
            self.interfaces.clear();
            let len = self.u32_at(&head, 4).unwrap_or(0) as usize;
            if !(28..=MAX_BLOCK).contains(&len) || !len.is_multiple_of(4) {
                return Err(ReadError::Invalid(format!("bad pcapng block length {len}")));
            }
            self.fill_block(len - 12).map_err(truncated)?;
            self.check_trailer(len)?;
            return Ok(Some(0x0a0d_0d0a));
        }
        let kind = self.u32_at(&head, 0).unwrap_or(0);
        let len = self.u32_at(&head, 4).unwrap_or(0) as usize;
        if !(12..=MAX_BLOCK).contains(&len) || !len.is_multiple_of(4) {
            return Err(ReadError::Invalid(format!("bad pcapng block length {len}")));
        }
        // Body, then the trailing length.
        if self.r.buffer().len() >= len - 8 {
            self.in_place = true;
            self.body = len - 8;
            self.consume = len - 8;
        } else {
            self.fill_block(len - 8).map_err(truncated)?;
        }
        self.check_trailer(len)?;
        self.body = len - 12;
        Ok(Some(kind))
    }

    /// Reads the next `n` bytes as the block's body.
    fn fill_block(&mut self, n: usize) -> io::Result<()> {
        if self.block.len() < n {
            self.block.resize(n, 0);
        }
        self.body = n;
        self.r.read_exact(&mut self.block[..n])
    }

    /// The body of the block just read.
    fn body(&self) -> &[u8] {
        let bytes = if self.in_place {
            self.r.buffer()
        } else {
            &self.block
        };
        bytes.get(..self.body).unwrap_or(&[])
    }

    /// The block just read ends with its length again (the last four bytes
    /// of its body as read): a mismatch means the lengths, and so the
    /// blocks after it, cannot be trusted.
    fn check_trailer(&self, len: usize) -> Result<(), ReadError> {
        let at = self.body.saturating_sub(4);
        match self.u32_at(self.body(), at) {
            Some(t) if t as usize == len => Ok(()),
            t => Err(ReadError::Invalid(format!(
                "pcapng block length {len} but trailing length {}",
                t.unwrap_or(0)
            ))),
        }
    }

    /// A packet block's interface, which must exist.
    fn interface_of(&self, iface: u32) -> Result<&Interface, ReadError> {
        self.interfaces
            .get(iface as usize)
            .ok_or_else(|| ReadError::Invalid(format!("packet of unknown interface {iface}")))
    }

    fn add_interface(&mut self) {
        let b = self.body();
        let linktype = self.u16_at(b, 0).unwrap_or(0);
        let mut iface = Interface {
            linktype,
            name: None,
            units_per_sec: 1_000_000,
        };
        let mut at = 8;
        while let (Some(code), Some(len)) = (self.u16_at(b, at), self.u16_at(b, at + 2)) {
            let len = usize::from(len);
            let Some(value) = b.get(at + 4..at + 4 + len) else {
                break;
            };
            match code {
                0 => break,
                2 => {
                    iface.name = Some(
                        String::from_utf8_lossy(value)
                            .trim_end_matches('\0')
                            .to_string(),
                    )
                }
                9 => {
                    if let Some(&r) = value.first() {
                        let exp = u32::from(r & 0x7f);
                        iface.units_per_sec = if r & 0x80 == 0 {
                            10u64.checked_pow(exp).unwrap_or(u64::MAX)
                        } else {
                            1u64.checked_shl(exp).unwrap_or(u64::MAX)
                        };
                    }
                }
                _ => {}
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        self.interfaces.push(iface);
    }

    /// The next packet, `Ok(None)` at the end.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        loop {
            let Some(kind) = self.read_block()? else {
                return Ok(None);
            };
            match kind {
                1 => self.add_interface(),
                // Enhanced packet block, and the obsolete packet block
                // (2), which has the same layout but for a 16-bit
                // interface id followed by a 16-bit drop count.
                2 | 6 => {
                    let b = self.body();
                    let field = |i: usize| self.u32_at(b, i * 4);
                    let iface = if kind == 2 {
                        self.u16_at(b, 0).map(u32::from)
                    } else {
                        field(0)
                    };
                    let (Some(iface), Some(hi), Some(lo), Some(caplen), Some(orig)) =
                        (iface, field(1), field(2), field(3), field(4))
                    else {
                        return Err(ReadError::Invalid("short packet block".into()));
                    };
                    let Some(data) = b.get(20..20 + caplen as usize) else {
                        return Err(ReadError::Invalid("packet longer than its block".into()));
                    };
                    let i = self.interface_of(iface)?;
                    let ts = u64::from(hi) << 32 | u64::from(lo);
                    let Some((ts_us, nanos)) = split_time(ts, i.units_per_sec) else {
                        return Err(ReadError::Invalid(format!(
                            "a packet's time ({ts} units of 1/{} s) is beyond the year 294247",
                            i.units_per_sec
                        )));
                    };
                    return Ok(Some(Record {
                        interface: iface,
                        ts_us,
                        nanos,
                        orig_len: orig,
                        data,
                    }));
                }
                3 => {
                    let b = self.body();
                    let Some(orig) = self.u32_at(b, 0) else {
                        return Err(ReadError::Invalid("short simple packet block".into()));
                    };
                    let data = b.get(4..).unwrap_or(&[]);
                    let data = &data[..data.len().min(orig as usize)];
                    return Ok(Some(Record {
                        interface: 0,
                        ts_us: 0,
                        nanos: 0,
                        orig_len: orig,
                        data,
                    }));
                }
                _ => {}
            }
        }
    }
}

/// A packet block's time, `ts` units of 1/`units_per_sec` s, as
/// microseconds and the nanoseconds past them; `None` beyond what 64-bit
/// microseconds hold. Microsecond and nanosecond files (nearly all) take
/// no 128-bit division (`__udivti3` was 1.6% of a replay's capture thread).
#[inline]
fn split_time(ts: u64, units_per_sec: u64) -> Option<(i64, u16)> {
    match units_per_sec {
        1_000_000 => Some((i64::try_from(ts).ok()?, 0)),
        1_000_000_000 => Some(((ts / 1000) as i64, (ts % 1000) as u16)),
        u => {
            let ns = u128::from(ts) * 1_000_000_000 / u128::from(u.max(1));
            Some((i64::try_from(ns / 1000).ok()?, (ns % 1000) as u16))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.resize(8 + padded, 0);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    /// A section, one interface named `eth1` with nanosecond timestamps,
    /// and two packets.
    fn file() -> Vec<u8> {
        let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let mut f = block(0x0a0d_0d0a, &shb);
        let idb = [
            1, 0, 0, 0, 0, 0, 1, 0, 2, 0, 4, 0, b'e', b't', b'h', b'1', 9, 0, 1, 0, 9, 0, 0, 0, 0,
            0, 0, 0,
        ];
        f.extend(block(1, &idb));
        for i in 0..2u64 {
            f.extend(packet(6, 0, 1_700_000_000_000_000_000 + i * 1503));
        }
        f
    }

    proptest! {
        /// The shortcuts for microsecond and nanosecond files give what the
        /// general 128-bit conversion gives.
        #[test]
        fn split_time_is_the_general_conversion(ts: u64, units in prop_oneof![
            Just(1_000_000u64), Just(1_000_000_000u64), 1u64..u64::MAX
        ]) {
            let ns = u128::from(ts) * 1_000_000_000 / u128::from(units);
            let general = i64::try_from(ns / 1000).ok().map(|us| (us, (ns % 1000) as u16));
            prop_assert_eq!(split_time(ts, units), general);
        }
    }

    #[test]
    fn reads_interfaces_and_nanosecond_times() {
        let bytes = file();
        let mut r = PcapngReader::open(&bytes[..]).expect("ok").expect("pcapng");
        let p = r.next_record().expect("ok").expect("packet");
        assert_eq!(
            (p.interface, p.ts_us, p.orig_len),
            (0, 1_700_000_000_000_000, 60)
        );
        assert_eq!(p.data, &[1, 2, 3]);
        assert_eq!(r.interfaces()[0].name.as_deref(), Some("eth1"));
        let p = r.next_record().expect("ok").expect("packet");
        assert_eq!((p.ts_us, p.nanos), (1_700_000_000_000_001, 503));
        assert!(r.next_record().expect("end").is_none());
        assert!(matches!(
            PcapngReader::open(&[0xd4, 0xc3, 0xb2, 0xa1][..]),
            Ok(None)
        ));
    }

    /// A section header whose trailing length differs from its leading
    /// one is refused with the reason (tshark: "damaged or corrupt"), not
    /// taken for another format.
    #[test]
    fn a_damaged_section_header_is_refused_with_the_reason() {
        let mut bytes = file();
        let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        bytes[len - 4..len].copy_from_slice(&(len as u32 + 4).to_le_bytes());
        match PcapngReader::open(&bytes[..]) {
            Err(ReadError::Invalid(m)) => assert!(m.contains("trailing length"), "{m}"),
            other => panic!("{:?}", other.map(|r| r.is_some())),
        }
    }

    /// A packet block of interface `iface` with `ts` in the interface's
    /// units: enhanced (6) or obsolete (2).
    fn packet(kind: u32, iface: u16, ts: u64) -> Vec<u8> {
        let mut b = if kind == 2 {
            let mut b = iface.to_le_bytes().to_vec();
            b.extend_from_slice(&7u16.to_le_bytes()); // drops
            b
        } else {
            u32::from(iface).to_le_bytes().to_vec()
        };
        b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts as u32).to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&60u32.to_le_bytes());
        b.extend_from_slice(&[1, 2, 3]);
        block(kind, &b)
    }

    /// Every record until the end or the first error.
    fn read_all(bytes: &[u8]) -> (Vec<(u32, i64)>, Option<ReadError>) {
        let mut r = PcapngReader::open(bytes).expect("ok").expect("pcapng");
        let mut out = Vec::new();
        loop {
            match r.next_record() {
                Ok(Some(p)) => out.push((p.interface, p.ts_us)),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    /// What the hostile-input tour found read wrong or silently: obsolete
    /// packet blocks dropped, a second interface's link type ignored (the
    /// capture loop decodes each packet with its interface's), a file cut
    /// within a block's first bytes or with a wrong trailing length taken
    /// for a clean end, a time past 64-bit microseconds wrapped to 1969.
    #[test]
    fn reads_obsolete_blocks_and_each_interfaces_link_and_refuses_cut_blocks() {
        let base = file();
        let t0 = 1_700_000_000_000_000_000;
        let mut f = base.clone();
        f.extend(packet(2, 0, t0));
        let (recs, err) = read_all(&f);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2], (0, 1_700_000_000_000_000));

        // A second interface of another link type (raw IP, 101): its
        // packet is read with its interface, whose link type is its own.
        let mut f = base.clone();
        f.extend(block(1, &[101, 0, 0, 0, 0, 0, 1, 0]));
        f.extend(packet(6, 1, 5));
        let mut r = PcapngReader::open(&f[..]).expect("ok").expect("pcapng");
        let mut ifaces = Vec::new();
        while let Ok(Some(p)) = r.next_record() {
            ifaces.push(p.interface);
        }
        assert_eq!(ifaces, [0, 0, 1]);
        let links: Vec<u16> = r.interfaces().iter().map(|i| i.linktype).collect();
        assert_eq!(links, [1, 101]);

        for cut in 1..4 {
            let mut f = base.clone();
            f.extend_from_slice(&packet(6, 0, t0)[..cut]);
            let (recs, err) = read_all(&f);
            assert_eq!(recs.len(), 2);
            assert!(
                matches!(err, Some(ReadError::Truncated(_))),
                "cut {cut}: {err:?}"
            );
        }

        let mut f = base.clone();
        let mut bad = packet(6, 0, t0);
        let n = bad.len();
        bad[n - 4] ^= 4;
        f.extend(bad);
        f.extend(packet(6, 0, t0));
        let (recs, err) = read_all(&f);
        assert_eq!(recs.len(), 2);
        assert!(
            matches!(&err, Some(ReadError::Invalid(m)) if m.contains("trailing length")),
            "{err:?}"
        );

        // In microseconds (the default resolution), 2^64 - 1 units are
        // past what 64-bit microseconds hold after the conversion to ns.
        let mut f = base;
        f.extend(block(1, &[1, 0, 0, 0, 0, 0, 1, 0]));
        f.extend(packet(6, 1, u64::MAX));
        let (recs, err) = read_all(&f);
        assert_eq!(recs.len(), 2);
        assert!(
            matches!(&err, Some(ReadError::Invalid(m)) if m.contains("year 294247")),
            "{err:?}"
        );
    }

    proptest! {
        #[test]
        fn mutated_and_cut_files_never_panic(
            mutations in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
            cut in 0usize..220,
        ) {
            let mut bytes = file();
            for (pos, b) in mutations {
                if let Some(x) = bytes.get_mut(pos) {
                    *x = b;
                }
            }
            bytes.truncate(cut);
            if let Ok(Some(mut r)) = PcapngReader::open(&bytes[..]) {
                for _ in 0..10 {
                    match r.next_record() {
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
            }
        }
    }
}
