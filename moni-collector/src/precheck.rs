//! What the `parquet` crate's decoder trusts in a file, checked before it
//! decodes an upload, so that the sizes a corrupt or hostile file declares
//! never become allocations (`tests/fuzz_ingest.rs` found each of these;
//! the sizes are from 20-30 kB uploads):
//!
//! - a schema element's `num_children` sizes a vector while the footer is
//!   parsed: a root declaring 2^31 children asked for 16 GiB, and an
//!   allocation that fails aborts the collector ([`footer`]);
//! - a page header's `uncompressed_page_size` sizes the page's buffer,
//!   zero-filled for snappy and LZ4: 2 GiB, and the file then read as
//!   valid; a dictionary page's `num_values` sizes its offsets (8 GiB);
//! - gzip, brotli and LZ4-frame pages are inflated to the end of their
//!   stream whatever the header declares: a 29 kB brotli page, 1 GiB.
//!
//! So [`pages`] reads every page header of every column chunk before the
//! decoder does: a page must lie within its chunk and the chunk within the
//! file, the pages the decoder holds at once (each column's largest
//! dictionary and data page, over a row group's columns) must stay within
//! [`MAX_PAGES_AT_ONCE`] declared bytes, a dictionary page cannot hold
//! more values than its bytes can, and a gzip, brotli or LZ4 page is
//! inflated once more, into nothing and at most one byte past what it
//! declares, to check that it stops there (those codecs cost two
//! inflations; snappy, LZ4-raw and zstd, whose decoders stop at the
//! declared size, are not inflated twice). Row counts must agree: every
//! row group's at least 0, their sum the footer's.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use parquet::basic::{Compression, Type as PhysicalType};
use parquet::file::metadata::ParquetMetaData;

/// Declared decoded bytes of the pages one row group's columns hold at once
/// (for each column its largest dictionary page plus its largest data
/// page). Writers cut pages at about 1 MiB (parquet-rs, pyarrow, Spark),
/// so a row group of the widest dataset (75 columns) declares 150 MiB at
/// most.
pub const MAX_PAGES_AT_ONCE: u64 = 256 << 20;

