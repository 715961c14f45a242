//! Mutation fuzzing of the collector's ingest: files the node's Parquet
//! writer makes (and the same rows in every Parquet codec), with bytes
//! flipped, cut, spliced with another file, the footer length or its
//! Thrift corrupted, and sizes declared in the footer, in page headers and
//! in string lengths made huge, go through the collector's own path for
//! local storage (`store::prepare`, then `store::commit_local`). Each one
//! is stored, or refused with one clear line and nothing left behind;
//! never a panic, a hang or an allocation far beyond what the file holds.
//! `PROPTEST_CASES=20000 cargo test -p moni-collector --test fuzz_ingest`
//! hunts deeper.
// The allocation meter is a `GlobalAlloc`, which takes unsafe code.
#![allow(unsafe_code)]

use std::ops::Range;
use std::path::Path;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use analyzers::schema::{Dataset, TABLE};
use arrow::array::{RecordBatch, TimestampMicrosecondArray};
use bytes::Bytes;
use moni_collector::store::{self, IngestError, Limits};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{BrotliLevel, Compression, GzipLevel};
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::{WriterProperties, WriterVersion};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sha2::Digest;

mod common;
use common::batches::sample_batch;

/// Counts the bytes each thread allocates: the live total, its peak since
/// the last reset and the largest single request.
mod meter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Meter;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn grew(n: usize) {
        let _ = LIVE.try_with(|l| {
            let v = l.get() + n as isize;
            l.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
        let _ = LARGEST.try_with(|l| l.set(l.get().max(n)));
    }

    fn shrank(n: usize) {
        let _ = LIVE.try_with(|l| l.set(l.get() - n as isize));
    }

    // SAFETY: every call is passed on to `System` unchanged; the counters
    // are const-initialised thread locals without destructors, so reading
    // them never allocates.
    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            grew(layout.size());
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            grew(layout.size());
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            shrank(layout.size());
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            shrank(layout.size());
            grew(new_size);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static METER: Meter = Meter;

    /// Starts measuring this thread from zero.
    pub fn reset() {
        LIVE.with(|l| l.set(0));
        PEAK.with(|p| p.set(0));
        LARGEST.with(|l| l.set(0));
    }

    /// (peak live bytes, largest single allocation) of this thread since
    /// [`reset`].
    pub fn read() -> (usize, usize) {
        (
            PEAK.with(|p| p.get().max(0) as usize),
            LARGEST.with(Cell::get),
        )
    }
}

/// A case taking longer than this hangs (cases take milliseconds).
const CASE_TIME: Duration = Duration::from_secs(20);
/// Peak bytes one upload of a few kB may allocate while it is validated and
/// stored: a batch of 2,048 rows and a few Parquet writers, nowhere near a
/// size a corrupt header declares.
const MAX_PEAK: usize = 256 << 20;
/// Rows of each seed file (cut in row groups of 16, so three).
const ROWS: usize = 40;

/// A valid upload and what it holds.
struct Seed {
    what: String,
    dataset: &'static str,
    bytes: Vec<u8>,
    rows: u64,
    /// Uncompressed pages: string lengths lie in the file as written.
    plain: bool,
}

/// Each dataset's file as the node writes it, and the flows file again in
/// every other codec (a store compacted by another tool), uncompressed
/// among them, and with version 2 data pages.
fn seeds() -> &'static [Seed] {
    static SEEDS: OnceLock<Vec<Seed>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let output = moni_node::config::OutputConfig {
            row_group_rows: 16,
            ..Default::default()
        };
        let mut out = Vec::new();
        for d in &TABLE {
            let mut w = moni_node::export::DatasetWriter::for_dataset(tmp.path(), d, &output)
                .expect("node writer");
            w.write(&in_two_hours(d, sample_batch(d, ROWS)))
                .expect("write");
            w.close_current().expect("close");
            let bytes = std::fs::read(&w.files[0]).expect("read node file");
            out.push(Seed {
                what: format!("{} (node)", d.name),
                dataset: d.name,
                bytes,
                rows: ROWS as u64,
                plain: false,
            });
        }
        let flows = out
            .iter()
            .find(|s| s.dataset == "flows")
            .map(|s| s.bytes.clone())
            .expect("flows seed");
        for codec in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::GZIP(GzipLevel::default()),
            Compression::LZ4_RAW,
            Compression::LZ4,
            Compression::BROTLI(BrotliLevel::default()),
        ] {
            out.push(Seed {
                what: format!("flows ({codec:?})"),
                dataset: "flows",
                bytes: recompressed(&flows, codec, WriterVersion::PARQUET_1_0),
                rows: ROWS as u64,
                plain: codec == Compression::UNCOMPRESSED,
            });
        }
        // Version 2 data pages: their levels are not compressed.
        out.push(Seed {
            what: "flows (GZIP, v2 data pages)".into(),
            dataset: "flows",
            bytes: recompressed(
                &flows,
                Compression::GZIP(GzipLevel::default()),
                WriterVersion::PARQUET_2_0,
            ),
            rows: ROWS as u64,
            plain: false,
        });
        out
    })
}

