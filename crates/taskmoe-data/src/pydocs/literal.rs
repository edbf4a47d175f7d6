//! Python string literals: where one ends, what a docstring literal says (prefixes, triple
//! quotes, escapes), and the top-level positions of a line once its strings and brackets are
//! skipped.

/// Where the string literal whose opening quote is at `start` ends (one past its closing
/// quote), or `None` when the text ends first or a one-quote string meets a newline. A
/// backslash always protects the next character: in raw strings too, a `\"` does not close
/// the string (Python's rule), so the prefix does not matter here.
pub(crate) fn string_end(src: &[u8], start: usize) -> Option<usize> {
    let q = src[start];
    let triple = src.get(start..start + 3) == Some(&[q, q, q][..]);
    let mut j = start + if triple { 3 } else { 1 };
    while j < src.len() {
        match src[j] {
            b'\\' => j += 2,
            c if c == q && (!triple || src.get(j..j + 3) == Some(&[q, q, q][..])) => {
                return Some(j + if triple { 3 } else { 1 });
            }
            b'\n' if !triple => return None,
            _ => j += 1,
        }
    }
    None
}

/// A string literal that starts a logical line.
#[derive(Debug, PartialEq)]
pub(crate) struct Literal {
    /// Its prefix, lower case (`""`, `"r"`, `"u"`, `"b"`, `"rb"`, `"f"`, ...).
    pub(crate) prefix: String,
    /// Its value: the text between the quotes, escapes decoded unless the prefix has `r`.
    pub(crate) value: String,
    /// Whether anything but blanks follows it on the logical line (a concatenation, a method
    /// call, an operator).
    pub(crate) followed: bool,
}

impl Literal {
    /// Whether Python takes it as a docstring: a `str` (no `b`) and not an f-string.
    pub(crate) fn is_str(&self) -> bool {
        !self.prefix.contains('b') && !self.prefix.contains('f')
    }
}

/// The string literal `text` (a logical line, leading blanks allowed) starts with, if any.
pub(crate) fn leading_literal(text: &str) -> Option<Literal> {
    let t = text.trim_start();
    let b = t.as_bytes();
    let n = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let prefix = t[..n].to_ascii_lowercase();
    let valid = ["", "r", "u", "b", "f", "br", "rb", "fr", "rf"];
    if !valid.contains(&prefix.as_str()) || !matches!(b.get(n), Some(b'"' | b'\'')) {
        return None;
    }
    let end = string_end(b, n)?;
    let q = b[n];
    let triple = b.get(n..n + 3) == Some(&[q, q, q][..]);
    let quote = if triple { 3 } else { 1 };
    let body = &t[n + quote..end - quote];
    let value = if prefix.contains('r') {
        body.to_string()
    } else {
        unescape(body)
    };
    Some(Literal {
        prefix,
        value,
        followed: !t[end..].trim().is_empty(),
    })
}

/// Decodes the escapes of a non-raw string body as Python does: `\\`, `\'`, `\"`, `\n`, `\t`
/// and the other one-letter escapes, `\` + newline (nothing), octal, `\x`, `\u`, `\U`. An
/// escape Python does not know, and `\N{...}`, stay as written.
fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        let simple = match e {
            '\n' => Some(None),
            '\\' | '\'' | '"' => Some(Some(e)),
            'n' => Some(Some('\n')),
            't' => Some(Some('\t')),
            'r' => Some(Some('\r')),
            'a' => Some(Some('\x07')),
            'b' => Some(Some('\x08')),
            'f' => Some(Some('\x0c')),
            'v' => Some(Some('\x0b')),
            _ => None,
        };
        if let Some(decoded) = simple {
            out.extend(decoded);
            continue;
        }
        let (radix, digits) = match e {
            '0'..='7' => (8, 3),
            'x' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            _ => (0, 0),
        };
        let mut code = String::new();
        if radix == 8 {
            code.push(e);
        }
        while code.len() < digits {
            match chars.peek() {
                Some(d) if d.is_digit(radix) => code.push(chars.next().unwrap_or('0')),
                _ => break,
            }
        }
        let full = radix == 8 || code.len() == digits;
        match u32::from_str_radix(&code, radix.max(2))
            .ok()
            .filter(|_| full)
        {
            Some(v) => out.push(char::from_u32(v).unwrap_or('\u{fffd}')),
            None => {
                out.push('\\');
                out.push(e);
                if radix != 8 {
                    out.push_str(&code);
                }
            }
        }
    }
    out
}