/// Why an upload is not given to the Parquet decoder.
#[derive(Debug, thiserror::Error)]
pub enum Unfit {
    #[error("footer: {0}")]
    Footer(ThriftFault),
    #[error("schema element {index} declares {children} children, but {left} elements follow")]
    SchemaChildren {
        index: usize,
        children: i64,
        left: usize,
    },
    #[error("row group {row_group} declares {rows} rows")]
    NegativeRows { row_group: usize, rows: i64 },
    #[error("the footer declares {file} rows, its row groups {groups}")]
    RowCounts { file: i64, groups: i128 },
    #[error("column {column} of row group {row_group} declares bytes {start}..{end}, outside the file's {len}")]
    ChunkOutside {
        column: String,
        row_group: usize,
        start: i64,
        end: i128,
        len: u64,
    },
    #[error("column {column} of row group {row_group}, page at byte {at}: {fault}")]
    Page {
        column: String,
        row_group: usize,
        at: u64,
        fault: PageFault,
    },
    #[error("row group {row_group} declares {bytes} bytes of pages decoded at once (column {column}: {largest}), above the collector's {MAX_PAGES_AT_ONCE}")]
    PagesTooLarge {
        row_group: usize,
        bytes: u64,
        column: String,
        largest: u64,
    },
    #[error("reading the upload: {0}")]
    Io(#[from] std::io::Error),
}

/// What is wrong with a page.
#[derive(Debug, thiserror::Error)]
pub enum PageFault {
    #[error("unreadable header ({0})")]
    Header(ThriftFault),
    #[error("header of {header} bytes and {body} bytes of data, {left} left in the chunk")]
    Size { header: u64, body: i64, left: u64 },
    #[error("declares {0} bytes decoded")]
    NegativeSize(i32),
    #[error("dictionary of {values} values in {bytes} bytes")]
    Dictionary { values: i32, bytes: i32 },
    #[error("levels of {levels} bytes in a page of {bytes}")]
    Levels { levels: i64, bytes: i32 },
    #[error("{codec:?} data inflates past the {declared} bytes its header declares")]
    Inflates { codec: Compression, declared: u64 },
}

/// A malformed Thrift value.
#[derive(Debug, thiserror::Error)]
pub enum ThriftFault {
    #[error("cut short")]
    Eof,
    #[error("integer too long or out of range")]
    Varint,
    #[error("type {0} unknown")]
    Type(u8),
    #[error("nested deeper than {MAX_DEPTH}")]
    Depth,
    #[error("field {id} written as type {ty}")]
    FieldType { id: i16, ty: u8 },
    #[error("field id out of range")]
    FieldId,
    #[error("a required field is missing")]
    Missing,
    #[error("{0}")]
    Io(std::io::Error),
}

/// Checks the schema in the footer of `file` (of `len` bytes) before the
/// decoder parses it: every element's `num_children` must fit the elements
/// that follow. The footer is walked as the decoder reads it, up to its
/// schema (the decoder builds the first schema list it meets and skips any
/// other); a footer this walk cannot read is refused, one without
/// Parquet's tail left to the decoder to refuse.
pub fn footer(file: &File, len: u64) -> Result<(), Unfit> {
    if len < 12 {
        return Ok(());
    }
    let mut r = file;
    let mut tail = [0u8; 8];
    r.seek(SeekFrom::Start(len - 8))?;
    r.read_exact(&mut tail)?;
    let meta_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if &tail[4..] != b"PAR1" || meta_len > len - 8 {
        return Ok(());
    }
    let mut meta = vec![0u8; meta_len as usize];
    r.seek(SeekFrom::Start(len - 8 - meta_len))?;
    r.read_exact(&mut meta)?;
    match schema_children(&mut Thrift::new(meta.as_slice())) {
        Ok(found) => found.map_or(Ok(()), Err),
        Err(ThriftFault::Io(e)) => Err(Unfit::Io(e)),
        Err(e) => Err(Unfit::Footer(e)),
    }
}

/// The first schema element of `FileMetaData`'s schema (field 2) with
/// more children than elements follow it.
fn schema_children<R: Read>(t: &mut Thrift<R>) -> Result<Option<Unfit>, ThriftFault> {
    let mut last = 0;
    while let Some((id, ty)) = t.field(&mut last)? {
        match id {
            2 => {
                Spec::List(Kind::SchemaElement).check(id, ty)?;
                let (elem, n) = t.list()?;
                if elem != STRUCT {
                    return Ok(None);
                }
                for index in 0..n {
                    let mut children = None;
                    t.walk(Kind::SchemaElement, 1, &mut |kind, id, v| {
                        if (kind, id) == (Kind::SchemaElement, 5) {
                            // As the decoder keeps it.
                            children = Some(v as i32);
                        }
                    })?;
                    let left = n - index - 1;
                    if let Some(children) = children.filter(|&c| c < 0 || c as usize > left) {
                        return Ok(Some(Unfit::SchemaChildren {
                            index,
                            children: i64::from(children),
                            left,
                        }));
                    }
                }
                return Ok(None);
            }
            // Row groups before the schema: the decoder refuses them.
            4 => return Ok(None),
            _ => t.value(Kind::FileMetaData, id, ty, 0, &mut |_, _, _| {})?,
        }
    }
    Ok(None)
}

/// Checks the row counts of `meta` and every page header of `file` (of
/// `len` bytes) before the decoder reads them (see the module doc).
pub fn pages(file: &File, len: u64, meta: &ParquetMetaData) -> Result<(), Unfit> {
    let mut groups: i128 = 0;
    for (row_group, rg) in meta.row_groups().iter().enumerate() {
        if rg.num_rows() < 0 {
            return Err(Unfit::NegativeRows {
                row_group,
                rows: rg.num_rows(),
            });
        }
        groups += i128::from(rg.num_rows());
    }
    let declared = meta.file_metadata().num_rows();
    if groups != i128::from(declared) {
        return Err(Unfit::RowCounts {
            file: declared,
            groups,
        });
    }
    // The file's position is shared with its other handles: from 0.
    let mut r = BufReader::new(file);
    r.rewind()?;
    let mut r = Cursor { r, at: 0 };
    for (row_group, rg) in meta.row_groups().iter().enumerate() {
        let mut at_once = 0u64;
        let mut widest = (0u64, String::new());
        for c in rg.columns() {
            let column = || c.column_path().string();
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let end = i128::from(start) + i128::from(c.compressed_size());
            if start < 0 || c.compressed_size() < 0 || end > i128::from(len) {
                return Err(Unfit::ChunkOutside {
                    column: column(),
                    row_group,
                    start,
                    end,
                    len,
                });
            }
            let width = value_width(c.column_type(), c.column_descr().type_length());
            let (dict, data) = chunk(&mut r, start as u64, end as u64, c.compression(), width)
                .map_err(|(at, fault)| match fault {
                    Walk::Io(e) => Unfit::Io(e),
                    Walk::Fault(fault) => Unfit::Page {
                        column: column(),
                        row_group,
                        at,
                        fault,
                    },
                })?;
            at_once = at_once.saturating_add(dict.saturating_add(data));
            if dict.saturating_add(data) > widest.0 {
                widest = (dict.saturating_add(data), column());
            }
        }
        if at_once > MAX_PAGES_AT_ONCE {
            return Err(Unfit::PagesTooLarge {
                row_group,
                bytes: at_once,
                column: widest.1,
                largest: widest.0,
            });
        }
    }
    Ok(())
}

/// The fewest bytes one PLAIN value of a dictionary takes, in eighths of
/// a byte (a boolean is one bit; a string its 4-byte length).
fn value_width(t: PhysicalType, type_length: i32) -> u64 {
    match t {
        PhysicalType::BOOLEAN => 1,
        PhysicalType::INT32 | PhysicalType::FLOAT | PhysicalType::BYTE_ARRAY => 32,
        PhysicalType::INT64 | PhysicalType::DOUBLE => 64,
        PhysicalType::INT96 => 96,
        PhysicalType::FIXED_LEN_BYTE_ARRAY => 8 * u64::try_from(type_length.max(1)).unwrap_or(1),
    }
}

enum Walk {
    Io(std::io::Error),
    Fault(PageFault),
}

/// A reader of the upload that knows where it is, so that moving on to
/// the next page costs no read while the page is in its buffer (a chunk
/// may hold a page every 7 bytes).
struct Cursor<'a> {
    r: BufReader<&'a File>,
    at: u64,
}

