//! Replay of pcap and pcapng files: libpcap opens every file; the records
//! of plain pcap files are then read by [`super::classic`] (much cheaper
//! than libpcap's 4 KiB stdio reads), the rest by libpcap.

use std::path::Path;

use analyzers::{LinkType, Timestamp};

use super::classic::{ClassicPcap, Placed, ReadError};
use super::pcapng::{Interface, PcapngReader};
use super::{CaptureError, Next, PacketSource, RawPacket};

/// Who reads the records.
enum Records {
    Libpcap(pcap::Capture<pcap::Offline>),
    Classic(ClassicPcap<std::fs::File>),
    /// pcapng read by us, for the interface of each packet.
    Pcapng {
        reader: Box<PcapngReader<std::fs::File>>,
        interface: u32,
    },
}

impl Records {
    /// The next packet, `Ok(None)` at the end; libpcap's errors are typed
    /// by their wording, ours by construction.
    /// With the pcapng interface of the packet, when the file is pcapng.
    #[inline(always)]
    fn next(&mut self) -> Result<Option<(RawPacket<'_>, Option<u32>)>, ReadError> {
        match self {
            Records::Classic(c) => Ok(c.next_record()?.map(|r| (r.packet(), None))),
            Records::Pcapng { reader, interface } => Ok(reader.next_record()?.map(|r| {
                *interface = r.interface;
                let p = RawPacket {
                    ts: Timestamp(r.ts_us),
                    nanos: r.nanos,
                    wire_len: r.orig_len.max(r.data.len() as u32),
                    data: r.data,
                };
                (p, Some(r.interface))
            })),
            Records::Libpcap(cap) => match cap.next_packet() {
                Ok(p) => Ok(Some((
                    RawPacket {
                        ts: Timestamp::from_secs_micros(p.header.ts.tv_sec, p.header.ts.tv_usec),
                        nanos: 0,
                        wire_len: p.header.len.max(p.header.caplen),
                        data: p.data,
                    },
                    None,
                ))),
                Err(pcap::Error::NoMorePackets) => Ok(None),
                Err(e) => {
                    let m = e.to_string();
                    Err(if m.contains("truncated") {
                        ReadError::Truncated(m)
                    } else {
                        ReadError::Invalid(m)
                    })
                }
            },
        }
    }
}

/// A capture file opened with libpcap (which reads pcap and pcapng).
pub struct FileSource {
    name: String,
    records: Records,
    link: Option<LinkType>,
    /// libpcap's data-link type of the file.
    dlt: i32,
    packets: u64,
    bytes_read: u64,
    file_len: u64,
}

impl FileSource {
    /// Opens `path`, applying the BPF `filter` if given. `-` is standard
    /// input (`tcpdump -w - | moni-node replay -`), read through libpcap
    /// like any pipe.
    pub fn open(path: &Path, filter: Option<&str>) -> Result<FileSource, CaptureError> {
        let name = path.display().to_string();
        let path = if path == Path::new("-") {
            Path::new("/dev/stdin")
        } else {
            path
        };
        let meta = std::fs::metadata(path).map_err(|e| CaptureError::Open {
            source_name: name.clone(),
            message: e.to_string(),
        })?;
        if meta.is_dir() {
            return Err(CaptureError::Open {
                source_name: name,
                message: "is a directory".into(),
            });
        }
        if meta.is_file() && meta.len() < 24 {
            // Shorter than any capture's file header: libpcap would count
            // the header bytes it got after the 4 of the magic it read.
            return Err(CaptureError::NotACapture {
                source_name: name,
                message: if meta.len() == 0 {
                    "the file is empty".into()
                } else {
                    format!(
                        "{} bytes, shorter than a capture's 24-byte file header",
                        meta.len()
                    )
                },
            });
        }
        let mut cap = pcap::Capture::from_file(path).map_err(|e| {
            let message = e.to_string();
            if message.contains("unknown file format") || message.contains("truncated dump file") {
                CaptureError::NotACapture {
                    source_name: name.clone(),
                    message,
                }
            } else {
                CaptureError::Open {
                    source_name: name.clone(),
                    message,
                }
            }
        })?;
        if let Some(f) = filter {
            cap.filter(f, true).map_err(|e| CaptureError::Filter {
                source_name: name.clone(),
                filter: f.to_string(),
                message: e.to_string(),
            })?;
        }
        let dlt = cap.get_datalink().0;
        let link = LinkType::from_dlt(dlt);
        // A plain pcap file without a filter: libpcap validated it, we read
        // its records. Link types moni does not decode stay with libpcap
        // (its length limits differ for some), and so does anything but a
        // regular file (a pipe cannot be read again from its start). NFLOG
        // stays with libpcap too: its TLV headers are in the capturing
        // host's byte order, which libpcap swaps in a byte-swapped file.
        let ours = link.is_some_and(|l| l != LinkType::Nflog);
        let classic = (filter.is_none() && ours && meta.is_file())
            .then(|| std::fs::File::open(path).ok().and_then(ClassicPcap::open))
            .flatten();
        // pcapng likewise, so that each packet's interface is known.
        let pcapng = match (filter.is_none() && ours && meta.is_file() && classic.is_none())
            .then(|| std::fs::File::open(path).ok())
            .flatten()
            .map(PcapngReader::open)
        {
            Some(Ok(reader)) => reader,
            // A pcapng file whose section header is damaged: refused as
            // tshark refuses it, not left to libpcap, which reads it.
            Some(Err(ReadError::Invalid(m) | ReadError::Truncated(m))) => {
                return Err(CaptureError::Open {
                    source_name: name,
                    message: format!("damaged pcapng section header: {m}"),
                });
            }
            None => None,
        };
        let records = match (classic, pcapng) {
            (Some(c), _) => Records::Classic(c),
            (None, Some(reader)) => Records::Pcapng {
                reader: Box::new(reader),
                interface: 0,
            },
            (None, None) => Records::Libpcap(cap),
        };
        Ok(FileSource {
            name,
            records,
            link,
            dlt,
            packets: 0,
            bytes_read: 24,
            file_len: meta.len(),
        })
    }
}

