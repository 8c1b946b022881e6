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
const BATCH: usize = 4096;

/// Feeds every row of a Parquet file to the pipeline, reporting the
/// compressed size of each row group read to `progress`.
pub fn feed<R: ChunkReader + 'static>(
    file: R,
    origin: &Origin,
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
    progress: &dyn Fn(u64),
) -> io::Result<()> {
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
    let format = LogFormat::parse(&names.join(" "))
        .map_err(|error| invalid_text(format!("the columns are not a flow log format: {error}")))?;
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
    pipeline.begin_input_with_format(format.clone());
    let parser = RecordParser::new(format);
    let interface = origin.interface();
    for index in 0..reader.num_row_groups() {
        let group = reader.get_row_group(index).map_err(invalid)?;
        let mut columns = used
            .iter()
            .map(|(column, field)| {
                let descriptor = group.metadata().column(*column).column_descr();
                let unsigned = matches!(
                    descriptor.logical_type_ref(),
                    Some(LogicalType::Integer(int)) if !int.is_signed
                );
                let reader = group.get_column_reader(*column)?;
                Column::new(reader, field.clone(), descriptor.max_def_level(), unsigned)
            })
            .collect::<Result<Vec<Column>, ParquetError>>()
            .map_err(invalid)?;
        let mut rows_left = usize::try_from(group.metadata().num_rows()).unwrap_or(0);
        while rows_left > 0 {
            let want = rows_left.min(BATCH);
            for column in &mut columns {
                column.read(want).map_err(invalid)?;
            }
            for row in 0..want {
                let record = build(&columns, row, &parser);
                pipeline.push_record(record, None, interface, observer);
            }
            rows_left -= want;
        }
        progress(u64::try_from(group.metadata().compressed_size()).unwrap_or(0));
    }
    Ok(())
}

/// One row's record, or why it is not one, as its line would say: the
/// first field in column order that is bad gives the reason, unless some
/// text of the row is not UTF-8 (a line that is not is `not_utf8` whole).
fn build<'c>(
    columns: &'c [Column],
    row: usize,
    parser: &RecordParser,
) -> Result<Record<'c>, Malformed> {
    let mut record = Record::absent();
    for column in columns {
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

/// One column of a row group and its current batch.
struct Column {
    field: Field,
    values: Values,
    max_def_level: i16,
    /// Definition levels of the batch (nullable columns only).
    levels: Vec<i16>,
    /// For each row of the batch, its value's index, or `None` for null.
    slots: Vec<Option<u32>>,
    unsigned: bool,
}

enum Values {
    Int32(ColumnReaderImpl<parquet::data_type::Int32Type>, Vec<i32>),
    Int64(ColumnReaderImpl<parquet::data_type::Int64Type>, Vec<i64>),
    Bytes(
        ColumnReaderImpl<parquet::data_type::ByteArrayType>,
        Vec<ByteArray>,
    ),
}

impl Column {
    /// A reader of a type `feed` checked against the field.
    fn new(
        reader: ColumnReader,
        field: Field,
        max_def_level: i16,
        unsigned: bool,
    ) -> Result<Column, ParquetError> {
        let values = match reader {
            ColumnReader::Int32ColumnReader(reader) => Values::Int32(reader, Vec::new()),
            ColumnReader::Int64ColumnReader(reader) => Values::Int64(reader, Vec::new()),
            ColumnReader::ByteArrayColumnReader(reader) => Values::Bytes(reader, Vec::new()),
            _ => {
                return Err(ParquetError::General(format!(
                    "column `{}` changed type between row groups",
                    field.name()
                )));
            }
        };
        Ok(Column {
            field,
            values,
            max_def_level,
            levels: Vec::new(),
            slots: Vec::new(),
            unsigned,
        })
    }

    /// Reads the next `rows` rows.
    fn read(&mut self, rows: usize) -> Result<(), ParquetError> {
        self.levels.clear();
        let levels = (self.max_def_level > 0).then_some(&mut self.levels);
        let read = match &mut self.values {
            Values::Int32(reader, values) => read_batch(reader, rows, levels, values)?,
            Values::Int64(reader, values) => read_batch(reader, rows, levels, values)?,
            Values::Bytes(reader, values) => read_batch(reader, rows, levels, values)?,
        };
        if read != rows {
            return Err(ParquetError::General(format!(
                "a column has {read} rows where the row group promises {rows}"
            )));
        }
        self.slots.clear();
        if self.max_def_level == 0 {
            self.slots.extend((0..rows).map(|row| Some(row as u32)));
        } else {
            let mut next = 0;
            for level in &self.levels {
                if *level == self.max_def_level {
                    self.slots.push(Some(next));
                    next += 1;
                } else {
                    self.slots.push(None);
                }
            }
        }
        Ok(())
    }

    /// Sets the row's value in `record`, as its text would: a null is `-`.
    fn set<'c>(&'c self, row: usize, record: &mut Record<'c>) -> Result<(), Malformed> {
        let Some(Some(slot)) = self.slots.get(row) else {
            return record.set_text(&self.field, "-");
        };
        let slot = *slot as usize;
        let value = match &self.values {
            Values::Int32(_, values) if self.unsigned => i128::from(values[slot] as u32),
            Values::Int32(_, values) => i128::from(values[slot]),
            Values::Int64(_, values) if self.unsigned => i128::from(values[slot] as u64),
            Values::Int64(_, values) => i128::from(values[slot]),
            Values::Bytes(_, values) => {
                let value = values[slot].data();
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
        };
        record.set_integer(&self.field, value)
    }

    /// False when the row's value is text that is not UTF-8.
    fn is_utf8(&self, row: usize) -> bool {
        match (&self.values, self.slots.get(row)) {
            (Values::Bytes(_, values), Some(Some(slot))) => {
                std::str::from_utf8(values[*slot as usize].data()).is_ok()
            }
            _ => true,
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
