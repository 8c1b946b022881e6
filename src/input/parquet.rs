//! Flow records in Parquet, as S3 delivery writes them (`….log.parquet`):
//! one typed column per field, named with `_` (`interface_id`,
//! `tcp_flags`), Gzip-compressed pages. Numbers come in whatever integer
//! width the writer chose (AWS: `int32` ports, `int64` protocol and
//! counters; other writers differ) or as digits in strings, text fields as
//! strings, absent values as nulls (`-` in text).
//!
//! Each row becomes a [`Record`] straight from its typed values, with the
//! record's own rules for each field (a port that does not fit is
//! `bad_number`, an address that does not parse `bad_address`), and goes
//! to the pipeline as a parsed line does: one set of rules, one place for
//! bad-time checks. Only the columns correlation uses are read; a column
//! whose type its field cannot have (a float port, an integer address)
//! makes the file invalid, named. The file's schema is its format, whatever
//! `--log-format` says. Rows are read in batches per row group, so memory
//! is a batch, not the file.

use std::io;

use parquet::basic::{LogicalType, Type as PhysicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, DataType};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};

use super::Origin;
use crate::flow::{
    Field, FieldKind, LogFormat, Malformed, Observer, Pipeline, Record, RecordParser,
};

/// The first bytes of every Parquet file.
pub const MAGIC: &[u8; 4] = b"PAR1";
/// Rows read at a time.
const BATCH: usize = 2048;

/// Feeds every row of a Parquet file to the pipeline, reporting the
/// compressed size of each row group read to `progress`.
pub fn feed<R: ChunkReader + 'static>(
    file: R,
    origin: &Origin,
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
    progress: &dyn Fn(u64),
) -> io::Result<()> {
    let mut rows = Rows::open(file)?;
    pipeline.begin_input_with_format(rows.format().clone());
    let parser = RecordParser::new(rows.format().clone());
    let interface = origin.interface();
    let mut batch = Batch::default();
    while rows.read(&mut batch, progress)? {
        for row in 0..batch.len() {
            pipeline.push_record(batch.build(row, &parser), None, interface, observer);
        }
    }
    Ok(())
}

/// A Parquet file's rows, decoded a batch at a time (a batch is memory,
/// not the file): the columns correlation uses, each checked against the
/// type its field can have when the file is opened.
pub struct Rows<R: ChunkReader> {
    reader: SerializedFileReader<R>,
    format: LogFormat,
    /// The columns read: their index in the file and their field.
    used: Vec<(usize, Field)>,
    /// The row group [`Rows::read`] reads.
    next_group: usize,
    /// The row group being read, and its columns' readers.
    group: Option<usize>,
    columns: Vec<ColumnCursor>,
    rows_left: usize,
}