impl Cursor<'_> {
    fn goto(&mut self, to: u64) -> std::io::Result<()> {
        if to != self.at {
            let by = i64::try_from(i128::from(to) - i128::from(self.at))
                .map_err(|_| std::io::Error::other("offset out of range"))?;
            self.r.seek_relative(by)?;
            self.at = to;
        }
        Ok(())
    }
}

/// Walks the pages of the chunk `start..end`: its largest dictionary page
/// and largest data page (declared decoded bytes), or the first fault and
/// the byte of the page it is in.
fn chunk(
    r: &mut Cursor,
    start: u64,
    end: u64,
    codec: Compression,
    width: u64,
) -> Result<(u64, u64), (u64, Walk)> {
    let (mut dict, mut data) = (0u64, 0u64);
    let mut at = start;
    while at < end {
        let fail = |w: Walk| (at, w);
        r.goto(at).map_err(|e| fail(Walk::Io(e)))?;
        let mut counted = Counted { r: &mut r.r, n: 0 };
        let h = read_header(&mut Thrift::new(&mut counted));
        r.at += counted.n;
        let h = h.map_err(|e| match e {
            ThriftFault::Io(e) => fail(Walk::Io(e)),
            e => fail(Walk::Fault(PageFault::Header(e))),
        })?;
        let header = r.at - at;
        let left = end - at;
        if header > left || h.compressed < 0 || h.compressed as u64 > left - header {
            return Err(fail(Walk::Fault(PageFault::Size {
                header,
                body: i64::from(h.compressed),
                left,
            })));
        }
        if h.uncompressed < 0 {
            return Err(fail(Walk::Fault(PageFault::NegativeSize(h.uncompressed))));
        }
        let size = h.uncompressed as u64;
        match h.kind {
            DICTIONARY_PAGE => {
                let values = h.dictionary_values.unwrap_or(0);
                if values < 0
                    || u128::from(values as u64) * u128::from(width) > u128::from(size) * 8
                {
                    return Err(fail(Walk::Fault(PageFault::Dictionary {
                        values,
                        bytes: h.uncompressed,
                    })));
                }
                dict = dict.max(size);
            }
            DATA_PAGE | DATA_PAGE_V2 => data = data.max(size),
            _ => {}
        }
        // The decoder's own checks of a v2 page's levels, which are not
        // compressed.
        let levels = i64::from(h.levels.0) + i64::from(h.levels.1);
        if h.levels.0 < 0
            || h.levels.1 < 0
            || levels > i64::from(h.uncompressed)
            || levels > i64::from(h.compressed)
        {
            return Err(fail(Walk::Fault(PageFault::Levels {
                levels,
                bytes: h.uncompressed,
            })));
        }
        let body = at + header;
        if h.kind != INDEX_PAGE && h.compressed_body && size > 0 {
            let levels = levels as u64;
            let data = body + levels..body + h.compressed as u64;
            let declared = size - levels;
            if inflates_past(r, data, codec, declared).map_err(|e| fail(Walk::Io(e)))? {
                return Err(fail(Walk::Fault(PageFault::Inflates { codec, declared })));
            }
        }
        at = body + h.compressed as u64;
    }
    Ok((dict, data))
}

