//! PostgreSQL types to Arrow, and the decoding of PostgreSQL's binary wire
//! format into Arrow arrays.
//!
//! | PostgreSQL | Arrow |
//! | --- | --- |
//! | `int2`, `int4`, `int8` | `Int16`, `Int32`, `Int64` |
//! | `float4`, `float8` | `Float32`, `Float64` |
//! | `numeric(p,s)`, p ≤ 38, 0 ≤ s ≤ p or s < 0 | `Decimal128(p, s)` |
//! | `numeric` without precision, or p > 38, or s > p | `Utf8`: the exact decimal text (`NaN`, `Infinity` included) |
//! | `bool` | `Boolean` |
//! | `text`, `varchar`, `char(n)`, `name`, enums, `xml` | `Utf8` |
//! | `json`, `jsonb` | `Utf8` (the JSON text) |
//! | `bytea` | `Binary` |
//! | `date` | `Date32` |
//! | `time` | `Time64(µs)` |
//! | `timestamp` | `Timestamp(µs, None)` |
//! | `timestamptz` | `Timestamp(µs, "UTC")` |
//! | `interval` | `Interval(MonthDayNano)` |
//! | `uuid` | `Utf8`, lowercase hyphenated (readable and comparable in SQL; Arrow has no UUID type that every reader knows) |
//! | one-dimensional arrays of the above | `List` of the element type (lower bounds are not kept) |
//! | domains | as their base type |
//!
//! Unconstrained `numeric` is text rather than `Decimal128(38, 10)` because
//! a fixed scale would round or refuse values that PostgreSQL holds exactly
//! (an `avg()` has 16 or more fractional digits); text keeps every value as
//! it is. Cast in the query (`x::numeric(18,2)`) to get a decimal.
//!
//! Values Arrow cannot hold fail the read with [`ConnectorError::BadData`]
//! naming the column: `infinity` dates and timestamps, `NaN` in a
//! `numeric(p,s)`, multi-dimensional arrays. Any other type (ranges,
//! composites, geometric types, `timetz`, `money`, …) fails when the read
//! opens, with [`ConnectorError::Unsupported`] naming the column and type.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder,
    ListArray, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use postgres::types::{FromSql, Kind, Type};
use vega_connectors::ConnectorError;

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The Arrow-side kind of a scalar PostgreSQL value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    /// text, varchar, char(n), name, enums, xml: UTF-8 bytes.
    Text,
    /// json: UTF-8 bytes.
    Json,
    /// jsonb: a version byte, then UTF-8 bytes.
    Jsonb,
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Interval,
    Uuid,
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// numeric without a usable precision: exact text.
    NumericText,
}

/// The Arrow-side kind of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Scalar(Scalar),
    List(Scalar),
}

impl Scalar {
    pub fn data_type(self) -> DataType {
        match self {
            Scalar::Int2 => DataType::Int16,
            Scalar::Int4 => DataType::Int32,
            Scalar::Int8 => DataType::Int64,
            Scalar::Float4 => DataType::Float32,
            Scalar::Float8 => DataType::Float64,
            Scalar::Bool => DataType::Boolean,
            Scalar::Text | Scalar::Json | Scalar::Jsonb | Scalar::Uuid | Scalar::NumericText => {
                DataType::Utf8
            }
            Scalar::Bytea => DataType::Binary,
            Scalar::Date => DataType::Date32,
            Scalar::Time => DataType::Time64(TimeUnit::Microsecond),
            Scalar::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Scalar::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Scalar::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            Scalar::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        }
    }
}

