//! The building blocks every dataset's schema and converter share: field
//! constructors (with the IPFIX metadata), the schema's dataset metadata,
//! and the column builders for VNets, timestamps, counters and the tunnel
//! columns. No dataset is defined here; each family's file uses these.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    new_null_array, ArrayRef, BooleanBufferBuilder, Float64Array, StringArray,
    TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::{META_DATASET, META_SCHEMA_VERSION, SCHEMA_VERSION};
use crate::record::TunnelInfo;
use crate::vnet::{VnetId, VnetMap};

pub(super) fn tunnel_fields() -> [Field; 4] {
    use DataType::*;
    [
        field("tunnel_type", Utf8, true, None),
        field("tunnel_id", UInt32, true, None),
        field("outer_src_addr", Utf8, true, None),
        field("outer_dst_addr", Utf8, true, None),
    ]
}

/// A column of addresses as text (`Display`'s form), written straight
/// into the column's value and offset buffers: no `String` per value, no
/// builder call or UTF-8 check per value (the whole buffer is checked
/// once), and IPv4 without the formatter, whose padding support made
/// address text the largest cost of exporting flows (a capped table under
/// a flood exports a record per packet).
pub(super) fn addr_column(
    addrs: impl ExactSizeIterator<Item = Option<std::net::IpAddr>>,
) -> ArrayRef {
    let n = addrs.len();
    let mut values = Vec::with_capacity(n * 15);
    let mut offsets = Vec::with_capacity(n + 1);
    let mut valid = BooleanBufferBuilder::new(n);
    offsets.push(0i32);
    for a in addrs {
        match a {
            Some(std::net::IpAddr::V4(v4)) => push_ipv4(v4, &mut values),
            Some(a) => {
                use std::io::Write;
                // Writing into a Vec cannot fail.
                let _ = write!(values, "{a}");
            }
            None => {}
        }
        valid.append(a.is_some());
        // At most 39 bytes a value, and at most [`super::MAX_BATCH_ROWS`] values:
        // far below i32::MAX (`try_new` would refuse more).
        offsets.push(i32::try_from(values.len()).unwrap_or(i32::MAX));
    }
    let nulls = NullBuffer::new(valid.finish());
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    match StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        values.into(),
        nulls,
    ) {
        Ok(a) => Arc::new(a),
        // Unreachable within `MAX_BATCH_ROWS` (above).
        Err(_) => new_null_array(&DataType::Utf8, n),
    }
}

/// Each octet's decimal digits, left-aligned, and how many there are.
const OCTET_TEXT: [([u8; 3], u8); 256] = {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut o = 0;
    while o < 256 {
        let (h, d, u) = ((o / 100) as u8, (o / 10 % 10) as u8, (o % 10) as u8);
        t[o] = if o >= 100 {
            ([b'0' + h, b'0' + d, b'0' + u], 3)
        } else if o >= 10 {
            ([b'0' + d, b'0' + u, 0], 2)
        } else {
            ([b'0' + u, 0, 0], 1)
        };
        o += 1;
    }
    t
};

/// Appends `a` in dotted-quad form, as `Display` writes it: each
/// octet's digits from a table (the digits by division cost three times
/// as much), copied three bytes at a time into a local buffer (the unused
/// ones are overwritten next; before the last octet at most 12 bytes are
/// written, so the copies stay within its 15), then appended at once: a
/// copy of each octet's own length costs a call to `memcpy` each.
fn push_ipv4(a: std::net::Ipv4Addr, out: &mut Vec<u8>) {
    let mut buf = [0u8; 15];
    let mut n = 0;
    for (i, o) in a.octets().into_iter().enumerate() {
        let (digits, len) = OCTET_TEXT[usize::from(o)];
        buf[n..n + 3].copy_from_slice(&digits);
        n += usize::from(len);
        if i < 3 {
            buf[n] = b'.';
            n += 1;
        }
    }
    out.extend_from_slice(&buf[..n]);
}