impl<R: ChunkReader + 'static> Rows<R> {
    pub fn open(file: R) -> io::Result<Rows<R>> {
        let reader = SerializedFileReader::new(file).map_err(invalid)?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let mut names = Vec::new();
        for column in schema.columns() {
            if column.max_rep_level() > 0 {
                return Err(invalid_text(format!(
                    "column `{}` is repeated: flow logs are flat tables",
                    column.name()
                )));
            }
            names.push(column.name().to_string());
        }
        let format = LogFormat::parse(&names.join(" ")).map_err(|error| {
            invalid_text(format!("the columns are not a flow log format: {error}"))
        })?;
        // The columns read: those correlation uses, each of a type its field can have.
        let mut used = Vec::new();
        for (index, (column, field)) in schema.columns().iter().zip(format.fields()).enumerate() {
            let kind = FieldKind::of(field);
            let physical = column.physical_type();
            let fits = match kind {
                FieldKind::Unused => continue,
                FieldKind::Number => matches!(
                    physical,
                    PhysicalType::INT32 | PhysicalType::INT64 | PhysicalType::BYTE_ARRAY
                ),
                FieldKind::Text => physical == PhysicalType::BYTE_ARRAY,
            };
            if !fits {
                let expected = match kind {
                    FieldKind::Number => "integers",
                    _ => "strings",
                };
                return Err(invalid_text(format!(
                    "column `{}` holds {physical}: flow logs have {expected} there",
                    column.name()
                )));
            }
            used.push((index, field.clone()));
        }
        Ok(Rows {
            reader,
            format,
            used,
            next_group: 0,
            group: None,
            columns: Vec::new(),
            rows_left: 0,
        })
    }

    /// The file's schema as a flow-log format: what its rows are read in.
    pub fn format(&self) -> &LogFormat {
        &self.format
    }

    /// Decodes the next rows into `batch` (its buffers reused); false at
    /// the end of the file. Each row group's compressed size goes to
    /// `progress` when its first rows are read.
    pub fn read(&mut self, batch: &mut Batch, progress: &dyn Fn(u64)) -> io::Result<bool> {
        loop {
            let group = self.next_group;
            if group == self.row_groups() {
                return Ok(false);
            }
            if self.group != Some(group) {
                progress(self.compressed_size(group));
            }
            if self.read_group(group, batch)? {
                return Ok(true);
            }
            self.next_group += 1;
        }
    }

    pub fn row_groups(&self) -> usize {
        self.reader.num_row_groups()
    }

    /// The bytes row group `group` takes in the file.
    pub fn compressed_size(&self, group: usize) -> u64 {
        u64::try_from(self.reader.metadata().row_group(group).compressed_size()).unwrap_or(0)
    }

    /// Decodes the next rows of row group `group` into `batch` (its
    /// buffers reused); false once the group's rows are all read. Row
    /// groups are independent: several readers of one file can decode
    /// different ones.
    pub fn read_group(&mut self, group: usize, batch: &mut Batch) -> io::Result<bool> {
        if self.group != Some(group) {
            let reader = self.reader.get_row_group(group).map_err(invalid)?;
            self.columns = self
                .used
                .iter()
                .map(|(column, field)| {
                    let descriptor = reader.metadata().column(*column).column_descr();
                    let unsigned = matches!(
                        descriptor.logical_type_ref(),
                        Some(LogicalType::Integer(int)) if !int.is_signed
                    );
                    let column = reader.get_column_reader(*column)?;
                    ColumnCursor::new(column, field.clone(), descriptor.max_def_level(), unsigned)
                })
                .collect::<Result<Vec<ColumnCursor>, ParquetError>>()
                .map_err(invalid)?;
            self.rows_left = usize::try_from(reader.metadata().num_rows()).unwrap_or(0);
            self.group = Some(group);
        }
        if self.rows_left == 0 {
            return Ok(false);
        }
        let rows = self.rows_left.min(BATCH);
        let same_fields = batch.columns.len() == self.columns.len()
            && batch
                .columns
                .iter()
                .zip(&self.columns)
                .all(|(column, cursor)| column.field == cursor.field);
        if !same_fields {
            batch.columns = (0..self.columns.len())
                .map(|index| ColumnBatch::of(&self.columns[index], &self.columns[..index]))
                .collect();
        }
        for (cursor, column) in self.columns.iter_mut().zip(&mut batch.columns) {
            cursor.read(rows, column).map_err(invalid)?;
        }
        batch.rows = rows;
        batch.interface = self
            .used
            .iter()
            .position(|(_, field)| *field == Field::InterfaceId);
        self.rows_left -= rows;
        Ok(true)
    }
}

/// Decoded rows of one row group: one typed vector per column read.
#[derive(Default)]
pub struct Batch {
    columns: Vec<ColumnBatch>,
    rows: usize,
    /// Which of `columns` is `interface_id`, if the file has it.
    interface: Option<usize>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// One row's record, or why it is not one, as its line would say.
    pub fn build(&self, row: usize, parser: &RecordParser) -> Result<Record<'_>, Malformed> {
        build(&self.columns, row, parser)
    }

    /// The interface a row names, as its record will have it: `None`
    /// where the record's is `-` (null, empty, spaced or `-` itself), and
    /// the file's own interface then stands in. Bytes, UTF-8 or not.
    pub fn interface(&self, row: usize) -> Option<&[u8]> {
        let value = self.columns[self.interface?].bytes(row)?;
        let absent = value.is_empty() || value == b"-" || value.iter().any(u8::is_ascii_whitespace);
        (!absent).then_some(value)
    }
}