impl ColumnType {
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Scalar(s) => s.data_type(),
            ColumnType::List(s) => {
                DataType::List(Arc::new(Field::new("item", s.data_type(), true)))
            }
        }
    }

    /// Maps a result column's type. `typmod` is the column's type modifier
    /// (-1 when unknown); for arrays it applies to the elements.
    pub fn from_pg(column: &str, ty: &Type, typmod: i32) -> Result<Self, ConnectorError> {
        match ty.kind() {
            Kind::Array(elem) => match scalar_of(elem, typmod) {
                Some(s) => Ok(ColumnType::List(s)),
                None => Err(unsupported(column, ty)),
            },
            Kind::Domain(base) => ColumnType::from_pg(column, base, typmod),
            _ => scalar_of(ty, typmod)
                .map(ColumnType::Scalar)
                .ok_or_else(|| unsupported(column, ty)),
        }
    }

    /// A builder for one batch of this column.
    pub fn builder(self, capacity: usize) -> ColumnBuilder {
        match self {
            ColumnType::Scalar(s) => ColumnBuilder::Scalar(ScalarBuilder::new(s, capacity)),
            ColumnType::List(s) => ColumnBuilder::List {
                elem: ScalarBuilder::new(s, capacity),
                offsets: {
                    let mut o = Vec::with_capacity(capacity + 1);
                    o.push(0);
                    o
                },
                validity: Vec::with_capacity(capacity),
                scalar: s,
            },
        }
    }
}

fn unsupported(column: &str, ty: &Type) -> ConnectorError {
    ConnectorError::Unsupported {
        message: format!(
            "column '{column}' has type {}.{}, which the PostgreSQL connector cannot read; cast it in a query source (e.g. to text)",
            ty.schema(),
            ty.name()
        ),
    }
}

fn scalar_of(ty: &Type, typmod: i32) -> Option<Scalar> {
    match ty.kind() {
        Kind::Enum(_) => return Some(Scalar::Text),
        Kind::Domain(base) => return scalar_of(base, typmod),
        Kind::Simple => {}
        _ => return None,
    }
    let s = match *ty {
        Type::INT2 => Scalar::Int2,
        Type::INT4 => Scalar::Int4,
        Type::INT8 => Scalar::Int8,
        Type::FLOAT4 => Scalar::Float4,
        Type::FLOAT8 => Scalar::Float8,
        Type::BOOL => Scalar::Bool,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::XML => Scalar::Text,
        Type::JSON => Scalar::Json,
        Type::JSONB => Scalar::Jsonb,
        Type::BYTEA => Scalar::Bytea,
        Type::DATE => Scalar::Date,
        Type::TIME => Scalar::Time,
        Type::TIMESTAMP => Scalar::Timestamp,
        Type::TIMESTAMPTZ => Scalar::Timestamptz,
        Type::INTERVAL => Scalar::Interval,
        Type::UUID => Scalar::Uuid,
        Type::NUMERIC => numeric_scalar(typmod),
        _ => return None,
    };
    Some(s)
}

/// `numeric(p,s)` from its type modifier: `((p << 16) | (s & 0x7ff)) + 4`,
/// the scale an 11-bit signed number.
fn numeric_scalar(typmod: i32) -> Scalar {
    if typmod < 4 {
        return Scalar::NumericText;
    }
    let t = typmod - 4;
    let precision = (t >> 16) & 0xffff;
    let scale = ((t & 0x7ff) ^ 1024) - 1024;
    if (1..=38).contains(&precision) && scale <= precision && scale >= -38 {
        Scalar::Decimal {
            precision: precision as u8,
            scale: scale as i8,
        }
    } else {
        Scalar::NumericText
    }
}