/// `batch` with its times two minutes apart: four partitions (two VNets,
/// two hours), so that a case writes few files.
fn in_two_hours(d: &Dataset, batch: RecordBatch) -> RecordBatch {
    let times = TimestampMicrosecondArray::from_iter_values(
        (0..batch.num_rows() as i64).map(|i| common::batches::T0_US + i * 120_000_000),
    )
    .with_timezone("UTC");
    let i = batch.schema().index_of(d.time_column).expect("time column");
    let mut columns = batch.columns().to_vec();
    columns[i] = Arc::new(times);
    RecordBatch::try_new(batch.schema(), columns).expect("batch")
}

/// A temporary directory in memory where there is one: the cases' fsyncs
/// cost nothing there.
fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::tempdir_in(shm) {
            return t;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// The same Parquet file written again with `codec`, as `version`.
fn recompressed(file: &[u8], codec: Compression, version: WriterVersion) -> Vec<u8> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file.to_vec())).expect("parquet");
    let meta = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    let schema = builder.schema().clone();
    let props = WriterProperties::builder()
        .set_compression(codec)
        .set_writer_version(version)
        .set_max_row_group_row_count(Some(16))
        .set_key_value_metadata(meta)
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).expect("writer");
    for b in builder.build().expect("reader") {
        w.write(&b.expect("batch")).expect("write");
    }
    w.close().expect("close");
    out
}

// --- Thrift compact protocol: where a struct's integers lie --------------

