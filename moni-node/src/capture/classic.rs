//! A reader for classic pcap files (not pcapng), for replay speed.
//!
//! libpcap reads a file through stdio, whose buffer is one filesystem
//! block (4 KiB): two `fread`s per packet and a `read` system call every
//! 4 KiB. On this project's 2-core machine that was the reader thread's
//! whole cost, about 0.4 s of CPU per 680 MB. Here the file is read in
//! 64 KiB chunks and each packet is handed out as a slice of the chunk.
//! The chunk stays in the core's L2 cache between the kernel's copy into
//! it and the parse: with 256 KiB chunks the copy (`_copy_to_iter`) was
//! 17.7% of a flow-heavy replay's CPU samples, with 64 KiB 3.2%, and the
//! capture thread fell from 47% to 39% of all samples.
//!
//! A burst's packets are not copied again: the batches they go to hold
//! the chunk itself ([`SharedChunk`]) and read them there. A chunk is
//! written again only when no batch holds it any more; until then the
//! reader fills a spare one ([`ClassicPcap::fill`]). Copying each packet
//! into its batch was a fifth of the capture thread's CPU on the IMIX
//! capture (`memmove`, 0.2 s of 0.94 s with two workers).
//!
//! libpcap still opens every file (it validates the header, knows every
//! format and maps LINKTYPE to DLT); this reader then takes over the
//! records of plain pcap files in the four standard magics, byte-swapped or
//! not, micro- or nanosecond. pcapng, the modified-pcap variants and BPF
//! filters stay with libpcap. Record handling matches libpcap's: a record
//! header or packet cut short by the end of the file is a truncated file,
//! a captured length over libpcap's limit is a read error, and nanosecond
//! timestamps are cut to microseconds (libpcap's default precision).

use std::io::Read;
use std::sync::Arc;

use analyzers::Timestamp;

use super::RawPacket;

/// What a chunk read asks the kernel for (the pcapng reader's too).
pub(super) const CHUNK: usize = 64 * 1024;

/// libpcap's `max_snaplen_for_dlt` for the link types moni decodes: a
/// larger captured length is a corrupt file.
pub const MAX_CAPLEN: u32 = 262_144;

/// One record: timestamp (seconds, microseconds), original length and the
/// captured bytes.
pub struct Record<'a> {
    pub secs: i64,
    pub micros: i64,
    /// Nanoseconds past `micros` in a nanosecond file, else 0.
    pub nanos: u16,
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// Why reading stopped early (messages in libpcap's wording, so both
/// readers report a file alike).
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The file ends inside a record.
    Truncated(String),
    /// A record libpcap would refuse, or the read itself failed.
    Invalid(String),
}

/// A chunk of a capture file as read, shared by the reader and the
/// batches that hold packets lying in it.
pub type SharedChunk = Arc<Vec<u8>>;

pub struct ClassicPcap<R> {
    input: R,
    /// The chunk being read.
    buf: SharedChunk,
    /// Chunks read before, each free to fill again once no batch holds it
    /// (its only holder is this list). The list grows only while every
    /// chunk is held, so its length is bounded by the batches the node
    /// holds at once (each holds the few chunks its packets lie in).
    spare: Vec<SharedChunk>,
    pos: usize,
    end: usize,
    eof: bool,
    swapped: bool,
    nanos: bool,
    /// The header's snapshot length (libpcap's limits applied): longer
    /// records are cut to it, as libpcap does.
    snaplen: u32,
}

