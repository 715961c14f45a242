//! Our reader of plain pcap records against libpcap, the judge: every
//! capture of the samples and the corpus, rewritten into the other byte
//! order and nanosecond precision, and cut short at many places, must give
//! the same packets and the same end (clean, truncated or corrupt).

mod common;

use std::path::{Path, PathBuf};

use moni_node::capture::file::FileSource;
use moni_node::capture::CaptureError;

/// (microsecond timestamp, wire length, bytes) of every packet, and how
/// the file ended: `None` cleanly, else whether libpcap called it
/// truncated.
type Read = (Vec<(i64, u32, Vec<u8>)>, Option<bool>);

fn ours(path: &Path) -> Read {
    let mut src = FileSource::open(path, None).expect("opens");
    let mut out = Vec::new();
    loop {
        match src.next_packet() {
            Ok(Some(p)) => out.push((p.ts.0, p.wire_len, p.data.to_vec())),
            Ok(None) => return (out, None),
            Err(CaptureError::Truncated { .. }) => return (out, Some(true)),
            Err(_) => return (out, Some(false)),
        }
    }
}

fn libpcap(path: &Path) -> Read {
    let mut cap = pcap::Capture::from_file(path).expect("libpcap opens");
    let mut out = Vec::new();
    loop {
        match cap.next_packet() {
            Ok(p) => out.push((
                p.header.ts.tv_sec * 1_000_000 + p.header.ts.tv_usec,
                p.header.len.max(p.header.caplen),
                p.data.to_vec(),
            )),
            Err(pcap::Error::NoMorePackets) => return (out, None),
            Err(e) => return (out, Some(e.to_string().contains("truncated"))),
        }
    }
}

/// The file rewritten big-endian and/or with nanosecond timestamps.
fn rewrite(bytes: &[u8], big_endian: bool, nanos: bool) -> Vec<u8> {
    let le = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let put32 = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        })
    };
    let mut out = Vec::new();
    put32(&mut out, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    for at in [4, 6] {
        let v = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }
    for at in [8, 12, 16, 20] {
        put32(&mut out, le(at));
    }
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = le(at + 8) as usize;
        put32(&mut out, le(at));
        put32(&mut out, if nanos { le(at + 4) * 1000 } else { le(at + 4) });
        put32(&mut out, le(at + 8));
        put32(&mut out, le(at + 12));
        let end = (at + 16 + caplen).min(bytes.len());
        out.extend_from_slice(&bytes[at + 16..end]);
        at = end;
    }
    out
}

fn captures() -> Vec<PathBuf> {
    captures_starting_with(&[0xd4, 0xc3, 0xb2, 0xa1])
}

/// Every sample and corpus file whose first bytes are `magic`, sorted.
fn captures_starting_with(magic: &[u8]) -> Vec<PathBuf> {
    let mut dirs = vec![common::root().join("samples/pcap")];
    dirs.extend(common::corpus());
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.starts_with(magic)) {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_plain_pcap_reads_as_libpcap_reads_it() {
    let files = captures();
    assert!(files.len() >= 4, "{files:?}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut packets = 0;
    for f in &files {
        let want = libpcap(f);
        assert_eq!(ours(f), want, "{}", f.display());
        packets += want.0.len();
        let bytes = std::fs::read(f).expect("read");
        for (big, nanos) in [(true, false), (false, true), (true, true)] {
            let variant = tmp.path().join("variant.pcap");
            std::fs::write(&variant, rewrite(&bytes, big, nanos)).expect("write");
            let got = ours(&variant);
            assert_eq!(
                got,
                libpcap(&variant),
                "{} big={big} nanos={nanos}",
                f.display()
            );
            assert_eq!(got.0.len(), want.0.len());
        }
    }
    eprintln!("{} captures, {packets} packets read alike", files.len());
}

#[test]
fn cut_and_corrupt_files_end_as_libpcap_says() {
    let bytes = std::fs::read(common::sample("voip-impairments.pcap")).expect("sample");
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("cut.pcap");
    let mut truncated = 0;
    // Every cut in the first records, then a spread over the file.
    let cuts = (25..400).chain((400..bytes.len()).step_by(997));
    for cut in cuts {
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let got = ours(&path);
        assert_eq!(got, libpcap(&path), "cut at {cut}");
        truncated += usize::from(got.1 == Some(true));
    }
    assert!(truncated > 300, "{truncated}");
    // A record claiming more than libpcap's maximum is corrupt, not cut.
    let mut bad = bytes[..24].to_vec();
    bad.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    bad.extend_from_slice(&(1u32 << 20).to_le_bytes());
    bad.extend_from_slice(&(1u32 << 20).to_le_bytes());
    bad.extend_from_slice(&[0; 64]);
    std::fs::write(&path, &bad).expect("write");
    let got = ours(&path);
    assert_eq!(got, libpcap(&path));
    assert_eq!(got, (Vec::new(), Some(false)));
}

#[test]
fn a_pipe_is_left_to_libpcap_and_loses_nothing() {
    let sample = common::sample("voip-impairments.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let fifo = tmp.path().join("fifo.pcap");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(ok.success());
    let bytes = std::fs::read(&sample).expect("sample");
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, bytes))
    };
    let got = ours(&fifo);
    writer.join().expect("writer").expect("write fifo");
    let want = libpcap(&sample);
    assert!(!want.0.is_empty());
    assert_eq!(got, want);
}