/// A raw column value: `None` for NULL, else PostgreSQL's binary encoding.
pub struct Raw<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// Builds one Arrow array of scalars.
pub enum ScalarBuilder {
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Utf8(StringBuilder, Scalar),
    Binary(BinaryBuilder),
    Date32(Date32Builder),
    Time64(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    Decimal(Decimal128Builder, u8, i8),
}

impl ScalarBuilder {
    fn new(s: Scalar, n: usize) -> Self {
        match s {
            Scalar::Int2 => ScalarBuilder::Int16(Int16Builder::with_capacity(n)),
            Scalar::Int4 => ScalarBuilder::Int32(Int32Builder::with_capacity(n)),
            Scalar::Int8 => ScalarBuilder::Int64(Int64Builder::with_capacity(n)),
            Scalar::Float4 => ScalarBuilder::Float32(Float32Builder::with_capacity(n)),
            Scalar::Float8 => ScalarBuilder::Float64(Float64Builder::with_capacity(n)),
            Scalar::Bool => ScalarBuilder::Bool(BooleanBuilder::with_capacity(n)),
            Scalar::Text | Scalar::Json | Scalar::Jsonb | Scalar::Uuid | Scalar::NumericText => {
                ScalarBuilder::Utf8(StringBuilder::with_capacity(n, n * 16), s)
            }
            Scalar::Bytea => ScalarBuilder::Binary(BinaryBuilder::with_capacity(n, n * 16)),
            Scalar::Date => ScalarBuilder::Date32(Date32Builder::with_capacity(n)),
            Scalar::Time => ScalarBuilder::Time64(Time64MicrosecondBuilder::with_capacity(n)),
            Scalar::Timestamp => {
                ScalarBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(n))
            }
            Scalar::Timestamptz => ScalarBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            ),
            Scalar::Interval => {
                ScalarBuilder::Interval(IntervalMonthDayNanoBuilder::with_capacity(n))
            }
            Scalar::Decimal { precision, scale } => ScalarBuilder::Decimal(
                Decimal128Builder::with_capacity(n)
                    .with_precision_and_scale(precision, scale)
                    .expect("precision and scale are checked by numeric_scalar"),
                precision,
                scale,
            ),
        }
    }

    /// Appends one value (`None` = NULL). Errors describe the value, not
    /// the column; the caller adds the column.
    pub fn append(&mut self, raw: Option<&[u8]>) -> Result<(), String> {
        let Some(b) = raw else {
            self.append_null();
            return Ok(());
        };
        match self {
            ScalarBuilder::Int16(x) => x.append_value(i16::from_be_bytes(fixed(b)?)),
            ScalarBuilder::Int32(x) => x.append_value(i32::from_be_bytes(fixed(b)?)),
            ScalarBuilder::Int64(x) => x.append_value(i64::from_be_bytes(fixed(b)?)),
            ScalarBuilder::Float32(x) => x.append_value(f32::from_be_bytes(fixed(b)?)),
            ScalarBuilder::Float64(x) => x.append_value(f64::from_be_bytes(fixed(b)?)),
            ScalarBuilder::Bool(x) => x.append_value(u8::from_be_bytes(fixed(b)?) != 0),
            ScalarBuilder::Utf8(x, kind) => match kind {
                Scalar::Jsonb => match b.split_first() {
                    Some((1, rest)) => x.append_value(utf8(rest)?),
                    _ => return Err("unknown jsonb binary version".into()),
                },
                Scalar::Uuid => x.append_value(format_uuid(&fixed::<16>(b)?)),
                Scalar::NumericText => x.append_value(Numeric::decode(b)?.to_text()),
                _ => x.append_value(utf8(b)?),
            },
            ScalarBuilder::Binary(x) => x.append_value(b),
            ScalarBuilder::Date32(x) => {
                let days = i32::from_be_bytes(fixed(b)?);
                if days == i32::MAX || days == i32::MIN {
                    return Err("the date is infinity, which Arrow cannot hold".into());
                }
                let d = days
                    .checked_add(PG_EPOCH_DAYS)
                    .ok_or("the date is out of Arrow's range")?;
                x.append_value(d)
            }
            ScalarBuilder::Time64(x) => x.append_value(i64::from_be_bytes(fixed(b)?)),
            ScalarBuilder::Timestamp(x) => {
                let us = i64::from_be_bytes(fixed(b)?);
                if us == i64::MAX || us == i64::MIN {
                    return Err("the timestamp is infinity, which Arrow cannot hold".into());
                }
                let v = us
                    .checked_add(PG_EPOCH_MICROS)
                    .ok_or("the timestamp is out of Arrow's range")?;
                x.append_value(v)
            }
            ScalarBuilder::Interval(x) => {
                let v: [u8; 16] = fixed(b)?;
                let (us, rest) = v.split_at(8);
                let (days, months) = rest.split_at(4);
                let us = i64::from_be_bytes(us.try_into().map_err(|_| "bad interval")?);
                let days = i32::from_be_bytes(days.try_into().map_err(|_| "bad interval")?);
                let months = i32::from_be_bytes(months.try_into().map_err(|_| "bad interval")?);
                let nanos = us
                    .checked_mul(1000)
                    .ok_or("the interval is out of Arrow's range")?;
                x.append_value(IntervalMonthDayNano::new(months, days, nanos))
            }
            ScalarBuilder::Decimal(x, precision, scale) => {
                let n = Numeric::decode(b)?;
                x.append_value(n.to_decimal(*precision, *scale)?)
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            ScalarBuilder::Int16(x) => x.append_null(),
            ScalarBuilder::Int32(x) => x.append_null(),
            ScalarBuilder::Int64(x) => x.append_null(),
            ScalarBuilder::Float32(x) => x.append_null(),
            ScalarBuilder::Float64(x) => x.append_null(),
            ScalarBuilder::Bool(x) => x.append_null(),
            ScalarBuilder::Utf8(x, _) => x.append_null(),
            ScalarBuilder::Binary(x) => x.append_null(),
            ScalarBuilder::Date32(x) => x.append_null(),
            ScalarBuilder::Time64(x) => x.append_null(),
            ScalarBuilder::Timestamp(x) => x.append_null(),
            ScalarBuilder::Interval(x) => x.append_null(),
            ScalarBuilder::Decimal(x, _, _) => x.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ScalarBuilder::Int16(x) => Arc::new(x.finish()),
            ScalarBuilder::Int32(x) => Arc::new(x.finish()),
            ScalarBuilder::Int64(x) => Arc::new(x.finish()),
            ScalarBuilder::Float32(x) => Arc::new(x.finish()),
            ScalarBuilder::Float64(x) => Arc::new(x.finish()),
            ScalarBuilder::Bool(x) => Arc::new(x.finish()),
            ScalarBuilder::Utf8(x, _) => Arc::new(x.finish()),
            ScalarBuilder::Binary(x) => Arc::new(x.finish()),
            ScalarBuilder::Date32(x) => Arc::new(x.finish()),
            ScalarBuilder::Time64(x) => Arc::new(x.finish()),
            ScalarBuilder::Timestamp(x) => Arc::new(x.finish()),
            ScalarBuilder::Interval(x) => Arc::new(x.finish()),
            ScalarBuilder::Decimal(x, _, _) => Arc::new(x.finish()),
        }
    }
}