/// The `u32` at `at` of `b`, byte-swapped or not.
#[inline(always)]
fn u32_at(b: &[u8], at: usize, swapped: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if swapped {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

/// The byte order and precision of a classic pcap magic number, if it is
/// one of the four standard ones.
fn classify(magic: [u8; 4]) -> Option<(bool, bool)> {
    match u32::from_le_bytes(magic) {
        0xa1b2_c3d4 => Some((false, false)),
        0xd4c3_b2a1 => Some((true, false)),
        0xa1b2_3c4d => Some((false, true)),
        0x4d3c_b2a1 => Some((true, true)),
        _ => None,
    }
}

impl<R: Read> ClassicPcap<R> {
    /// Reads the 24-byte file header; `None` if this is not a classic pcap
    /// file in a standard magic with version 2.3 or later (older ones may
    /// have their lengths swapped; libpcap reads those), or the header
    /// cannot be read.
    pub fn open(mut input: R) -> Option<ClassicPcap<R>> {
        let mut header = [0u8; 24];
        input.read_exact(&mut header).ok()?;
        let (swapped, nanos) = classify([header[0], header[1], header[2], header[3]])?;
        // Major and minor version are two u16s: read as one u32, the major
        // is its low half little-endian and its high half big-endian.
        let version = u32_at(&header, 4, swapped);
        let (major, minor) = if swapped {
            (version >> 16, version & 0xffff)
        } else {
            (version & 0xffff, version >> 16)
        };
        let snaplen = match u32_at(&header, 16, swapped) {
            0 => MAX_CAPLEN,
            n => n.min(MAX_CAPLEN),
        };
        (major == 2 && minor >= 3).then(|| ClassicPcap {
            input,
            buf: Arc::new(vec![0; CHUNK]),
            spare: Vec::new(),
            pos: 0,
            end: 0,
            eof: false,
            swapped,
            nanos,
            snaplen,
        })
    }

    /// Makes `want` bytes available at `pos`, short only at the end of the
    /// input. Returns how many are available.
    #[inline(never)]
    fn fill(&mut self, want: usize) -> Result<usize, ReadError> {
        if self.end - self.pos >= want || self.eof {
            return Ok((self.end - self.pos).min(want));
        }
        if Arc::get_mut(&mut self.buf).is_none() {
            self.take_spare();
        }
        let Some(buf) = Arc::get_mut(&mut self.buf) else {
            return Err(ReadError::Invalid("the read buffer is still shared".into()));
        };
        buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if buf.len() < want {
            buf.resize(want, 0);
        }
        // One chunk at a time even after a record longer than a chunk grew
        // the buffer: the chunk is meant to stay in the cache.
        let limit = CHUNK.max(want).min(buf.len());
        while self.end < want {
            match self.input.read(&mut buf[self.end..limit]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Invalid(e.to_string())),
            }
        }
        Ok((self.end - self.pos).min(want))
    }

    /// Makes a chunk no batch holds the one being read, with the bytes
    /// not yet taken (`pos..end`) at its start: of the free spares, the
    /// one the reader left longest ago, else a new chunk ([`CHUNK`]
    /// bytes; [`ClassicPcap::fill`] grows it for a longer record).
    #[cold]
    fn take_spare(&mut self) {
        let left = self.end - self.pos;
        let free = self
            .spare
            .iter_mut()
            .position(|c| Arc::get_mut(c).is_some());
        let mut next = match free {
            Some(i) => self.spare.remove(i),
            None => Arc::new(vec![0; CHUNK.max(left)]),
        };
        if let Some(b) = Arc::get_mut(&mut next) {
            if b.len() < left {
                b.resize(left, 0);
            }
            b[..left].copy_from_slice(&self.buf[self.pos..self.end]);
            self.end = left;
            self.pos = 0;
        }
        let held = std::mem::replace(&mut self.buf, next);
        self.spare.push(held);
    }

    /// Chunks read so far that batches may still hold (for tests).
    #[cfg(test)]
    fn chunks(&self) -> usize {
        1 + self.spare.len()
    }

    /// The next record, `Ok(None)` at a clean end of the file.
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        // Nearly always the buffer holds the header already: no call.
        if self.end - self.pos < 16 {
            match self.fill(16)? {
                0 => return Ok(None),
                16 => {}
                got => {
                    return Err(ReadError::Truncated(format!(
                        "truncated dump file; tried to read 16 header bytes, only got {got}"
                    )))
                }
            }
        }
        let (p, caplen) = self.header();
        if caplen > MAX_CAPLEN {
            return Err(ReadError::Invalid(format!(
                "invalid packet capture length {caplen}, bigger than maximum of {MAX_CAPLEN}"
            )));
        }
        let caplen = caplen as usize;
        let got = if self.end - self.pos >= 16 + caplen {
            16 + caplen
        } else {
            self.fill(16 + caplen)?
        };
        if got < 16 + caplen {
            return Err(ReadError::Truncated(format!(
                "truncated dump file; tried to read {caplen} captured bytes, only got {}",
                got - 16
            )));
        }
        // A fill moved the record to the buffer's start.
        let start = self.pos + 16;
        self.pos = start + caplen;
        Ok(Some(Record {
            secs: p.secs,
            micros: p.micros,
            nanos: p.nanos,
            orig_len: p.orig_len,
            data: &self.buf[start..start + p.len as usize],
        }))
    }

    /// The record whose header is at `pos` (16 bytes there), as it lies
    /// now, with its bytes cut to the snaplen; and its captured length as
    /// the header gives it.
    #[inline(always)]
    fn header(&self) -> (Placed, u32) {
        // The 16 header bytes as one array: its four words are then read
        // without a bounds check each.
        let header: [u8; 16] = match self.buf.get(self.pos..self.pos + 16) {
            Some(h) => h.try_into().unwrap_or([0; 16]),
            None => [0; 16],
        };
        let swapped = self.swapped;
        let frac = u32_at(&header, 4, swapped);
        let caplen = u32_at(&header, 8, swapped);
        let placed = Placed {
            // libpcap hands the header's unsigned seconds to a signed
            // time_t, as do we.
            secs: i64::from(u32_at(&header, 0, swapped)),
            micros: i64::from(if self.nanos { frac / 1000 } else { frac }),
            nanos: if self.nanos { (frac % 1000) as u16 } else { 0 },
            orig_len: u32_at(&header, 12, swapped),
            // The buffer is at most a chunk plus one record (MAX_CAPLEN):
            // offsets fit.
            start: (self.pos + 16) as u32,
            len: caplen.min(self.snaplen),
        };
        (placed, caplen)
    }
}