pub(super) fn tunnel_columns<'a>(t: impl Iterator<Item = &'a TunnelInfo> + Clone) -> [ArrayRef; 4] {
    let len = t.clone().count();
    if t.clone().all(|x| *x == TunnelInfo::default()) {
        // No tunnel in the batch, the common case: four null columns.
        return [
            new_null_array(&DataType::Utf8, len),
            new_null_array(&DataType::UInt32, len),
            new_null_array(&DataType::Utf8, len),
            new_null_array(&DataType::Utf8, len),
        ];
    }
    [
        Arc::new(StringArray::from(
            t.clone()
                .map(|x| x.tunnel_type.as_deref())
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt32Array::from(
            t.clone().map(|x| x.tunnel_id).collect::<Vec<_>>(),
        )),
        addr_column(ExactLen(t.clone().map(|x| x.outer_src_addr), len)),
        addr_column(ExactLen(t.map(|x| x.outer_dst_addr), len)),
    ]
}

/// An iterator with its length told (the tunnel columns take any
/// iterator; the address column reserves by its length).
struct ExactLen<I>(I, usize);

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let x = self.0.next()?;
        self.1 = self.1.saturating_sub(1);
        Some(x)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}

/// The Arrow type of every time column: microseconds, UTC.
pub(super) fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A column, with its IPFIX information element (name, id) when one exists.
pub(super) fn field(
    name: &str,
    dt: DataType,
    nullable: bool,
    ipfix: Option<(&str, &str)>,
) -> Field {
    let f = Field::new(name, dt, nullable);
    match ipfix {
        Some((ie, id)) => f.with_metadata(HashMap::from([
            ("ipfix_name".to_string(), ie.to_string()),
            ("ipfix_id".to_string(), id.to_string()),
        ])),
        None => f,
    }
}

/// A dataset's schema: its fields plus the dataset name and schema version
/// in the metadata.
pub(super) fn schema(dataset: &str, fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields).with_metadata(HashMap::from([
        (META_DATASET.to_string(), dataset.to_string()),
        (META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
    ])))
}

/// The `vnet` column: the name of each record's VNet.
pub(super) fn vnet_column(ids: impl Iterator<Item = VnetId>, vnets: &VnetMap) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        ids.map(|v| vnets.get(v).name.as_str()),
    ))
}

/// The `role` column: the role of each record's VNet.
pub(super) fn role_column(ids: impl Iterator<Item = VnetId>, vnets: &VnetMap) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        ids.map(|v| vnets.get(v).role.as_str()),
    ))
}

pub(super) fn ts_col(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

pub(super) fn ts_opt_col(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

pub(super) fn u64_col(records: &[impl Sized], f: impl Fn(usize) -> u64) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values((0..records.len()).map(f)))
}

/// A float column where NaN (no value: no MOS without enough packets) is null.
pub(super) fn nan_to_null(v: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from(
        v.map(|x| (!x.is_nan()).then_some(x)).collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn every_octet_width_in_every_place_is_displays() {
        let widths = [0u8, 7, 10, 99, 100, 255];
        let mut buf = Vec::new();
        for a in widths {
            for b in widths {
                for c in widths {
                    for d in widths {
                        let ip = std::net::Ipv4Addr::new(a, b, c, d);
                        buf.clear();
                        super::push_ipv4(ip, &mut buf);
                        assert_eq!(buf, ip.to_string().as_bytes());
                    }
                }
            }
        }
    }

    proptest! {
        /// The address text is `Display`'s, for every IPv4 and IPv6 address.
        #[test]
        fn address_text_is_displays(v4 in any::<u32>(), v6 in any::<u128>()) {
            use arrow::array::{Array, StringArray};
            let addrs = [
                Some(std::net::IpAddr::from(std::net::Ipv4Addr::from(v4))),
                Some(std::net::IpAddr::from(std::net::Ipv6Addr::from(v6))),
                None,
            ];
            let col = super::addr_column(addrs.into_iter());
            let col = col.as_any().downcast_ref::<StringArray>().map(|c| {
                (0..c.len()).map(|i| c.is_valid(i).then(|| c.value(i).to_string())).collect::<Vec<_>>()
            });
            prop_assert_eq!(col, Some(addrs.iter().map(|a| a.map(|a| a.to_string())).collect::<Vec<_>>()));
        }
    }
}
