//! Python source into logical lines: physical lines joined inside brackets and after a
//! backslash, comments and blank lines dropped, string literals kept whole (whatever they
//! hold: `#`, brackets, `def`), each line with its indentation and first line number.

use super::literal::string_end;

/// One logical line of Python source.
#[derive(Debug, PartialEq)]
pub(crate) struct LogicalLine {
    /// The 1-based number of its first physical line.
    pub(crate) line: usize,
    /// Its indentation in columns (a tab advances to the next multiple of 8, as Python's
    /// tokenizer counts).
    pub(crate) indent: usize,
    /// Its source without the indentation and comments; the newlines inside brackets and
    /// strings are kept, a backslash continuation becomes a space.
    pub(crate) text: String,
}

/// Why a source cannot be scanned, and the line where the problem starts.
#[derive(Debug, PartialEq)]
pub(crate) struct ScanError {
    /// The 1-based line.
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) message: &'static str,
}

/// Splits Python source into logical lines; a string or bracket left open at the end is an
/// error at the line where it opened.
pub(crate) fn logical_lines(src: &str) -> Result<Vec<LogicalLine>, ScanError> {
    let src = src.replace("\r\n", "\n");
    let b = src.as_bytes();
    let (mut i, mut line) = (0usize, 1usize);
    let mut out = Vec::new();
    while i < b.len() {
        // The start of a physical line outside any logical line: indentation first.
        let mut indent = 0usize;
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\x0c') {
            indent = if b[i] == b'\t' {
                indent / 8 * 8 + 8
            } else {
                indent + 1
            };
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'\n' || b[i] == b'#' {
            i = next_line(b, i);
            line += 1;
            continue;
        }
        let start_line = line;
        let mut text = String::new();
        let mut depth = 0usize;
        // Byte positions of open brackets' lines, for the error of one left open.
        let mut open_at = Vec::new();
        loop {
            if i >= b.len() {
                if depth > 0 {
                    let line = open_at.last().copied().unwrap_or(start_line);
                    return Err(ScanError {
                        line,
                        message: "a bracket is never closed",
                    });
                }
                break;
            }
            match b[i] {
                b'#' => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                }
                b'\\' if b.get(i + 1) == Some(&b'\n') => {
                    text.push(' ');
                    i += 2;
                    line += 1;
                }
                b'\n' => {
                    i += 1;
                    line += 1;
                    if depth == 0 {
                        break;
                    }
                    text.push('\n');
                }
                b'"' | b'\'' => {
                    let end = string_end(b, i).ok_or(ScanError {
                        line,
                        message: "a string literal is never closed",
                    })?;
                    text.push_str(&src[i..end]);
                    line += b[i..end].iter().filter(|&&c| c == b'\n').count();
                    i = end;
                }
                c => {
                    if matches!(c, b'(' | b'[' | b'{') {
                        depth += 1;
                        open_at.push(line);
                    } else if matches!(c, b')' | b']' | b'}') {
                        depth = depth.saturating_sub(1);
                        open_at.pop();
                    }
                    let ch = src[i..].chars().next().unwrap_or(' ');
                    text.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        let text = text.trim_end().to_string();
        if !text.is_empty() {
            out.push(LogicalLine {
                line: start_line,
                indent,
                text,
            });
        }
    }
    Ok(out)
}

/// The position after the end of the physical line `i` is on.
fn next_line(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    i + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(src: &str) -> Vec<(usize, usize, String)> {
        logical_lines(src)
            .unwrap()
            .into_iter()
            .map(|l| (l.line, l.indent, l.text))
            .collect()
    }

    #[test]
    fn joins_brackets_and_continuations_and_drops_comments() {
        let src = "#!/usr/bin/env python\n\nimport os  # why\ndef f(a,\n      b):  # sig\n    x = 1 + \\\n        2\n\tpass\n";
        assert_eq!(
            lines(src),
            [
                (3, 0, "import os".to_string()),
                (4, 0, "def f(a,\n      b):".to_string()),
                (6, 4, format!("x = 1 + {}2", " ".repeat(9))),
                (8, 8, "pass".to_string()),
            ]
        );
    }

    #[test]
    fn keeps_strings_whole_and_counts_their_lines() {
        let src = "'''doc # not a comment\n( def\n'''\nx = \"(\"\ny = 2\n";
        assert_eq!(
            lines(src),
            [
                (1, 0, "'''doc # not a comment\n( def\n'''".to_string()),
                (4, 0, "x = \"(\"".to_string()),
                (5, 0, "y = 2".to_string()),
            ]
        );
    }

    #[test]
    fn unclosed_strings_and_brackets_name_their_line() {
        let err = logical_lines("x = 1\ny = '''never\n\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("string"));
        let err = logical_lines("x = 1\ny = f(\n  2,\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("bracket"));
    }
}
