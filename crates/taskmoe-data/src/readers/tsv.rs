//! GLUE / SuperGLUE-style TSV: a header row, tab-separated columns, no quoting.

use super::{utf8, Sink};
use crate::error::Result;

/// Reads a TSV file into `sink`. Lines are split on `\n` (a trailing `\r` is dropped) and then
/// on `\t`; quotes are ordinary characters, as in GLUE's files (written with `QUOTE_NONE`).
pub(crate) fn read(bytes: &[u8], sink: &mut Sink<'_>) -> Result<()> {
    let text = utf8(sink, bytes)?;
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.is_empty());
    let Some((header_line, header)) = lines.next() else {
        return Err(crate::DataError::Empty {
            path: sink.path_buf(),
        });
    };
    let columns: Vec<&str> = header.split('\t').collect();
    if header_line != 1 {
        return Err(sink.malformed(1, "empty line where the header row belongs".into()));
    }
    sink.check_header(&columns)?;
    for (line, row) in lines {
        let cells: Vec<&str> = row.split('\t').collect();
        let example = sink.delimited_example(line, "tab-separated", &columns, &cells);
        sink.push(example)?;
    }
    Ok(())
}