/// Builds one Arrow array of a column.
pub enum ColumnBuilder {
    Scalar(ScalarBuilder),
    List {
        elem: ScalarBuilder,
        offsets: Vec<i32>,
        validity: Vec<bool>,
        scalar: Scalar,
    },
}

impl ColumnBuilder {
    /// Appends one value (`None` = NULL).
    pub fn append(&mut self, raw: Option<&[u8]>) -> Result<(), String> {
        match self {
            ColumnBuilder::Scalar(s) => s.append(raw),
            ColumnBuilder::List {
                elem,
                offsets,
                validity,
                ..
            } => {
                let last = offsets.last().copied().unwrap_or(0);
                match raw {
                    None => {
                        validity.push(false);
                        offsets.push(last);
                    }
                    Some(b) => {
                        let n = decode_array(b, |v| elem.append(v))?;
                        let n = i32::try_from(n).map_err(|_| "array too long")?;
                        validity.push(true);
                        offsets.push(last.checked_add(n).ok_or("arrays too long for a batch")?);
                    }
                }
                Ok(())
            }
        }
    }

    pub fn finish(&mut self) -> Result<ArrayRef, String> {
        match self {
            ColumnBuilder::Scalar(s) => Ok(s.finish()),
            ColumnBuilder::List {
                elem,
                offsets,
                validity,
                scalar,
            } => {
                let values = elem.finish();
                let field = Arc::new(Field::new("item", scalar.data_type(), true));
                let offsets =
                    OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
                let nulls = NullBuffer::from(std::mem::take(validity));
                let list = ListArray::try_new(field, offsets, values, Some(nulls))
                    .map_err(|e| e.to_string())?;
                Ok(Arc::new(list))
            }
        }
    }
}