impl FileSource {
    /// The pcapng interface of the packet last read (index and name), when
    /// the file is pcapng.
    pub fn interface(&self) -> Option<(u32, Option<&str>)> {
        match &self.records {
            Records::Pcapng { reader, interface } => Some((
                *interface,
                reader
                    .interfaces()
                    .get(*interface as usize)
                    .and_then(|i| i.name.as_deref()),
            )),
            _ => None,
        }
    }

    /// The pcapng interfaces described so far.
    pub fn interfaces(&self) -> &[Interface] {
        match &self.records {
            Records::Pcapng { reader, .. } => reader.interfaces(),
            _ => &[],
        }
    }

    /// The file's link type when moni does not decode it: libpcap's name
    /// for it (`IEEE802_11_RADIO`, `FRELAY`, ...), or `DLT n`.
    pub fn unsupported_link_name(&self) -> Option<String> {
        if self.link.is_some() {
            return None;
        }
        Some(
            pcap::Linktype(self.dlt)
                .get_name()
                .unwrap_or_else(|_| format!("DLT {}", self.dlt)),
        )
    }
}

impl FileSource {
    /// The next packet, `Ok(None)` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError> {
        Ok(self.next_record()?.map(|(p, _)| p))
    }

    /// Inlined, as is [`Records::next`], into the one `next` of the trait:
    /// each layer returned the packet through memory, and reading it back
    /// wider than it was written stalled (about 1.5% of an IMIX replay's
    /// CPU samples).
    #[inline(always)]
    fn next_record(&mut self) -> Result<Option<(RawPacket<'_>, Option<u32>)>, CaptureError> {
        match self.records.next() {
            Ok(Some(p)) => {
                self.packets += 1;
                self.bytes_read += 16 + p.0.data.len() as u64;
                Ok(Some(p))
            }
            Ok(None) => Ok(None),
            Err(ReadError::Truncated(message)) => Err(CaptureError::Truncated {
                source_name: self.name.clone(),
                packets: self.packets,
                message,
            }),
            Err(ReadError::Invalid(message)) => Err(CaptureError::Read {
                source_name: self.name.clone(),
                packets: self.packets,
                message,
            }),
        }
    }

    /// Packets read so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }
}

impl PacketSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> Option<LinkType> {
        self.link
    }

    fn next(&mut self) -> Result<Next<'_>, CaptureError> {
        Ok(match self.next_record()? {
            Some((pkt, iface)) => Next::Packet { pkt, iface },
            None => Next::End,
        })
    }

    fn burst(&mut self, max: usize, out: &mut Vec<Placed>) -> Option<&super::SharedChunk> {
        let Records::Classic(c) = &mut self.records else {
            return None;
        };
        let buf = c.burst(max, out);
        self.packets += out.len() as u64;
        self.bytes_read += out.iter().map(|p| 16 + u64::from(p.len)).sum::<u64>();
        Some(buf)
    }

    fn interface_name(&self, index: u32) -> Option<String> {
        self.interfaces()
            .get(index as usize)
            .and_then(|i| i.name.clone())
    }

    fn interface_link(&self, index: u32) -> Option<LinkType> {
        match self.interfaces().get(index as usize) {
            Some(i) => LinkType::from_dlt(i32::from(i.linktype)),
            None => self.link,
        }
    }

    fn progress(&self) -> (u64, u64) {
        (self.bytes_read.min(self.file_len), self.file_len)
    }
}