/// Where one record of a burst lies in the buffer [`ClassicPcap::burst`]
/// returns, with its header's fields as [`Record`] has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    pub secs: i64,
    pub micros: i64,
    pub nanos: u16,
    pub orig_len: u32,
    /// The captured bytes: `buf[start..start + len]`.
    pub start: u32,
    pub len: u32,
}

impl<'a> Record<'a> {
    /// The record as the capture loop takes it.
    #[inline(always)]
    pub fn packet(self) -> RawPacket<'a> {
        RawPacket {
            ts: Timestamp::from_secs_micros(self.secs, self.micros),
            nanos: self.nanos,
            wire_len: self.orig_len.max(self.data.len() as u32),
            data: self.data,
        }
    }
}

impl Placed {
    /// The record as the capture loop takes it, from the buffer
    /// [`ClassicPcap::burst`] returned with it.
    #[inline]
    pub fn packet<'a>(&self, buf: &'a [u8]) -> Option<RawPacket<'a>> {
        let start = self.start as usize;
        let data = buf.get(start..start + self.len as usize)?;
        Some(
            Record {
                secs: self.secs,
                micros: self.micros,
                nanos: self.nanos,
                orig_len: self.orig_len,
                data,
            }
            .packet(),
        )
    }
}

impl<R: Read> ClassicPcap<R> {
    /// Takes up to `max` more records, those that lie whole in the buffer
    /// already (no read; possibly none: then [`ClassicPcap::next_record`]
    /// reads on, and reports what is wrong), into `out`; returns the
    /// buffer they lie in. The records are exactly those `next_record`
    /// would have returned, in order: it stops before any record it would
    /// have to read more for or refuse.
    #[inline]
    pub fn burst(&mut self, max: usize, out: &mut Vec<Placed>) -> &SharedChunk {
        out.clear();
        while out.len() < max && self.end - self.pos >= 16 {
            let (p, caplen) = self.header();
            if caplen > MAX_CAPLEN || self.end - self.pos - 16 < caplen as usize {
                break;
            }
            self.pos += 16 + caplen as usize;
            out.push(p);
        }
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(magic: u32, big_endian: bool) -> Vec<u8> {
        let mut h = Vec::new();
        let put = |h: &mut Vec<u8>, v: u32| {
            h.extend_from_slice(&if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        put(&mut h, magic);
        let (major, minor): (u16, u16) = (2, 4);
        for v in [major, minor] {
            h.extend_from_slice(&if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            });
        }
        for v in [0, 0, 0, 1] {
            put(&mut h, v);
        }
        h
    }

    fn record(out: &mut Vec<u8>, big_endian: bool, fields: [u32; 4], data: &[u8]) {
        for v in fields {
            out.extend_from_slice(&if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            });
        }
        out.extend_from_slice(data);
    }

    /// (seconds, microseconds, original length, bytes) per record.
    type Packets = Vec<(i64, i64, u32, Vec<u8>)>;

    fn all(bytes: &[u8]) -> (Packets, Option<ReadError>) {
        let mut r = ClassicPcap::open(bytes).expect("classic pcap");
        let mut out = Vec::new();
        loop {
            match r.next_record() {
                Ok(Some(p)) => out.push((p.secs, p.micros, p.orig_len, p.data.to_vec())),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn reads_both_byte_orders_and_both_precisions() {
        for big in [false, true] {
            for (magic, frac, micros) in [
                (0xa1b2_c3d4, 123_456, 123_456),
                (0xa1b2_3c4d, 123_456_789, 123_456),
            ] {
                let mut f = header(magic, big);
                record(&mut f, big, [1_700_000_000, frac, 3, 60], b"abc");
                record(&mut f, big, [1_700_000_001, 0, 0, 0], b"");
                let (pkts, err) = all(&f);
                assert_eq!(err, None);
                assert_eq!(
                    pkts,
                    vec![
                        (1_700_000_000, micros, 60, b"abc".to_vec()),
                        (1_700_000_001, 0, 0, Vec::new())
                    ]
                );
                // The nanoseconds past the µs are kept beside them.
                let mut r = ClassicPcap::open(&f[..]).expect("classic pcap");
                let p = r.next_record().expect("ok").expect("record");
                assert_eq!(p.nanos, if i64::from(frac) == micros { 0 } else { 789 });
            }
        }
    }

    #[test]
    fn other_formats_are_left_to_libpcap() {
        // pcapng section header block, modified pcap, version 1, short.
        assert!(ClassicPcap::open(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0][..]).is_none());
        assert!(ClassicPcap::open(&header(0xa1b2_cd34, false)[..]).is_none());
        let mut v1 = header(0xa1b2_c3d4, false);
        v1[4] = 1;
        assert!(ClassicPcap::open(&v1[..]).is_none());
        assert!(ClassicPcap::open(&header(0xa1b2_c3d4, false)[..10]).is_none());
    }

    #[test]
    fn truncation_and_oversized_records_are_errors_after_the_good_packets() {
        let mut f = header(0xa1b2_c3d4, false);
        record(&mut f, false, [1, 0, 4, 4], b"good");
        let good = f.len();
        record(&mut f, false, [2, 0, 100, 100], &[7; 100]);
        let (pkts, err) = all(&f[..good + 10]);
        assert_eq!(pkts.len(), 1);
        assert_eq!(
            err,
            Some(ReadError::Truncated(
                "truncated dump file; tried to read 16 header bytes, only got 10".into()
            ))
        );
        let (pkts, err) = all(&f[..good + 16 + 40]);
        assert_eq!(pkts.len(), 1);
        assert_eq!(
            err,
            Some(ReadError::Truncated(
                "truncated dump file; tried to read 100 captured bytes, only got 40".into()
            ))
        );
        let mut big = f[..good].to_vec();
        record(&mut big, false, [3, 0, MAX_CAPLEN + 1, 0], &[]);
        let (pkts, err) = all(&big);
        assert_eq!(pkts.len(), 1);
        assert!(
            matches!(err, Some(ReadError::Invalid(m)) if m.starts_with("invalid packet capture length"))
        );
    }

    #[test]
    fn records_longer_than_the_snaplen_are_cut_to_it() {
        let mut f = header(0xa1b2_c3d4, false);
        f[16..20].copy_from_slice(&8u32.to_le_bytes());
        record(&mut f, false, [1, 0, 12, 12], b"0123456789ab");
        record(&mut f, false, [2, 0, 2, 2], b"cd");
        let (pkts, err) = all(&f);
        assert_eq!(err, None);
        assert_eq!(pkts[0].3, b"01234567");
        assert_eq!(pkts[1].3, b"cd");
    }

    #[test]
    fn records_larger_than_a_chunk_are_read_whole() {
        let mut f = header(0xa1b2_c3d4, false);
        let payload: Vec<u8> = (0..MAX_CAPLEN).map(|i| i as u8).collect();
        for i in 0..6 {
            record(&mut f, false, [i, 0, MAX_CAPLEN, MAX_CAPLEN], &payload);
        }
        let (pkts, err) = all(&f);
        assert_eq!(err, None);
        assert_eq!(pkts.len(), 6);
        assert!(pkts.iter().all(|p| p.3 == payload));
    }

    proptest! {
        /// Any bytes after a valid header: records or one typed error,
        /// never a panic, and never a buffer past the largest record.
        #[test]
        fn arbitrary_records_never_panic(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut f = header(0xa1b2_c3d4, false);
            f.extend_from_slice(&body);
            let mut r = ClassicPcap::open(&f[..]).expect("header");
            for _ in 0..10_000 {
                match r.next_record() {
                    Ok(Some(p)) => prop_assert!(p.data.len() <= MAX_CAPLEN as usize),
                    Ok(None) | Err(_) => break,
                }
            }
            prop_assert!(r.buf.len() <= CHUNK.max(16 + MAX_CAPLEN as usize));
        }

        /// Bursts of any size, between single records, give exactly the
        /// records (and then the error) `next_record` alone gives: over
        /// chunk boundaries, in both precisions, after a cut to the
        /// snaplen, before a truncated or oversized record.
        #[test]
        fn bursts_give_what_single_records_give(
            lens in proptest::collection::vec(0usize..3000, 0..120),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
            nanos in any::<bool>(),
            sizes in proptest::collection::vec(0usize..20, 1..8),
        ) {
            let mut f = header(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }, false);
            // A snaplen of 2,000: longer records are cut.
            f[16..20].copy_from_slice(&2000u32.to_le_bytes());
            for (i, len) in lens.iter().enumerate() {
                let data: Vec<u8> = (0..*len).map(|k| (k + i) as u8).collect();
                record(&mut f, false, [i as u32, 999_999_999 - i as u32, *len as u32, *len as u32 + 4], &data);
            }
            f.extend_from_slice(&tail);
            let (want, want_err) = all(&f);
            let mut r = ClassicPcap::open(&f[..]).expect("header");
            let (mut got, mut placed, mut err) = (Vec::new(), Vec::new(), None);
            for turn in 0.. {
                let max = sizes[turn % sizes.len()];
                let buf = r.burst(max, &mut placed);
                prop_assert!(placed.len() <= max);
                for p in &placed {
                    let data = buf[p.start as usize..(p.start + p.len) as usize].to_vec();
                    got.push((p.secs, p.micros, p.orig_len, data));
                }
                match r.next_record() {
                    Ok(Some(p)) => got.push((p.secs, p.micros, p.orig_len, p.data.to_vec())),
                    Ok(None) => break,
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(err, want_err);
        }

        /// Batches hold the chunks of the bursts they took, for as long
        /// as they like: the reader fills other chunks meanwhile, so the
        /// records read out of a held chunk later are still exactly the
        /// records; and it keeps no more chunks than are held at once
        /// plus the one it reads and one being let go.
        #[test]
        fn chunks_held_by_batches_are_never_written(
            lens in proptest::collection::vec(0usize..3000, 0..200),
            sizes in proptest::collection::vec(1usize..20, 1..8),
            hold in 0usize..12,
        ) {
            let mut f = header(0xa1b2_c3d4, false);
            for (i, len) in lens.iter().enumerate() {
                let data: Vec<u8> = (0..*len).map(|k| (k * 7 + i) as u8).collect();
                record(&mut f, false, [i as u32, 0, *len as u32, *len as u32], &data);
            }
            let (want, _) = all(&f);
            let mut r = ClassicPcap::open(&f[..]).expect("header");
            // A burst's chunk and records, or a record read alone (across
            // a chunk's end), which the capture loop copies.
            let mut held: std::collections::VecDeque<(Option<SharedChunk>, Vec<Placed>, Packets)> =
                Default::default();
            let mut got = Vec::new();
            let take = |(chunk, placed, copied): (Option<SharedChunk>, Vec<Placed>, Packets),
                        got: &mut Packets| {
                if let Some(chunk) = chunk {
                    for p in placed {
                        let data = chunk[p.start as usize..(p.start + p.len) as usize].to_vec();
                        got.push((p.secs, p.micros, p.orig_len, data));
                    }
                }
                got.extend(copied);
            };
            for turn in 0.. {
                let mut placed = Vec::new();
                let chunk = Arc::clone(r.burst(sizes[turn % sizes.len()], &mut placed));
                held.push_back((Some(chunk), placed, Vec::new()));
                while held.len() > hold {
                    take(held.pop_front().expect("held"), &mut got);
                }
                prop_assert!(r.chunks() <= hold + 2, "{} chunks for {} held", r.chunks(), hold);
                match r.next_record() {
                    Ok(Some(p)) => {
                        let p = (p.secs, p.micros, p.orig_len, p.data.to_vec());
                        held.push_back((None, Vec::new(), vec![p]));
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            for h in held.drain(..) {
                take(h, &mut got);
            }
            prop_assert_eq!(got, want);
        }
    }
}