/// Decodes a binary array, calling `each` for every element; returns the
/// element count. Only one-dimensional (or empty) arrays are accepted.
fn decode_array(
    b: &[u8],
    mut each: impl FnMut(Option<&[u8]>) -> Result<(), String>,
) -> Result<usize, String> {
    let mut r = Reader(b);
    let ndim = r.i32()?;
    let _has_nulls = r.i32()?;
    let _elem_oid = r.i32()?;
    if ndim == 0 {
        return Ok(0);
    }
    if ndim != 1 {
        return Err(format!(
            "a {ndim}-dimensional array; only one-dimensional arrays are supported"
        ));
    }
    let len = r.i32()?;
    let _lower_bound = r.i32()?;
    let len = usize::try_from(len).map_err(|_| "negative array length")?;
    for _ in 0..len {
        let n = r.i32()?;
        if n < 0 {
            each(None)?;
        } else {
            let v = r.take(n as usize)?;
            each(Some(v))?;
        }
    }
    Ok(len)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated value".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(fixed(self.take(4)?)?))
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(fixed(self.take(2)?)?))
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(fixed(self.take(2)?)?))
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

fn utf8(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "text that is not valid UTF-8".to_string())
}

fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// PostgreSQL's binary `numeric`: base-10000 digits, the weight of the
/// first digit, sign and display scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numeric {
    special: Option<&'static str>,
    negative: bool,
    weight: i16,
    dscale: u16,
    digits: Vec<i16>,
}