/// An integer field of a Thrift struct: its path of field ids from the
/// outer struct, its varint's bytes and its value.
#[derive(Clone, Debug)]
struct IntField {
    path: Vec<i16>,
    span: Range<usize>,
    value: i64,
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let x = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

fn zigzag_varint(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// Walks the value of Thrift compact type `ty` at `pos`, recording every
/// integer in `out`.
fn walk_value(
    b: &[u8],
    pos: &mut usize,
    ty: u8,
    path: &mut Vec<i16>,
    out: &mut Vec<IntField>,
) -> Option<()> {
    match ty {
        1 | 2 => {}
        3 => *pos += 1,
        4..=6 => {
            let start = *pos;
            let value = unzigzag(varint(b, pos)?);
            out.push(IntField {
                path: path.clone(),
                span: start..*pos,
                value,
            });
        }
        7 => *pos += 8,
        8 => {
            let n = usize::try_from(varint(b, pos)?).ok()?;
            *pos = pos.checked_add(n)?;
        }
        9 | 10 => {
            let h = *b.get(*pos)?;
            *pos += 1;
            let n = if h >> 4 == 15 {
                usize::try_from(varint(b, pos)?).ok()?
            } else {
                usize::from(h >> 4)
            };
            for _ in 0..n {
                match h & 0x0f {
                    1 | 2 => *pos += 1,
                    et => walk_value(b, pos, et, path, out)?,
                }
            }
        }
        11 => {
            let n = varint(b, pos)?;
            if n > 0 {
                let kv = *b.get(*pos)?;
                *pos += 1;
                for _ in 0..n {
                    for t in [kv >> 4, kv & 0x0f] {
                        match t {
                            1 | 2 => *pos += 1,
                            t => walk_value(b, pos, t, path, out)?,
                        }
                    }
                }
            }
        }
        12 => walk_struct(b, pos, path, out)?,
        _ => return None,
    }
    (*pos <= b.len()).then_some(())
}

/// Walks the struct at `pos` to its stop byte.
fn walk_struct(
    b: &[u8],
    pos: &mut usize,
    path: &mut Vec<i16>,
    out: &mut Vec<IntField>,
) -> Option<()> {
    let mut last = 0i16;
    loop {
        let h = *b.get(*pos)?;
        *pos += 1;
        if h == 0 {
            return Some(());
        }
        let id = match h >> 4 {
            0 => i16::try_from(unzigzag(varint(b, pos)?)).ok()?,
            d => last.checked_add(i16::from(d))?,
        };
        last = id;
        path.push(id);
        walk_value(b, pos, h & 0x0f, path, out)?;
        path.pop();
    }
}

/// The integers of the struct at `b[pos..]` (in `b`'s coordinates) and
/// where it ends.
fn struct_ints(b: &[u8], pos: usize) -> Option<(Vec<IntField>, usize)> {
    let mut p = pos;
    let mut out = Vec::new();
    walk_struct(b, &mut p, &mut Vec::new(), &mut out)?;
    Some((out, p))
}

// --- The layout of a Parquet file ----------------------------------------

/// A file's footer and pages.
struct Layout {
    /// The Thrift `FileMetaData`.
    footer: Range<usize>,
    /// Its integers, in file coordinates.
    footer_ints: Vec<IntField>,
    /// Each column chunk's bytes, row group by row group.
    chunks: Vec<Range<usize>>,
    /// Every page header's integers, in file coordinates.
    page_ints: Vec<IntField>,
    /// Every page.
    pages: Vec<Page>,
}

/// A page: its chunk, its header's `compressed_page_size` and its body.
struct Page {
    chunk: usize,
    size: IntField,
    body: Range<usize>,
}

fn layout(file: &[u8]) -> Layout {
    let n = file.len();
    let len = u32::from_le_bytes(file[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let footer = n - 8 - len..n - 8;
    let (footer_ints, end) = struct_ints(file, footer.start).expect("footer");
    assert_eq!(end, footer.end, "the footer is one struct");
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&Bytes::from(file.to_vec()))
        .expect("metadata");
    let mut chunks = Vec::new();
    let mut page_ints = Vec::new();
    let mut pages = Vec::new();
    for rg in meta.row_groups() {
        for c in rg.columns() {
            let (start, len) = c.byte_range();
            let chunk = start as usize..(start + len) as usize;
            let mut pos = chunk.start;
            while pos < chunk.end {
                let (ints, body) = struct_ints(file, pos).expect("page header");
                let size = ints
                    .iter()
                    .find(|f| f.path == [3])
                    .cloned()
                    .expect("compressed_page_size");
                pos = body + size.value as usize;
                pages.push(Page {
                    chunk: chunks.len(),
                    size,
                    body: body..pos,
                });
                page_ints.extend(ints);
            }
            assert_eq!(pos, chunk.end, "pages fill the chunk");
            chunks.push(chunk);
        }
    }
    Layout {
        footer,
        footer_ints,
        chunks,
        page_ints,
        pages,
    }
}

/// `v`'s varint padded with `extra` redundant bytes (the same value).
fn padded_varint(v: i64, extra: usize) -> Vec<u8> {
    let mut out = zigzag_varint(v);
    if extra > 0 {
        if let Some(last) = out.last_mut() {
            *last |= 0x80;
        }
        out.extend(std::iter::repeat_n(0x80, extra - 1));
        out.push(0);
    }
    out
}

/// `b` (starting at file offset `base`) with each span replaced by its
/// bytes (spans sorted, apart).
fn rewrite_ints(b: &[u8], base: usize, edits: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 16);
    let mut at = 0;
    for (span, v) in edits {
        out.extend_from_slice(&b[at..span.start - base]);
        out.extend_from_slice(v);
        at = span.end - base;
    }
    out.extend_from_slice(&b[at..]);
    out
}

/// `data` (everything before the footer) and `footer` as a file.
fn with_footer(data: &[u8], footer: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.extend_from_slice(footer);
    out.extend_from_slice(&(footer.len() as u32).to_le_bytes());
    out.extend_from_slice(b"PAR1");
    out
}

/// Footer fields holding an absolute file offset (of `ColumnChunk`,
/// `ColumnMetaData` and `RowGroup`).
const OFFSET_PATHS: [&[i16]; 8] = [
    &[4, 1, 2],
    &[4, 1, 3, 9],
    &[4, 1, 3, 10],
    &[4, 1, 3, 11],
    &[4, 1, 3, 14],
    &[4, 1, 4],
    &[4, 1, 6],
    &[4, 5],
];
/// `ColumnMetaData.total_compressed_size`.
const CHUNK_SIZE_PATH: &[i16] = &[4, 1, 3, 7];

/// The file with the footer integer `which` set to `varint`.
fn set_footer_int(file: &[u8], l: &Layout, which: usize, varint: Vec<u8>) -> Vec<u8> {
    set_footer_ints(file, l, vec![(which, varint)])
}

/// The file with footer integers (by index) set to other varints.
fn set_footer_ints(file: &[u8], l: &Layout, edits: Vec<(usize, Vec<u8>)>) -> Vec<u8> {
    let mut edits: Vec<_> = edits
        .into_iter()
        .map(|(i, v)| (l.footer_ints[i % l.footer_ints.len()].span.clone(), v))
        .collect();
    edits.sort_by_key(|(span, _)| span.start);
    let footer = rewrite_ints(&file[l.footer.clone()], l.footer.start, &edits);
    with_footer(&file[..l.footer.start], &footer)
}

/// The file with `edits` (sorted, apart) made to the bytes of column
/// chunk `chunk`: the bytes after each edit move, and the footer's offsets
/// and the chunk's size follow, so the reader finds every page where it is.
fn edit_chunk(file: &[u8], l: &Layout, chunk: usize, edits: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let moved = |at: i64| -> i64 {
        edits
            .iter()
            .filter(|(span, _)| (span.start as i64) < at)
            .map(|(span, b)| b.len() as i64 - span.len() as i64)
            .sum()
    };
    let mut chunk_sizes = 0;
    let mut footer_edits = Vec::new();
    for g in &l.footer_ints {
        if OFFSET_PATHS.contains(&g.path.as_slice()) {
            footer_edits.push((g.span.clone(), zigzag_varint(g.value + moved(g.value))));
        } else if g.path == CHUNK_SIZE_PATH {
            if chunk_sizes == chunk {
                footer_edits.push((g.span.clone(), zigzag_varint(g.value + moved(i64::MAX))));
            }
            chunk_sizes += 1;
        }
    }
    let footer = rewrite_ints(&file[l.footer.clone()], l.footer.start, &footer_edits);
    let data = rewrite_ints(&file[..l.footer.start], 0, edits);
    with_footer(&data, &footer)
}

/// The file with the page header integer `which` set to `varint`.
fn set_page_int(file: &[u8], l: &Layout, which: usize, varint: Vec<u8>) -> Vec<u8> {
    let f = &l.page_ints[which % l.page_ints.len()];
    let chunk = l
        .chunks
        .iter()
        .position(|c| c.contains(&f.span.start))
        .expect("a chunk");
    edit_chunk(file, l, chunk, &[(f.span.clone(), varint)])
}

/// The file with page `which`'s body replaced by `body`.
fn set_page_body(file: &[u8], l: &Layout, which: usize, body: Vec<u8>) -> Vec<u8> {
    let p = &l.pages[which];
    let size = zigzag_varint(body.len() as i64);
    edit_chunk(
        file,
        l,
        p.chunk,
        &[(p.size.span.clone(), size), (p.body.clone(), body)],
    )
}

/// Where a PLAIN string's 4-byte length may lie in an uncompressed file: a
/// small little-endian length followed by that many name-like bytes.
fn string_lengths(file: &[u8]) -> Vec<usize> {
    (0..file.len().saturating_sub(5))
        .filter(|&p| {
            let n = u32::from_le_bytes([file[p], file[p + 1], file[p + 2], file[p + 3]]) as usize;
            (1..=64).contains(&n)
                && file.get(p + 4..p + 4 + n).is_some_and(|s| {
                    s.iter()
                        .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
                })
        })
        .collect()
}

// --- Mutations -------------------------------------------------------------

/// Sizes a corrupt file may declare.
fn huge() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::from(i32::MAX)),
        Just(i64::from(i32::MAX) - 7),
        Just(1 << 30),
        Just(4 << 30),
        Just(u32::MAX as i64),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(-1),
        Just(0),
        (1i64..100_000),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Bytes XORed (a position, a non-zero mask).
    Flip(Vec<(Index, u8)>),
    /// The file cut short.
    Truncate(Index),
    /// The head of this file, then the tail of another.
    Splice(Index, Index, Index),
    /// The footer length (the 4 bytes before the closing `PAR1`).
    FooterLen(i64),
    /// Bytes of the footer's Thrift XORed.
    FooterFlip(Vec<(Index, u8)>),
    /// An integer of the footer (row counts, sizes, offsets, list lengths)
    /// set to another value.
    FooterInt(Index, i64),
    /// An integer of a page header (page sizes, value counts, dictionary
    /// sizes) set to another value.
    PageInt(Index, i64),
    /// A PLAIN string's length (uncompressed seeds; others get a flip).
    StringLen(Index, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let flips = || proptest::collection::vec((any::<Index>(), 1u8..=255), 1..8);
    prop_oneof![
        flips().prop_map(Mutation::Flip),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(o, a, b)| Mutation::Splice(o, a, b)),
        prop_oneof![huge(), (-64i64..64)].prop_map(Mutation::FooterLen),
        flips().prop_map(Mutation::FooterFlip),
        (any::<Index>(), huge()).prop_map(|(i, v)| Mutation::FooterInt(i, v)),
        (any::<Index>(), huge()).prop_map(|(i, v)| Mutation::PageInt(i, v)),
        (
            any::<Index>(),
            prop_oneof![
                Just(u32::MAX),
                Just(i32::MAX as u32),
                Just(1 << 31),
                Just(1 << 30),
                (65u32..100_000)
            ]
        )
            .prop_map(|(i, v)| Mutation::StringLen(i, v)),
    ]
}