/// Whether the page data at `data` inflates past `declared` bytes with
/// `codec`, for the codecs whose decoder in `parquet` reads a stream to its
/// end (LZ4 falls back to an LZ4 frame when the data is not Hadoop's
/// format). Inflated into nothing, one byte past `declared` at most. A
/// stream the codec cannot read is left to the decoder.
fn inflates_past(
    r: &mut Cursor,
    data: std::ops::Range<u64>,
    codec: Compression,
    declared: u64,
) -> std::io::Result<bool> {
    if !matches!(
        codec,
        Compression::GZIP(_) | Compression::BROTLI(_) | Compression::LZ4
    ) {
        return Ok(false);
    }
    r.goto(data.start)?;
    let len = data.end - data.start;
    let limit = declared.saturating_add(1);
    let mut input = r.r.by_ref().take(len);
    let inflated = match codec {
        Compression::GZIP(_) => drain(flate2::read::MultiGzDecoder::new(&mut input), limit),
        Compression::BROTLI(_) => drain(brotli::Decompressor::new(&mut input, 4096), limit),
        _ => {
            let mut framed = BufReader::new(&mut input);
            if framed.fill_buf()?.starts_with(&LZ4_FRAME_MAGIC) {
                drain(lz4_flex::frame::FrameDecoder::new(framed), limit)
            } else {
                None
            }
        }
    };
    r.at = data.end - input.limit();
    Ok(inflated.is_some_and(|n| n > declared))
}

const LZ4_FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// Bytes `r` yields, read into nothing, up to `limit`; `None` if it fails
/// first (a corrupt stream, for the decoder to refuse).
fn drain(r: impl Read, limit: u64) -> Option<u64> {
    std::io::copy(&mut r.take(limit), &mut std::io::sink()).ok()
}

/// A `Read` counting the bytes it gave.
struct Counted<'a, R> {
    r: &'a mut R,
    n: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

const DATA_PAGE: i32 = 0;
const INDEX_PAGE: i32 = 1;
const DICTIONARY_PAGE: i32 = 2;
const DATA_PAGE_V2: i32 = 3;

/// The fields of a Thrift `PageHeader` the checks need.
struct Header {
    kind: i32,
    uncompressed: i32,
    compressed: i32,
    /// `DictionaryPageHeader.num_values`.
    dictionary_values: Option<i32>,
    /// A v2 page's definition and repetition level bytes (not compressed).
    levels: (i32, i32),
    /// Whether the data (after a v2 page's levels) is compressed.
    compressed_body: bool,
}