/// pcapng files, which we read ourselves to know each packet's interface:
/// the same packets as libpcap reads.
#[test]
fn every_pcapng_reads_as_libpcap_reads_it() {
    let files = captures_starting_with(&[0x0a, 0x0d, 0x0d, 0x0a]);
    if common::corpus().is_some() {
        assert!(files.len() >= 5, "{files:?}");
    }
    for f in &files {
        assert_eq!(ours(f), libpcap(f), "{}", f.display());
    }
}

/// A pcapng block (little-endian) of `kind` around `body`, padded.
fn ng_block(kind: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(4) * 4;
    let len = (12 + padded) as u32;
    let mut b = kind.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(8 + padded, 0);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// A pcapng section header block (version 1.0, length unknown).
fn ng_section() -> Vec<u8> {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    ng_block(0x0a0d_0d0a, &shb)
}

/// An IPv4/UDP packet from 10.0.0.`src` to 10.0.0.9, port 5000 to 6000,
/// with 8 bytes of payload (checksums zero: moni does not check them).
fn ipv4_udp(src: u8) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 36, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, src, 10, 0, 0, 9,
    ];
    p.extend_from_slice(&[0x13, 0x88, 0x17, 0x70, 0, 16, 0, 0]);
    p.extend_from_slice(b"payload!");
    p
}

/// A pcapng capture of two interfaces of different link types (as
/// `dumpcap -i eth0 -i any` writes): Ethernet and raw IP, one UDP packet
/// on each. libpcap refuses such a file; moni read the raw IP packet as
/// Ethernet (silently: no flow, no decode error). Each packet is now
/// decoded with its interface's link type.
#[test]
fn a_pcapng_of_two_link_types_decodes_each_packet_with_its_interfaces() {
    let mut f = ng_section();
    f.extend(ng_block(1, &[1, 0, 0, 0, 0, 0, 1, 0])); // Ethernet
    f.extend(ng_block(1, &[101, 0, 0, 0, 0, 0, 1, 0])); // raw IP
    let epb = |iface: u32, ts_us: u64, frame: &[u8]| {
        let mut b = iface.to_le_bytes().to_vec();
        b.extend_from_slice(&((ts_us >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts_us as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(frame);
        ng_block(6, &b)
    };
    let t0 = 1_700_000_000_000_000u64;
    let mut eth = vec![2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    eth.extend(ipv4_udp(1));
    // Ethernet, raw IP, Ethernet again: each switch of link type.
    f.extend(epb(0, t0, &eth));
    f.extend(epb(1, t0 + 1000, &ipv4_udp(2)));
    f.extend(epb(0, t0 + 2000, &eth));
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = dir.path().join("two-links.pcapng");
    std::fs::write(&cap, &f).expect("write");
    let out = dir.path().join("out");
    let s = common::replay_files(&[cap], None, &out, "");
    assert_eq!(s.packets, 3);
    assert_eq!(s.decode_errors_total, 0, "{:?}", s.decode_errors);
    assert_eq!(s.flows.exported, 2, "10.0.0.1 and 10.0.0.2 to 10.0.0.9");
}

/// A file may declare any number of interfaces (a million in 20 MB made a
/// 19 MB summary): the summary lists the first 64 and counts the rest.
#[test]
fn a_pcapng_of_many_interfaces_lists_the_first_64() {
    let mut f = ng_section();
    for _ in 0..70 {
        f.extend(ng_block(1, &[101, 0, 0, 0, 0, 0, 1, 0]));
    }
    let frame = ipv4_udp(1);
    let mut epb = 69u32.to_le_bytes().to_vec();
    epb.extend_from_slice(&[0; 8]);
    epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    epb.extend_from_slice(&frame);
    f.extend(ng_block(6, &epb));
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = dir.path().join("many.pcapng");
    std::fs::write(&cap, &f).expect("write");
    let s = common::replay_files(&[cap], None, &dir.path().join("out"), "");
    assert_eq!(s.packets, 1);
    let listed = &s.files[0].interfaces;
    assert_eq!(listed.len(), 65, "{listed:?}");
    assert_eq!(
        (listed[0].as_str(), listed[64].as_str()),
        ("#0", "and 6 more")
    );
}