fn flip(bytes: &mut [u8], range: Range<usize>, flips: &[(Index, u8)]) {
    if range.is_empty() {
        return;
    }
    for (i, mask) in flips {
        bytes[range.start + i.index(range.len())] ^= mask;
    }
}

fn mutate(seed: &Seed, m: &Mutation) -> Vec<u8> {
    let file = &seed.bytes;
    let n = file.len();
    match m {
        Mutation::Flip(flips) => {
            let mut b = file.clone();
            flip(&mut b, 0..n, flips);
            b
        }
        Mutation::Truncate(at) => file[..at.index(n)].to_vec(),
        Mutation::Splice(other, a, b) => {
            let all = seeds();
            let o = &all[other.index(all.len())].bytes;
            let mut out = file[..a.index(n + 1)].to_vec();
            out.extend_from_slice(&o[b.index(o.len() + 1)..]);
            out
        }
        Mutation::FooterLen(v) => {
            let mut b = file.clone();
            let len = i64::from(u32::from_le_bytes(
                b[n - 8..n - 4].try_into().expect("4 bytes"),
            ));
            // Small values move the length, others replace it.
            let new = if (-64..64).contains(v) { len + v } else { *v };
            b[n - 8..n - 4].copy_from_slice(&(new as u32).to_le_bytes());
            b
        }
        Mutation::FooterFlip(flips) => {
            let mut b = file.clone();
            let l = layout(file);
            flip(&mut b, l.footer, flips);
            b
        }
        Mutation::FooterInt(i, v) => {
            let l = layout(file);
            set_footer_int(file, &l, i.index(l.footer_ints.len()), zigzag_varint(*v))
        }
        Mutation::PageInt(i, v) => {
            let l = layout(file);
            set_page_int(file, &l, i.index(l.page_ints.len()), zigzag_varint(*v))
        }
        Mutation::StringLen(i, v) => {
            let mut b = file.clone();
            let at = string_lengths(file);
            if seed.plain && !at.is_empty() {
                let p = at[i.index(at.len())];
                b[p..p + 4].copy_from_slice(&v.to_le_bytes());
            } else {
                let p = i.index(n);
                b[p] ^= 0x80;
            }
            b
        }
    }
}

