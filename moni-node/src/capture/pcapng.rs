//! The records of a pcapng file with the interface each packet was
//! captured on (libpcap reads pcapng but does not tell the interface),
//! so that replay can map interfaces to VNets (`iface:#N`, `iface:NAME`).
//!
//! Reads section header, interface description, enhanced and simple packet
//! blocks in either byte order and skips every other block. A block longer
//! than [`MAX_BLOCK`] or shorter than its header is an error, not an
//! allocation: the file is outside input.

use std::io::{self, BufReader, Read};

use super::classic::ReadError;

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
    block: Vec<u8>,
}

impl<R: Read> PcapngReader<R> {
    /// A reader at the start of a file; `None` when it is not pcapng.
    pub fn open(inner: R) -> Option<Self> {
        let mut p = PcapngReader {
            r: BufReader::with_capacity(256 * 1024, inner),
            big_endian: false,
            interfaces: Vec::new(),
            block: Vec::new(),
        };
        match p.read_block() {
            Ok(Some(0x0a0d_0d0a)) => Some(p),
            _ => None,
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

    /// Reads the next block into `self.block` (its body) and returns its
    /// type; `None` at a clean end of file.
    fn read_block(&mut self) -> Result<Option<u32>, ReadError> {
        let mut head = [0u8; 8];
        match self.r.read_exact(&mut head[..4]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(ReadError::Invalid(e.to_string())),
        }
        let truncated = |e: io::Error| ReadError::Truncated(format!("pcapng block cut short: {e}"));
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
            self.block.resize(len - 12, 0);
            self.r.read_exact(&mut self.block).map_err(truncated)?;
            return Ok(Some(0x0a0d_0d0a));
        }
        let kind = self.u32_at(&head, 0).unwrap_or(0);
        let len = self.u32_at(&head, 4).unwrap_or(0) as usize;
        if !(12..=MAX_BLOCK).contains(&len) || !len.is_multiple_of(4) {
            return Err(ReadError::Invalid(format!("bad pcapng block length {len}")));
        }
        // Body, then the trailing length.
        self.block.resize(len - 8, 0);
        self.r.read_exact(&mut self.block).map_err(truncated)?;
        self.block.truncate(len - 12);
        Ok(Some(kind))
    }

    fn add_interface(&mut self) {
        let b = &self.block;
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
                6 => {
                    let b = &self.block;
                    let field = |i: usize| self.u32_at(b, i * 4);
                    let (Some(iface), Some(hi), Some(lo), Some(caplen), Some(orig)) =
                        (field(0), field(1), field(2), field(3), field(4))
                    else {
                        return Err(ReadError::Invalid("short enhanced packet block".into()));
                    };
                    let Some(data) = b.get(20..20 + caplen as usize) else {
                        return Err(ReadError::Invalid("packet longer than its block".into()));
                    };
                    let Some(i) = self.interfaces.get(iface as usize) else {
                        return Err(ReadError::Invalid(format!(
                            "packet of unknown interface {iface}"
                        )));
                    };
                    let ts = u128::from(u64::from(hi) << 32 | u64::from(lo));
                    let ts_ns = ts * 1_000_000_000 / u128::from(i.units_per_sec.max(1));
                    return Ok(Some(Record {
                        interface: iface,
                        ts_us: (ts_ns / 1000) as i64,
                        nanos: (ts_ns % 1000) as u16,
                        orig_len: orig,
                        data,
                    }));
                }
                3 => {
                    let b = &self.block;
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
        for i in 0..2u32 {
            let ts: u64 = 1_700_000_000_000_000_000 + u64::from(i) * 1503;
            let mut epb = 0u32.to_le_bytes().to_vec();
            epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            epb.extend_from_slice(&(ts as u32).to_le_bytes());
            epb.extend_from_slice(&3u32.to_le_bytes());
            epb.extend_from_slice(&60u32.to_le_bytes());
            epb.extend_from_slice(&[1, 2, 3]);
            f.extend(block(6, &epb));
        }
        f
    }

    #[test]
    fn reads_interfaces_and_nanosecond_times() {
        let bytes = file();
        let mut r = PcapngReader::open(&bytes[..]).expect("pcapng");
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
        assert!(PcapngReader::open(&[0xd4, 0xc3, 0xb2, 0xa1][..]).is_none());
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
            if let Some(mut r) = PcapngReader::open(&bytes[..]) {
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
