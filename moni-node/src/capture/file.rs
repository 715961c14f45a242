//! Replay of pcap and pcapng files through libpcap.

use std::path::Path;

use analyzers::{LinkType, Timestamp};

use super::{CaptureError, PacketSource, RawPacket};

/// A capture file opened with libpcap (which reads pcap and pcapng).
pub struct FileSource {
    name: String,
    cap: pcap::Capture<pcap::Offline>,
    link: Option<LinkType>,
    packets: u64,
    bytes_read: u64,
    file_len: u64,
}

impl FileSource {
    /// Opens `path`, applying the BPF `filter` if given.
    pub fn open(path: &Path, filter: Option<&str>) -> Result<FileSource, CaptureError> {
        let name = path.display().to_string();
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
        let link = LinkType::from_dlt(cap.get_datalink().0);
        Ok(FileSource {
            name,
            cap,
            link,
            packets: 0,
            bytes_read: 24,
            file_len: meta.len(),
        })
    }
}

impl PacketSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> Option<LinkType> {
        self.link
    }

    fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError> {
        match self.cap.next_packet() {
            Ok(p) => {
                self.packets += 1;
                self.bytes_read += 16 + u64::from(p.header.caplen);
                let ts = Timestamp::from_secs_micros(p.header.ts.tv_sec, p.header.ts.tv_usec);
                Ok(Some(RawPacket {
                    ts,
                    wire_len: p.header.len.max(p.header.caplen),
                    data: p.data,
                }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => {
                let message = e.to_string();
                if message.contains("truncated") {
                    Err(CaptureError::Truncated {
                        source_name: self.name.clone(),
                        packets: self.packets,
                        message,
                    })
                } else {
                    Err(CaptureError::Read {
                        source_name: self.name.clone(),
                        packets: self.packets,
                        message,
                    })
                }
            }
        }
    }

    fn progress(&self) -> (u64, u64) {
        (self.bytes_read.min(self.file_len), self.file_len)
    }
}