// --- Ingest ----------------------------------------------------------------

/// What one upload came to.
#[derive(Debug)]
struct Outcome {
    /// Rows stored, or the refusal.
    result: Result<u64, IngestError>,
    /// Peak bytes allocated and the largest single allocation.
    peak: usize,
    largest: usize,
}

/// Uploads `body` as `dataset` through the collector's path for local
/// storage, in a thread of its own (measured, and bounded in time), and
/// checks that a refusal leaves nothing behind and that what is stored
/// holds the rows counted.
fn ingest(dataset: &'static str, body: Vec<u8>) -> Result<Outcome, TestCaseError> {
    let tmp = tempdir();
    let upload = tmp.path().join("upload.parquet");
    std::fs::write(&upload, &body).expect("write upload");
    let data = tmp.path().join("data");
    let incoming = store::incoming_dir(&data);
    std::fs::create_dir_all(&incoming).expect("incoming");
    let hash = hex::encode(sha2::Sha256::digest(&body));
    let (tx, rx) = mpsc::channel();
    let (d, inc) = (data.clone(), incoming.clone());
    std::thread::Builder::new()
        .name("ingest".into())
        .spawn(move || {
            meter::reset();
            let result = std::panic::catch_unwind(|| {
                let staged =
                    store::prepare(dataset, "node-1", &upload, &hash, &inc, &Limits::default())?;
                store::commit_local(&d, &staged)?;
                Ok::<u64, IngestError>(staged.rows)
            });
            let (peak, largest) = meter::read();
            let _ = tx.send(result.map(|result| Outcome {
                result,
                peak,
                largest,
            }));
        })
        .expect("thread");
    let outcome = match rx.recv_timeout(CASE_TIME) {
        Ok(Ok(o)) => o,
        Ok(Err(p)) => {
            return Err(TestCaseError::fail(format!(
                "a panic escaped the ingest: {}",
                store::panic_message(p.as_ref())
            )))
        }
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "no answer within {CASE_TIME:?} ({e})"
            )))
        }
    };
    prop_assert!(
        outcome.peak < MAX_PEAK,
        "{} bytes allocated at the peak (largest allocation {}) for a {}-byte upload: {:?}",
        outcome.peak,
        outcome.largest,
        body.len(),
        outcome.result
    );
    let stored = parquet_files(&data.join(dataset));
    let left: Vec<_> = std::fs::read_dir(&incoming)
        .expect("incoming")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    prop_assert!(left.is_empty(), "left in .incoming: {left:?}");
    match &outcome.result {
        Ok(rows) => {
            let mut got = 0u64;
            for p in &stored {
                let r = ParquetRecordBatchReaderBuilder::try_new(
                    std::fs::File::open(p).expect("stored part"),
                )
                .expect("a stored part is Parquet")
                .build()
                .expect("reader");
                for b in r {
                    got += b.expect("stored batch").num_rows() as u64;
                }
            }
            prop_assert_eq!(got, *rows, "rows stored");
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                (400..500).contains(&e.status()),
                "a bad file is the node's fault (4xx, not retried), got {}: {}",
                e.status(),
                msg
            );
            prop_assert!(!msg.contains('\n'), "one line: {:?}", msg);
            prop_assert!(
                msg.len() < 400 && !msg.trim_end().ends_with(':'),
                "a short message naming the problem: {:?}",
                msg
            );
            prop_assert!(stored.is_empty(), "stored for a refused upload: {stored:?}");
        }
    }
    Ok(outcome)
}

fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every seed, and every seed with a footer or page header integer
/// written again as a longer varint of the same value (the bytes after it
/// move), is stored whole: the mutations start from valid files, and the
/// rewriting they use keeps a file readable.
#[test]
fn seeds_and_their_rewrites_are_stored() {
    for s in seeds() {
        let l = layout(&s.bytes);
        if s.what.contains("v2") {
            let v2 = l.page_ints.iter().any(|f| f.path.first() == Some(&8));
            assert!(v2, "{}: no version 2 data page", s.what);
        }
        // The last page integer: a page header of the last chunk, after
        // which the page index and the footer move.
        let (f, p) = (0, l.page_ints.len() - 1);
        let first = padded_varint(l.footer_ints[f].value, 3);
        let last = padded_varint(l.page_ints[p].value, 3);
        // A page integer of the first chunk: every later chunk moves.
        let early = padded_varint(l.page_ints[1].value, 2);
        for (how, body) in [
            ("as written", s.bytes.clone()),
            ("footer rewritten", set_footer_int(&s.bytes, &l, f, first)),
            (
                "last page header rewritten",
                set_page_int(&s.bytes, &l, p, last),
            ),
            (
                "first page header rewritten",
                set_page_int(&s.bytes, &l, 1, early),
            ),
            (
                "first page body replaced by itself",
                set_page_body(&s.bytes, &l, 0, s.bytes[l.pages[0].body.clone()].to_vec()),
            ),
        ] {
            let o = ingest(s.dataset, body).unwrap_or_else(|e| panic!("{}, {how}: {e}", s.what));
            match o.result {
                Ok(rows) => assert_eq!(rows, s.rows, "{}, {how}", s.what),
                Err(e) => panic!("{}, {how}: refused: {e}", s.what),
            }
        }
    }
}