impl Numeric {
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let mut r = Reader(b);
        let ndigits = r.i16()?;
        let weight = r.i16()?;
        let sign = r.u16()?;
        let dscale = r.u16()?;
        let special = match sign {
            0x0000 | 0x4000 => None,
            0xC000 => Some("NaN"),
            0xD000 => Some("Infinity"),
            0xF000 => Some("-Infinity"),
            other => return Err(format!("unknown numeric sign {other:#x}")),
        };
        let n = usize::try_from(ndigits).map_err(|_| "negative digit count")?;
        let mut digits = Vec::with_capacity(n);
        for _ in 0..n {
            let d = r.i16()?;
            if !(0..10000).contains(&d) {
                return Err(format!("bad numeric digit {d}"));
            }
            digits.push(d);
        }
        Ok(Numeric {
            special,
            negative: sign == 0x4000,
            weight,
            dscale,
            digits,
        })
    }

    /// The base-10000 digit at power `10000^power`.
    fn digit_at(&self, power: i32) -> i16 {
        let index = i32::from(self.weight) - power;
        usize::try_from(index)
            .ok()
            .and_then(|i| self.digits.get(i).copied())
            .unwrap_or(0)
    }

    /// The exact decimal text, with `dscale` fractional digits as
    /// PostgreSQL prints it.
    pub fn to_text(&self) -> String {
        if let Some(s) = self.special {
            return s.to_string();
        }
        let mut out = String::new();
        if self.negative {
            out.push('-');
        }
        if self.weight < 0 {
            out.push('0');
        } else {
            for power in (0..=i32::from(self.weight)).rev() {
                let d = self.digit_at(power);
                if power == i32::from(self.weight) {
                    out.push_str(&d.to_string());
                } else {
                    out.push_str(&format!("{d:04}"));
                }
            }
        }
        if self.dscale > 0 {
            out.push('.');
            let mut frac = String::new();
            let mut power = -1;
            while frac.len() < usize::from(self.dscale) {
                frac.push_str(&format!("{:04}", self.digit_at(power)));
                power -= 1;
            }
            frac.truncate(usize::from(self.dscale));
            out.push_str(&frac);
        }
        out
    }

    /// The value scaled by `10^scale`, if it fits `precision` digits and
    /// has no more fractional digits than `scale`.
    pub fn to_decimal(&self, precision: u8, scale: i8) -> Result<i128, String> {
        if let Some(s) = self.special {
            return Err(format!("numeric {s} cannot be held by a decimal"));
        }
        let mut acc: i128 = 0;
        for (i, &d) in self.digits.iter().enumerate() {
            if d == 0 {
                continue;
            }
            let exp = 4 * (i32::from(self.weight) - i as i32) + i32::from(scale);
            let d = i128::from(d);
            let term = if exp >= 0 {
                10i128
                    .checked_pow(exp as u32)
                    .and_then(|p| p.checked_mul(d))
                    .ok_or_else(|| self.overflow(precision, scale))?
            } else {
                let div = 10i128
                    .checked_pow((-exp) as u32)
                    .filter(|&div| div <= 10_000)
                    .unwrap_or(i128::MAX);
                if d % div != 0 {
                    return Err(format!(
                        "{} has more than {scale} fractional digits",
                        self.to_text()
                    ));
                }
                d / div
            };
            acc = acc
                .checked_add(term)
                .ok_or_else(|| self.overflow(precision, scale))?;
        }
        if acc >= 10i128.pow(u32::from(precision)) {
            return Err(self.overflow(precision, scale));
        }
        Ok(if self.negative { -acc } else { acc })
    }

    fn overflow(&self, precision: u8, scale: i8) -> String {
        format!(
            "{} does not fit numeric({precision},{scale})",
            self.to_text()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(weight: i16, negative: bool, dscale: u16, digits: &[i16]) -> Numeric {
        Numeric {
            special: None,
            negative,
            weight,
            dscale,
            digits: digits.to_vec(),
        }
    }

    #[test]
    fn numeric_text_keeps_scale_and_sign() {
        // 12345.6780 = [1, 2345, 6780], weight 1, dscale 4
        assert_eq!(
            numeric(1, false, 4, &[1, 2345, 6780]).to_text(),
            "12345.6780"
        );
        assert_eq!(numeric(-1, true, 5, &[12]).to_text(), "-0.00120");
        assert_eq!(numeric(0, false, 0, &[]).to_text(), "0");
        assert_eq!(numeric(2, false, 0, &[7]).to_text(), "700000000");
    }

    #[test]
    fn numeric_to_decimal_scales_exactly() {
        let n = numeric(1, true, 2, &[1, 2345, 6700]);
        assert_eq!(n.to_decimal(10, 2).unwrap(), -1_234_567);
        assert!(
            n.to_decimal(6, 2).is_err(),
            "7 digits do not fit precision 6"
        );
        assert!(numeric(0, false, 3, &[1, 1230]).to_decimal(10, 2).is_err());
    }

    #[test]
    fn numeric_typmods_map_to_decimals_or_text() {
        let typmod = |p: i32, s: i32| ((p << 16) | (s & 0x7ff)) + 4;
        assert_eq!(
            numeric_scalar(typmod(12, 2)),
            Scalar::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(numeric_scalar(-1), Scalar::NumericText);
        assert_eq!(numeric_scalar(typmod(60, 2)), Scalar::NumericText);
    }
}