/// The byte positions in `text` (a logical line) of `target` outside strings and at bracket
/// depth `depth` relative to `from` (0 = the top level of the slice). Strings are skipped
/// whole; a bracket that closes below the starting depth ends the search.
pub(crate) fn find_at_depth(text: &str, from: usize, target: u8) -> Vec<usize> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = string_end(b, i).unwrap_or(b.len());
                continue;
            }
            c if c == target && depth == 0 => found.push(i),
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The first summary paragraph of a docstring: its lines from the first non-blank one to the
/// next blank one, control characters and runs of blanks made one space.
pub(crate) fn first_paragraph(doc: &str) -> String {
    let clean: String = doc
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    let para: Vec<&str> = clean
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .collect();
    para.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_ends_respect_quotes_triples_and_backslashes() {
        let end = |s: &str| string_end(s.as_bytes(), 0);
        assert_eq!(end(r#""abc" + x"#), Some(5));
        assert_eq!(end(r#""a\"b" x"#), Some(6));
        assert_eq!(end("'''a'b''c''' x"), Some(12));
        assert_eq!(end("\"\"\"a\n\"\"\""), Some(8));
        assert_eq!(end("'abc\n'"), None, "a one-quote string ends at its line");
        assert_eq!(end("'''abc"), None);
    }

    #[test]
    fn leading_literals_decode_what_python_decodes() {
        let lit = leading_literal(r#"  """Tab\there, \x41\u00e9 \\ \N{DASH} \q.""""#).unwrap();
        assert_eq!(lit.value, "Tab\there, A\u{e9} \\ \\N{DASH} \\q.");
        assert!(lit.is_str() && !lit.followed);
        let raw = leading_literal(r"r'''a\nb''' ").unwrap();
        assert_eq!((raw.prefix.as_str(), raw.value.as_str()), ("r", r"a\nb"));
        assert!(!leading_literal("b'x'").unwrap().is_str());
        assert!(!leading_literal("F'x'").unwrap().is_str());
        assert!(leading_literal("'a' 'b'").unwrap().followed);
        assert!(leading_literal("\"\"\"x\"\"\".strip()").unwrap().followed);
        assert_eq!(leading_literal("x = 'a'"), None);
        assert_eq!(leading_literal("print('a')"), None);
        assert_eq!(leading_literal("'''open"), None);
        assert_eq!(leading_literal(r"'\101\0'").unwrap().value, "A\0");
    }

    #[test]
    fn positions_skip_strings_and_brackets() {
        let text = "def f(a, b=(1, 2), c=',', *d) -> int: pass";
        let open = text.find('(').unwrap();
        assert_eq!(find_at_depth(text, open + 1, b',').len(), 3);
        let colon = find_at_depth(text, 0, b':');
        assert_eq!(colon, [text.find(": pass").unwrap()]);
    }

    #[test]
    fn the_first_paragraph_is_normalised() {
        let doc = "\n\n    Return the\tanswer,\n    in  words.\n\n    More text.\n";
        assert_eq!(first_paragraph(doc), "Return the answer, in words.");
        assert_eq!(first_paragraph("One line."), "One line.");
        assert_eq!(first_paragraph("  \n \n"), "");
        assert_eq!(first_paragraph("a\x07b"), "a b");
    }
}
