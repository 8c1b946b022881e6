//! Flow records in Parquet, as S3 delivery writes them (`….log.parquet`):
//! one typed column per field, named with `_` (`interface_id`,
//! `tcp_flags`), Gzip-compressed pages. Numbers come in whatever integer
//! width the writer chose (AWS: `int32` ports, `int64` protocol and
//! counters; other writers differ), strings as byte arrays, absent values
//! as nulls (`-` in text).
//!
//! Each row becomes the text record the same flow log would have written,
//! in the column order of the file, and goes through the same pipeline as
//! text: one parser, one set of rules, one place for bad-time checks. The
//! file's schema is its format, whatever `--log-format` says. Rows are read
//! in batches per row group, so memory is a batch, not the file.

use std::io;

use parquet::basic::LogicalType;
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, DataType};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};

use super::Origin;
use crate::flow::{LogFormat, Observer, Pipeline};

/// The first bytes of every Parquet file.
pub const MAGIC: &[u8; 4] = b"PAR1";
/// Rows rendered at a time.
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
    pipeline.begin_input_with_format(format);
    let interface = origin.interface();
    let mut line = Vec::with_capacity(256);
    for index in 0..reader.num_row_groups() {
        let group = reader.get_row_group(index).map_err(invalid)?;
        let mut columns = (0..group.num_columns())
            .map(|column| {
                let descriptor = group.metadata().column(column).column_descr();
                let unsigned = matches!(
                    descriptor.logical_type_ref(),
                    Some(LogicalType::Integer(int)) if !int.is_signed
                );
                let reader = group.get_column_reader(column)?;
                Ok(Column::new(reader, descriptor.max_def_level(), unsigned))
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
                line.clear();
                for (position, column) in columns.iter().enumerate() {
                    if position > 0 {
                        line.push(b' ');
                    }
                    column.render(row, &mut line);
                }
                pipeline.push_event(&line, None, interface, observer);
            }
            rows_left -= want;
        }
        progress(u64::try_from(group.metadata().compressed_size()).unwrap_or(0));
    }
    Ok(())
}

fn invalid(error: ParquetError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn invalid_text(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// One column of a row group and its current batch.
struct Column {
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
    /// A type no flow log field has (floats, booleans): read as absent.
    Unused,
}

impl Column {
    fn new(reader: ColumnReader, max_def_level: i16, unsigned: bool) -> Column {
        let values = match reader {
            ColumnReader::Int32ColumnReader(reader) => Values::Int32(reader, Vec::new()),
            ColumnReader::Int64ColumnReader(reader) => Values::Int64(reader, Vec::new()),
            ColumnReader::ByteArrayColumnReader(reader) => Values::Bytes(reader, Vec::new()),
            _ => Values::Unused,
        };
        Column {
            values,
            max_def_level,
            levels: Vec::new(),
            slots: Vec::new(),
            unsigned,
        }
    }

    /// Reads the next `rows` rows.
    fn read(&mut self, rows: usize) -> Result<(), ParquetError> {
        self.levels.clear();
        let levels = (self.max_def_level > 0).then_some(&mut self.levels);
        let read = match &mut self.values {
            Values::Int32(reader, values) => read_batch(reader, rows, levels, values)?,
            Values::Int64(reader, values) => read_batch(reader, rows, levels, values)?,
            Values::Bytes(reader, values) => read_batch(reader, rows, levels, values)?,
            Values::Unused => rows,
        };
        if read != rows {
            return Err(ParquetError::General(format!(
                "a column has {read} rows where the row group promises {rows}"
            )));
        }
        self.slots.clear();
        match &self.values {
            Values::Unused => self.slots.resize(rows, None),
            _ if self.max_def_level == 0 => {
                self.slots.extend((0..rows).map(|row| Some(row as u32)));
            }
            _ => {
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
        }
        Ok(())
    }

    /// Writes the row's value as a text record has it.
    fn render(&self, row: usize, line: &mut Vec<u8>) {
        let Some(Some(slot)) = self.slots.get(row) else {
            line.push(b'-');
            return;
        };
        let slot = *slot as usize;
        let mut digits = itoa::Buffer::new();
        match &self.values {
            Values::Int32(_, values) if self.unsigned => {
                line.extend_from_slice(digits.format(values[slot] as u32).as_bytes());
            }
            Values::Int32(_, values) => {
                line.extend_from_slice(digits.format(values[slot]).as_bytes());
            }
            Values::Int64(_, values) if self.unsigned => {
                line.extend_from_slice(digits.format(values[slot] as u64).as_bytes());
            }
            Values::Int64(_, values) => {
                line.extend_from_slice(digits.format(values[slot]).as_bytes());
            }
            Values::Bytes(_, values) => {
                let text = values[slot].data();
                // A value is one token: an empty or spaced one would shift
                // every column after it.
                if text.is_empty() || text.iter().any(u8::is_ascii_whitespace) {
                    line.push(b'-');
                } else {
                    line.extend_from_slice(text);
                }
            }
            Values::Unused => line.push(b'-'),
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