/// One row's record, or why it is not one, as its line would say: the
/// first field in column order that is bad gives the reason, unless some
/// text of the row is not UTF-8 (a line that is not is `not_utf8` whole).
fn build<'c>(
    columns: &'c [ColumnBatch],
    row: usize,
    parser: &RecordParser,
) -> Result<Record<'c>, Malformed> {
    let mut record = Record::absent();
    for column in columns {
        // A packet address is nearly always the address beside it (no
        // translation): the same bytes parse to the same address, once.
        if let Some(earlier) = column.same_as
            && let (Some(value), Some(other)) = (column.bytes(row), columns[earlier].bytes(row))
            && value == other
        {
            match column.field {
                Field::PktSrcAddr => record.pkt_srcaddr = record.srcaddr,
                _ => record.pkt_dstaddr = record.dstaddr,
            }
            continue;
        }
        if let Err(reason) = column.set(row, &mut record) {
            let utf8 = columns.iter().all(|column| column.is_utf8(row));
            return Err(if utf8 { reason } else { Malformed::NotUtf8 });
        }
    }
    parser.complete(record)
}

fn invalid(error: ParquetError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn invalid_text(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// One column's reader in the row group being read.
struct ColumnCursor {
    field: Field,
    reader: Reader,
    max_def_level: i16,
    /// Definition levels of the rows being read (nullable columns only).
    levels: Vec<i16>,
    unsigned: bool,
}

enum Reader {
    Int32(ColumnReaderImpl<parquet::data_type::Int32Type>),
    Int64(ColumnReaderImpl<parquet::data_type::Int64Type>),
    /// With the values as decoded, before they are copied into a batch.
    Bytes(
        ColumnReaderImpl<parquet::data_type::ByteArrayType>,
        Vec<ByteArray>,
    ),
}

/// One column's values for the rows of a batch.
struct ColumnBatch {
    field: Field,
    values: Values,
    /// A bit per row, set for a null; empty when the batch has none. Values
    /// are per row (a null's is a placeholder): a worker reads a row's
    /// value straight, without an index beside it.
    nulls: Vec<u64>,
    unsigned: bool,
    /// An earlier column whose equal bytes give this one's value (the
    /// address beside a packet address).
    same_as: Option<usize>,
}

enum Values {
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    /// Strings, end to end (value `i` ends at `ends[i]`): copied out of
    /// the decoder's values, so that a batch is a few flat buffers, read
    /// by another thread without touching the decoder's shared pages.
    Bytes {
        bytes: Vec<u8>,
        ends: Vec<u32>,
    },
    /// Before the first batch.
    None,
}

impl ColumnCursor {
    /// A reader of a type `Rows::open` checked against the field.
    fn new(
        reader: ColumnReader,
        field: Field,
        max_def_level: i16,
        unsigned: bool,
    ) -> Result<ColumnCursor, ParquetError> {
        let reader = match reader {
            ColumnReader::Int32ColumnReader(reader) => Reader::Int32(reader),
            ColumnReader::Int64ColumnReader(reader) => Reader::Int64(reader),
            ColumnReader::ByteArrayColumnReader(reader) => Reader::Bytes(reader, Vec::new()),
            _ => {
                return Err(ParquetError::General(format!(
                    "column `{}` changed type between row groups",
                    field.name()
                )));
            }
        };
        Ok(ColumnCursor {
            field,
            reader,
            max_def_level,
            levels: Vec::new(),
            unsigned,
        })
    }

    /// Reads the next `rows` rows into `batch`, reusing its buffers.
    fn read(&mut self, rows: usize, batch: &mut ColumnBatch) -> Result<(), ParquetError> {
        if batch.field != self.field {
            batch.field = self.field.clone();
        }
        batch.unsigned = self.unsigned;
        self.levels.clear();
        let levels = (self.max_def_level > 0).then_some(&mut self.levels);
        let read = match &mut self.reader {
            Reader::Int32(reader) => {
                if !matches!(batch.values, Values::Int32(_)) {
                    batch.values = Values::Int32(Vec::new());
                }
                let Values::Int32(values) = &mut batch.values else {
                    unreachable!("set above")
                };
                let read = read_batch(reader, rows, levels, values)?;
                batch.nulls.clear();
                spread(values, &self.levels, self.max_def_level, &mut batch.nulls);
                read
            }
            Reader::Int64(reader) => {
                if !matches!(batch.values, Values::Int64(_)) {
                    batch.values = Values::Int64(Vec::new());
                }
                let Values::Int64(values) = &mut batch.values else {
                    unreachable!("set above")
                };
                let read = read_batch(reader, rows, levels, values)?;
                batch.nulls.clear();
                spread(values, &self.levels, self.max_def_level, &mut batch.nulls);
                read
            }
            Reader::Bytes(reader, decoded) => {
                let read = read_batch(reader, rows, levels, decoded)?;
                if !matches!(batch.values, Values::Bytes { .. }) {
                    batch.values = Values::Bytes {
                        bytes: Vec::new(),
                        ends: Vec::new(),
                    };
                }
                let Values::Bytes { bytes, ends } = &mut batch.values else {
                    unreachable!("set above")
                };
                bytes.clear();
                ends.clear();
                batch.nulls.clear();
                let mut decoded_values = decoded.iter();
                // One end per row: a null row's value is empty, and marked.
                for row in 0..read {
                    if self.max_def_level > 0 && self.levels[row] != self.max_def_level {
                        mark_null(&mut batch.nulls, row, read);
                    } else if let Some(value) = decoded_values.next() {
                        bytes.extend_from_slice(value.data());
                    }
                    let end = u32::try_from(bytes.len()).map_err(|_| {
                        ParquetError::General("a batch of strings over 4 GiB".to_string())
                    })?;
                    ends.push(end);
                }
                // Dropped here, on the decoding thread: the pages they share
                // are counted by this thread only.
                decoded.clear();
                read
            }
        };
        if read != rows {
            return Err(ParquetError::General(format!(
                "a column has {read} rows where the row group promises {rows}"
            )));
        }
        Ok(())
    }
}

impl ColumnBatch {
    /// Empty, for `cursor`'s rows; `cursors` are the columns before it.
    fn of(cursor: &ColumnCursor, cursors: &[ColumnCursor]) -> ColumnBatch {
        let beside = match cursor.field {
            Field::PktSrcAddr => Some(Field::SrcAddr),
            Field::PktDstAddr => Some(Field::DstAddr),
            _ => None,
        };
        ColumnBatch {
            field: cursor.field.clone(),
            values: Values::None,
            nulls: Vec::new(),
            unsigned: cursor.unsigned,
            same_as: beside
                .and_then(|beside| cursors.iter().position(|earlier| earlier.field == beside)),
        }
    }

    /// The row itself (where its value is), `None` for a null.
    #[inline]
    fn slot(&self, row: usize) -> Option<usize> {
        let null = self
            .nulls
            .get(row / 64)
            .is_some_and(|word| word & (1 << (row % 64)) != 0);
        (!null).then_some(row)
    }

    /// The row's string, `None` for a null or a number.
    #[inline]
    fn bytes(&self, row: usize) -> Option<&[u8]> {
        let Values::Bytes { bytes, ends } = &self.values else {
            return None;
        };
        let slot = self.slot(row)?;
        let start = match slot {
            0 => 0,
            _ => ends[slot - 1] as usize,
        };
        Some(&bytes[start..ends[slot] as usize])
    }

    /// Sets the row's value in `record`, as its text would: a null is `-`.
    fn set<'c>(&'c self, row: usize, record: &mut Record<'c>) -> Result<(), Malformed> {
        let Some(slot) = self.slot(row) else {
            return record.set_text(&self.field, "-");
        };
        let value = match &self.values {
            Values::Int32(values) if self.unsigned => i128::from(values[slot] as u32),
            Values::Int32(values) => i128::from(values[slot]),
            Values::Int64(values) if self.unsigned => i128::from(values[slot] as u64),
            Values::Int64(values) => i128::from(values[slot]),
            Values::Bytes { .. } => {
                let value = self.bytes(row).unwrap_or_default();
                // A line's value is one token: an empty or spaced one reads
                // as absent (`-`), so that a record held as a line reads the
                // same. Every field but the ids rejects such bytes anyway:
                // only they are looked at before.
                let spaced =
                    |value: &[u8]| value.is_empty() || value.iter().any(u8::is_ascii_whitespace);
                if matches!(self.field, Field::InterfaceId | Field::InstanceId) && spaced(value) {
                    return record.set_text(&self.field, "-");
                }
                return record.set_bytes(&self.field, value).or_else(|reason| {
                    if spaced(value) {
                        record.set_text(&self.field, "-")
                    } else {
                        Err(reason)
                    }
                });
            }
            Values::None => return record.set_text(&self.field, "-"),
        };
        record.set_integer(&self.field, value)
    }

    /// False when the row's value is text that is not UTF-8.
    fn is_utf8(&self, row: usize) -> bool {
        self.bytes(row)
            .is_none_or(|value| std::str::from_utf8(value).is_ok())
    }
}

/// Marks `row` (of `rows`) null.
fn mark_null(nulls: &mut Vec<u64>, row: usize, rows: usize) {
    if nulls.is_empty() {
        nulls.resize(rows.div_ceil(64), 0);
    }
    nulls[row / 64] |= 1 << (row % 64);
}

/// Spreads the values of the non-null rows over every row (nulls get a
/// placeholder), marking the nulls, so that row `i`'s value is `values[i]`.
fn spread<T: Copy + Default>(
    values: &mut Vec<T>,
    levels: &[i16],
    max_def_level: i16,
    nulls: &mut Vec<u64>,
) {
    if max_def_level == 0 || values.len() >= levels.len() {
        return;
    }
    let mut next = values.len();
    values.resize(levels.len(), T::default());
    // From the end: a row's value moves only towards the end, past
    // values already moved.
    for row in (0..levels.len()).rev() {
        if levels[row] == max_def_level {
            // The decoder checked there is a value for every level that
            // says so; should there not be, the row keeps a placeholder.
            if let Some(index) = next.checked_sub(1) {
                next = index;
                values[row] = values[index];
            }
        } else {
            values[row] = T::default();
            mark_null(nulls, row, levels.len());
        }
    }
}

fn read_batch<T: DataType>(
    reader: &mut ColumnReaderImpl<T>,
    rows: usize,
    levels: Option<&mut Vec<i16>>,
    values: &mut Vec<T::T>,
) -> Result<usize, ParquetError> {
    values.clear();
    let mut levels = levels;
    let mut read = 0;
    // A call stops at page ends: loop until the batch is full or the column ends.
    while read < rows {
        let (records, _, _) =
            reader.read_records(rows - read, levels.as_deref_mut(), None, values)?;
        if records == 0 {
            break;
        }
        read += records;
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_spread_over_their_rows_and_nulls_marked() {
        // Rows 0, 2, 3 and 69 are null (level 0); the others hold 10, 11, ….
        let rows = 70;
        let null_rows = [0, 2, 3, 69];
        let levels: Vec<i16> = (0..rows)
            .map(|row| i16::from(!null_rows.contains(&row)))
            .collect();
        let mut values: Vec<i64> = (10..10 + (rows - null_rows.len()) as i64).collect();
        let mut nulls = Vec::new();
        spread(&mut values, &levels, 1, &mut nulls);
        assert_eq!(values.len(), rows);
        let mut expected = 10;
        for row in 0..rows {
            let null = nulls[row / 64] & (1 << (row % 64)) != 0;
            assert_eq!(null, null_rows.contains(&row), "row {row}");
            if !null {
                assert_eq!(values[row], expected, "row {row}");
                expected += 1;
            }
        }
        // No null: nothing moves, no bitmap.
        let mut values = vec![1i32, 2, 3];
        let mut nulls = Vec::new();
        spread(&mut values, &[1, 1, 1], 1, &mut nulls);
        assert_eq!((values, nulls), (vec![1, 2, 3], vec![]));
        // Fewer values than the levels promise (never from the decoder):
        // placeholders, no panic.
        let mut values = vec![7i32];
        spread(&mut values, &[1, 1, 0], 1, &mut Vec::new());
        assert_eq!(values.len(), 3);
    }
}
