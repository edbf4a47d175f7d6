//! CSV with a header row and RFC 4180 quoting (fields may contain commas, quotes, newlines).

use super::Sink;
use crate::error::Result;

/// Reads a CSV file into `sink` with the `csv` crate. The line of an error is the line where
/// the record starts.
pub(crate) fn read(bytes: &[u8], sink: &mut Sink<'_>) -> Result<()> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| sink.malformed(1, e.to_string()))?
        .clone();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(crate::DataError::Empty {
            path: sink.path_buf(),
        });
    }
    let columns: Vec<&str> = header.iter().collect();
    sink.check_header(&columns)?;
    let mut record = ::csv::StringRecord::new();
    loop {
        let line_hint = reader.position().line() as usize;
        let byte_before = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(line_hint);
                let error = sink.malformed(line, e.to_string());
                if reader.position().byte() == byte_before {
                    // The reader made no progress: skipping would loop forever.
                    return Err(error);
                }
                sink.push(Err(error))?;
                continue;
            }
            Ok(true) => {}
        }
        let line = record
            .position()
            .map(|p| p.line() as usize)
            .unwrap_or(line_hint);
        let cells: Vec<&str> = record.iter().collect();
        let example = sink.delimited_example(line, "comma-separated", &columns, &cells);
        sink.push(example)?;
    }
    Ok(())
}