/// Reads a page header; one without its type and sizes (which the
/// decoder requires) is refused.
fn read_header<R: Read>(t: &mut Thrift<R>) -> Result<Header, ThriftFault> {
    let mut h = Header {
        kind: -1,
        uncompressed: -1,
        compressed: -1,
        dictionary_values: None,
        levels: (0, 0),
        compressed_body: true,
    };
    let mut required = [false; 3];
    t.walk(Kind::PageHeader, 0, &mut |kind, id, v| {
        // i32 fields, truncated as the decoder reads them.
        let v32 = v as i32;
        if kind == Kind::PageHeader && (1..=3).contains(&id) {
            required[id as usize - 1] = true;
        }
        match (kind, id) {
            (Kind::PageHeader, 1) => h.kind = v32,
            (Kind::PageHeader, 2) => h.uncompressed = v32,
            (Kind::PageHeader, 3) => h.compressed = v32,
            (Kind::DictionaryPageHeader, 1) => h.dictionary_values = Some(v32),
            (Kind::DataPageHeaderV2, 5) => h.levels.0 = v32,
            (Kind::DataPageHeaderV2, 6) => h.levels.1 = v32,
            (Kind::DataPageHeaderV2, 7) => h.compressed_body = v != 0,
            _ => {}
        }
    })?;
    if required.contains(&false) {
        return Err(ThriftFault::Missing);
    }
    Ok(h)
}

// Thrift compact protocol types.
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;
/// Values nested deeper are refused (the walk recurses; the decoder gives
/// up at 64).
const MAX_DEPTH: usize = 32;

/// The Thrift structs of `parquet.thrift` the decoder reads before it
/// builds a schema or decodes a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    FileMetaData,
    SchemaElement,
    KeyValue,
    ColumnOrder,
    LogicalType,
    Decimal,
    Time,
    TimeUnit,
    Integer,
    Variant,
    Geometry,
    Geography,
    Empty,
    PageHeader,
    DataPageHeader,
    DictionaryPageHeader,
    DataPageHeaderV2,
}

/// How the decoder reads a field: by its id, whatever type it is written
/// as. A walk that skipped it by the written type would go out of step
/// with the decoder, so a known field written as another type is refused.
#[derive(Clone, Copy, Debug)]
enum Spec {
    /// A varint (i16, i32, i64 or an enum).
    Int,
    Bool,
    Byte,
    Binary,
    Struct(Kind),
    List(Kind),
}

impl Spec {
    /// The field of `kind` numbered `id`, or `None` for one the decoder
    /// skips by its written type.
    fn of(kind: Kind, id: i16) -> Option<Spec> {
        use Kind::*;
        use Spec::{Binary, Bool, Byte, Int, List, Struct};
        Some(match (kind, id) {
            (FileMetaData, 1 | 3) => Int,
            (FileMetaData, 2) => List(SchemaElement),
            (FileMetaData, 5) => List(KeyValue),
            (FileMetaData, 6) => Binary,
            (FileMetaData, 7) => List(ColumnOrder),
            (SchemaElement, 1..=3 | 5..=9) => Int,
            (SchemaElement, 4) => Binary,
            (SchemaElement, 10) => Struct(LogicalType),
            (KeyValue, 1 | 2) => Binary,
            (ColumnOrder, 1..=3) => Struct(Empty),
            (LogicalType, 5) => Struct(Decimal),
            (LogicalType, 7 | 8) => Struct(Time),
            (LogicalType, 10) => Struct(Integer),
            (LogicalType, 16) => Struct(Variant),
            (LogicalType, 17) => Struct(Geometry),
            (LogicalType, 18) => Struct(Geography),
            (LogicalType, 1..=4 | 6 | 11..=15 | 19) => Struct(Empty),
            (Decimal, 1 | 2) => Int,
            (Time, 1) => Bool,
            (Time, 2) => Struct(TimeUnit),
            (TimeUnit, 1..=3) => Struct(Empty),
            (Integer, 1) | (Variant, 1) => Byte,
            (Integer, 2) => Bool,
            (Geometry, 1) | (Geography, 1) => Binary,
            (Geography, 2) => Int,
            (PageHeader, 1..=4) => Int,
            (PageHeader, 5) => Struct(DataPageHeader),
            (PageHeader, 6) => Struct(Empty),
            (PageHeader, 7) => Struct(DictionaryPageHeader),
            (PageHeader, 8) => Struct(DataPageHeaderV2),
            (DataPageHeader, 1..=4) => Int,
            (DictionaryPageHeader, 1 | 2) => Int,
            (DictionaryPageHeader, 3) => Bool,
            (DataPageHeaderV2, 1..=6) => Int,
            (DataPageHeaderV2, 7) => Bool,
            _ => return None,
        })
    }

