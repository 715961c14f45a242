//! A minimal classic-pcap writer (microsecond timestamps). Written by hand so
//! the samples do not depend on libpcap, which moni itself reads them with.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

pub const LINKTYPE_ETHERNET: u32 = 1;

pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W, snaplen: u32, linktype: u32) -> io::Result<Self> {
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&snaplen.to_le_bytes())?;
        out.write_all(&linktype.to_le_bytes())?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Writes one record. `orig_len` is the length on the wire; the bytes
    /// stored are `frame` cut to the snaplen.
    pub fn write(&mut self, ts_us: i64, frame: &[u8], orig_len: u32) -> io::Result<()> {
        let caplen = frame.len().min(self.snaplen as usize);
        let secs = ts_us.div_euclid(1_000_000) as u32;
        let micros = ts_us.rem_euclid(1_000_000) as u32;
        self.out.write_all(&secs.to_le_bytes())?;
        self.out.write_all(&micros.to_le_bytes())?;
        self.out.write_all(&(caplen as u32).to_le_bytes())?;
        self.out
            .write_all(&orig_len.max(caplen as u32).to_le_bytes())?;
        self.out.write_all(&frame[..caplen])
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

impl PcapWriter<BufWriter<File>> {
    /// A buffered Ethernet capture file at `path` with a 65,535-byte snaplen
    /// (callers cut frames themselves where a smaller capture is wanted).
    pub fn create(path: &Path) -> io::Result<Self> {
        PcapWriter::new(
            BufWriter::new(File::create(path)?),
            65_535,
            LINKTYPE_ETHERNET,
        )
    }
}