/// 400 mutated uploads (`PROPTEST_CASES` for more), each of a random seed
/// and a random [`Mutation`]: each stored or refused cleanly (`ingest`
/// checks how).
#[test]
fn mutated_uploads_are_stored_or_refused_cleanly() {
    let all = seeds();
    let mut runner = TestRunner::new(Config {
        cases: cases(400),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(0..all.len(), mutation()), |(i, m)| {
            let s = &all[i];
            ingest(s.dataset, mutate(s, &m)).map(|_| ())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Every kind of integer of the footer and of the page headers (the first
/// two of each), set to sizes a corrupt file may declare, in the node's
/// flows file and in a snappy one: each file is stored or refused cleanly
/// (`ingest` checks how).
#[test]
fn every_declared_integer_set_huge_is_stored_or_refused_cleanly() {
    let mut cases = 0;
    for s in [seed("flows (node)"), seed("flows (SNAPPY)")] {
        let l = layout(&s.bytes);
        for footer in [true, false] {
            let ints = if footer { &l.footer_ints } else { &l.page_ints };
            let mut seen: std::collections::HashMap<&[i16], usize> = Default::default();
            for (k, f) in ints.iter().enumerate() {
                let n = seen.entry(&f.path).or_default();
                *n += 1;
                if *n > 2 {
                    continue;
                }
                for v in [i64::from(i32::MAX), 1 << 40, -1] {
                    let body = if footer {
                        set_footer_int(&s.bytes, &l, k, zigzag_varint(v))
                    } else {
                        set_page_int(&s.bytes, &l, k, zigzag_varint(v))
                    };
                    ingest(s.dataset, body)
                        .unwrap_or_else(|e| panic!("{}: {:?} set to {v}: {e}", s.what, f.path));
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 300, "{cases} cases");
}

fn seed(what: &str) -> &'static Seed {
    seeds()
        .iter()
        .find(|s| s.what.starts_with(what))
        .unwrap_or_else(|| panic!("no seed {what}"))
}

/// The first integer at `path` in `ints`.
fn first(ints: &[IntField], path: &[i16]) -> usize {
    ints.iter()
        .position(|f| f.path == path)
        .unwrap_or_else(|| panic!("no field {path:?}"))
}

/// The file with a byte of a field metadata key (`ipfix_name`) in its
/// `ARROW:schema` (base64 of a flatbuffer) made invalid UTF-8.
fn corrupt_arrow_schema(file: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b"ARROW:schema";
    let at = file
        .windows(key.len())
        .rposition(|w| w == key)
        .expect("ARROW:schema")
        + key.len();
    // KeyValue field 2, a binary: its length, then the base64 text.
    assert_eq!(file[at], 0x18, "the value follows the key");
    let mut pos = at + 1;
    let n = varint(file, &mut pos).expect("length") as usize;
    let mut schema = b64.decode(&file[pos..pos + n]).expect("base64");
    let name = b"ipfix_name";
    let i = schema
        .windows(name.len())
        .position(|w| w == name)
        .expect("a field's metadata");
    schema[i] = 0xff;
    let text = b64.encode(&schema);
    assert_eq!(text.len(), n, "same length");
    let mut out = file.to_vec();
    out[pos..pos + n].copy_from_slice(text.as_bytes());
    out
}

/// Each kind of input the sweep found a defect with, made on purpose: each
/// is refused with one clear line, allocating far less than it declares
/// (`ingest` checks the peak and the line).
#[test]
fn declared_sizes_are_checked_before_they_are_allocated() {
    let flows = seed("flows (node)");
    let snappy = seed("flows (SNAPPY)");
    let lf = layout(&flows.bytes);
    let ls = layout(&snappy.bytes);
    let page = |s: &Seed, l: &Layout, path: &[i16], v: i64| {
        set_page_int(&s.bytes, l, first(&l.page_ints, path), zigzag_varint(v))
    };
    let footer = |path: &[i16], v: i64| {
        set_footer_int(
            &flows.bytes,
            &lf,
            first(&lf.footer_ints, path),
            zigzag_varint(v),
        )
    };
    let max = i64::from(i32::MAX);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            // 2 GiB reserved for the page before its data was inflated.
            "a zstd page declaring 2 GiB decoded",
            page(flows, &lf, &[2], max),
            "bytes of pages decoded at once",
        ),
        (
            // 2 GiB zero-filled, and the file then stored as valid.
            "a snappy page declaring 2 GiB decoded",
            page(snappy, &ls, &[2], max),
            "bytes of pages decoded at once",
        ),
        (
            // 8 GiB of dictionary offsets, and the file stored.
            "a dictionary page declaring 2^31 values",
            page(flows, &lf, &[7, 1], max),
            "dictionary of 2147483647 values",
        ),
        (
            // 8 GiB asked for while the footer was parsed.
            "a schema root declaring 2^30 children",
            footer(&[2, 5], 1 << 30),
            "declares 1073741824 children",
        ),
        (
            // A panic (an overflow) outside the decoder's guard: 503.
            "a row group of -1 rows",
            footer(&[4, 3], -1),
            "row group 0 declares -1 rows",
        ),
        (
            // Stored as 0 rows and acknowledged: 40 rows lost.
            "a footer declaring 0 rows over row groups of 40",
            footer(&[3], 0),
            "the footer declares 0 rows, its row groups 40",
        ),
        (
            // Stored as the 40 rows read, acknowledged as the 45 declared.
            "row groups declaring 5 rows more than their pages hold",
            set_footer_ints(
                &flows.bytes,
                &lf,
                [&[3][..], &[4, 3]]
                    .map(|path| {
                        let i = first(&lf.footer_ints, path);
                        (i, zigzag_varint(lf.footer_ints[i].value + 5))
                    })
                    .to_vec(),
            ),
            "the footer declares 45 rows, 40 were read",
        ),
        (
            // A 1 kB line (the flatbuffer's error trace).
            "a corrupt ARROW:schema",
            corrupt_arrow_schema(&flows.bytes),
            "ARROW:schema",
        ),
    ];
    let failed: Vec<String> = cases
        .into_iter()
        .filter_map(|(what, body, needle)| {
            let o = match ingest("flows", body) {
                Ok(o) => o,
                Err(e) => return Some(format!("{what}: {e}")),
            };
            match &o.result {
                Err(IngestError::NotParquet(m)) if m.contains(needle) && m.len() < 400 => None,
                other => Some(format!("{what}: {other:?}")),
            }
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// `n` MiB of zeros as `codec` compresses them, far smaller than that.
fn bomb(codec: &str, n: usize) -> Vec<u8> {
    use std::io::Write;
    let mib = vec![0u8; 1 << 20];
    match codec {
        // Gzip members one after another: one stream to the decoder.
        "gzip" => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            w.write_all(&mib).expect("gzip");
            w.finish().expect("gzip").repeat(n)
        }
        "lz4" => {
            let mut w = lz4_flex::frame::FrameEncoder::new(Vec::new());
            for _ in 0..n {
                w.write_all(&mib).expect("lz4");
            }
            w.finish().expect("lz4")
        }
        "brotli" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                for _ in 0..n {
                    w.write_all(&mib).expect("brotli");
                }
            }
            out
        }
        other => panic!("{other}"),
    }
}

/// A page whose codec stream inflates far beyond the size its header
/// declares: parquet's gzip, brotli and LZ4-frame decoders read such a
/// stream to its end, whatever the header says.
#[test]
fn a_decompression_bomb_is_refused_without_inflating_it() {
    for (what, codec) in [
        ("flows (GZIP", "gzip"),
        ("flows (LZ4)", "lz4"),
        ("flows (BROTLI", "brotli"),
    ] {
        let s = seed(what);
        let l = layout(&s.bytes);
        let body = bomb(codec, 512);
        let file = set_page_body(&s.bytes, &l, 0, body);
        let o = ingest(s.dataset, file).unwrap_or_else(|e| panic!("{codec}: {e}"));
        match &o.result {
            Err(IngestError::NotParquet(m)) => assert!(m.contains("inflates past"), "{codec}: {m}"),
            other => panic!("{codec}: {other:?}"),
        }
    }
}