    /// Whether written type `ty` is read as this field would be.
    fn check(self, id: i16, ty: u8) -> Result<(), ThriftFault> {
        let ok = match self {
            Spec::Int => matches!(ty, I16 | I32 | I64),
            Spec::Bool => matches!(ty, TRUE | FALSE),
            Spec::Byte => ty == BYTE,
            Spec::Binary => ty == BINARY,
            Spec::Struct(_) => ty == STRUCT,
            Spec::List(_) => matches!(ty, LIST | SET),
        };
        if ok {
            Ok(())
        } else {
            Err(ThriftFault::FieldType { id, ty })
        }
    }
}

/// A reader of the Thrift compact protocol that keeps nothing it skips,
/// reading as the `parquet` decoder does.
struct Thrift<R> {
    r: R,
}

impl<R: Read> Thrift<R> {
    fn new(r: R) -> Thrift<R> {
        Thrift { r }
    }

    fn byte(&mut self) -> Result<u8, ThriftFault> {
        let mut b = [0u8; 1];
        match self.r.read_exact(&mut b) {
            Ok(()) => Ok(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ThriftFault::Eof),
            Err(e) => Err(ThriftFault::Io(e)),
        }
    }

    fn varint(&mut self) -> Result<u64, ThriftFault> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ThriftFault::Varint)
    }

    /// A zigzag integer (i16, i32 and i64 alike).
    fn int(&mut self) -> Result<i64, ThriftFault> {
        let z = self.varint()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    /// The next field's id and type, `None` at the struct's end (a type of
    /// 0, whatever the byte's upper bits).
    fn field(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, ThriftFault> {
        let b = self.byte()?;
        let ty = b & 0x0f;
        if ty == 0 {
            return Ok(None);
        }
        if ty > UUID {
            return Err(ThriftFault::Type(ty));
        }
        let id = match b >> 4 {
            // Truncated as the decoder keeps it.
            0 => self.int()? as i16,
            delta => last
                .checked_add(i16::from(delta))
                .ok_or(ThriftFault::FieldId)?,
        };
        *last = id;
        Ok(Some((id, ty)))
    }

    /// A list's (or set's) element type and length.
    fn list(&mut self) -> Result<(u8, usize), ThriftFault> {
        let b = self.byte()?;
        if b == 0 {
            return Ok((BYTE, 0));
        }
        let n = match b >> 4 {
            15 => i32::try_from(self.varint()?).map_err(|_| ThriftFault::Varint)?,
            n => i32::from(n),
        };
        Ok((
            b & 0x0f,
            usize::try_from(n).map_err(|_| ThriftFault::Varint)?,
        ))
    }

    /// Walks a struct of `kind` inside `depth` values, giving `visit` the
    /// integer and boolean fields the decoder reads.
    fn walk(
        &mut self,
        kind: Kind,
        depth: usize,
        visit: &mut dyn FnMut(Kind, i16, i64),
    ) -> Result<(), ThriftFault> {
        if depth > MAX_DEPTH {
            return Err(ThriftFault::Depth);
        }
        let mut last = 0;
        while let Some((id, ty)) = self.field(&mut last)? {
            self.value(kind, id, ty, depth, visit)?;
        }
        Ok(())
    }

    /// Reads field `id` of `kind`, written as type `ty`.
    fn value(
        &mut self,
        kind: Kind,
        id: i16,
        ty: u8,
        depth: usize,
        visit: &mut dyn FnMut(Kind, i16, i64),
    ) -> Result<(), ThriftFault> {
        let Some(spec) = Spec::of(kind, id) else {
            return self.skip(ty, depth);
        };
        spec.check(id, ty)?;
        match spec {
            Spec::Int => {
                let v = self.int()?;
                visit(kind, id, v);
            }
            Spec::Bool => visit(kind, id, i64::from(ty == TRUE)),
            Spec::Byte | Spec::Binary => self.skip(ty, depth)?,
            Spec::Struct(k) => self.walk(k, depth + 1, visit)?,
            Spec::List(k) => {
                let (elem, n) = self.list()?;
                if n > 0 && elem != STRUCT {
                    return Err(ThriftFault::FieldType { id, ty: elem });
                }
                for _ in 0..n {
                    self.walk(k, depth + 1, visit)?;
                }
            }
        }
        Ok(())
    }

    /// Skips a value of type `ty` inside `depth` values, as the decoder
    /// skips a field it does not know (a boolean in a list takes no byte
    /// there, as in the decoder).
    fn skip(&mut self, ty: u8, depth: usize) -> Result<(), ThriftFault> {
        if depth > MAX_DEPTH {
            return Err(ThriftFault::Depth);
        }
        match ty {
            TRUE | FALSE => {}
            BYTE => {
                self.byte()?;
            }
            I16 | I32 | I64 => {
                self.varint()?;
            }
            DOUBLE => self.bytes(8)?,
            UUID => self.bytes(16)?,
            BINARY => {
                let n = self.varint()?;
                self.bytes(n)?;
            }
            LIST | SET => {
                let (elem, n) = self.list()?;
                let elem = element(elem)?;
                if !matches!(elem, TRUE | FALSE) {
                    for _ in 0..n {
                        self.skip(elem, depth + 1)?;
                    }
                }
            }
            MAP => {
                let n = i32::try_from(self.varint()?).map_err(|_| ThriftFault::Varint)?;
                if n > 0 {
                    let kv = self.byte()?;
                    let (k, v) = (element(kv >> 4)?, element(kv & 0x0f)?);
                    // Booleans take no byte here: nothing to walk.
                    let n = if matches!((k, v), (TRUE, TRUE)) { 0 } else { n };
                    for _ in 0..n {
                        self.skip(k, depth + 1)?;
                        self.skip(v, depth + 1)?;
                    }
                }
            }
            STRUCT => {
                let mut last = 0;
                while let Some((_, t)) = self.field(&mut last)? {
                    self.skip(t, depth + 1)?;
                    last = 0;
                }
            }
            t => return Err(ThriftFault::Type(t)),
        }
        Ok(())
    }

    /// Reads `n` bytes into nothing.
    fn bytes(&mut self, n: u64) -> Result<(), ThriftFault> {
        let copied = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())
            .map_err(ThriftFault::Io)?;
        if copied < n {
            return Err(ThriftFault::Eof);
        }
        Ok(())
    }
}

/// A list element's type as a field type (a boolean is 1 or 2).
fn element(t: u8) -> Result<u8, ThriftFault> {
    match t {
        1 | 2 => Ok(TRUE),
        3..=13 => Ok(t),
        t => Err(ThriftFault::Type(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thrift_walks_nested_values_and_refuses_deep_nesting() {
        // struct { 1: i32 = -3, 2: list<struct{1: binary "ab"}> [1], 3: true }
        let ok = [
            0x15, 0x05, 0x19, 0x1c, 0x18, 0x02, b'a', b'b', 0x00, 0x11, 0x00,
        ];
        Thrift::new(&ok[..]).skip(STRUCT, 0).expect("walks");
        // 40 structs, each the first field of the one before.
        let mut deep = vec![0x1c; 40];
        deep.extend([0u8; 41]);
        assert!(matches!(
            Thrift::new(&deep[..]).skip(STRUCT, 0),
            Err(ThriftFault::Depth)
        ));
        // A list declaring 2^30 elements ends at the end of the bytes.
        let long = [0x19, 0xf5, 0x80, 0x80, 0x80, 0x80, 0x04];
        assert!(matches!(
            Thrift::new(&long[..]).skip(STRUCT, 0),
            Err(ThriftFault::Eof)
        ));
    }

    #[test]
    fn a_known_field_written_as_another_type_is_refused() {
        // PageHeader { 2: binary "xy" }: the decoder would read a varint.
        let h = [0x28, 0x02, b'x', b'y', 0x00];
        assert!(matches!(
            read_header(&mut Thrift::new(&h[..])),
            Err(ThriftFault::FieldType { id: 2, ty: BINARY })
        ));
        // PageHeader { 1: i32 = 2, 2: i64 = 5, 3: i32 = 3 (as i16),
        // 7: { 1: i32 = 4 } }: read as the decoder reads it.
        let h = [
            0x15, 0x04, 0x16, 0x0a, 0x14, 0x06, 0x4c, 0x15, 0x08, 0x00, 0x00,
        ];
        let h = read_header(&mut Thrift::new(&h[..])).expect("header");
        assert_eq!(
            (h.kind, h.uncompressed, h.compressed, h.dictionary_values),
            (2, 5, 3, Some(4))
        );
    }
}
