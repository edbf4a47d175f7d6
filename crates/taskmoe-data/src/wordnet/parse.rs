//! Reading WordNet 3.0 data files (`wndb(5WN)`) into synsets and their definitions.

use std::path::Path;

use super::tasks::Pos;
use crate::error::{DataError, Result};

/// One synset line of a data file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Synset {
    pub(crate) pos: Pos,
    /// The byte position of its line in the data file: WordNet's synset offset.
    pub(crate) offset: u32,
    /// The lexicographer file number (`lexnames(5WN)`).
    pub(crate) lexfile: u8,
    /// The gloss up to its first quoted example, whitespace collapsed.
    pub(crate) definition: String,
}

impl Synset {
    /// The synset's hash key: part of speech and offset.
    pub(crate) fn key(&self) -> u64 {
        ((self.pos as u64) << 32) | u64::from(self.offset)
    }

    /// `n01234567`.
    pub(crate) fn id(&self) -> String {
        format!("{}{:08}", self.pos.letter(), self.offset)
    }
}

/// The definition part of a gloss: up to the first `"` (examples are quoted), trailing `;`
/// and blanks removed, runs of whitespace made one space.
fn definition_of(gloss: &str) -> String {
    let head = gloss.split('"').next().unwrap_or("");
    let words: Vec<&str> = head.split_whitespace().collect();
    let mut text = words.join(" ");
    while text.ends_with(';') || text.ends_with(' ') {
        text.pop();
    }
    text
}

/// Parses a WordNet 3.0 data file (`wndb(5WN)`) read from `path`: license lines start with
/// two spaces; every other line is `offset lex_filenum ss_type w_cnt word lex_id ... | gloss`,
/// and its offset is its byte position in the file. Errors name the file and line.
pub(crate) fn parse_data(text: &str, pos: Pos, path: &Path) -> Result<Vec<Synset>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let start = at;
        at += line.len();
        let line = line.trim_end_matches('\n');
        if line.starts_with("  ") || line.is_empty() {
            continue;
        }
        let bad = |message: String| DataError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let mut fields = line.split(' ');
        let offset: u32 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("the line does not start with a synset offset".into()))?;
        if offset as usize != start {
            return Err(bad(format!(
                "synset offset {offset:08} but the line starts at byte {start}"
            )));
        }
        let lexfile: u8 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .filter(|&n| n <= 44)
            .ok_or_else(|| bad("no lexicographer file number (0-44) after the offset".into()))?;
        let (_, gloss) = line
            .split_once(" | ")
            .ok_or_else(|| bad("no gloss (` | `)".into()))?;
        out.push(Synset {
            pos,
            offset,
            lexfile,
            definition: definition_of(gloss),
        });
    }
    if out.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// Reads the four data files of `dict` (a WordNet 3.0 `dict` folder), in [`Pos::ALL`] order.
pub(crate) fn read_dict(dict: &Path) -> Result<Vec<Synset>> {
    let mut all = Vec::new();
    for pos in Pos::ALL {
        let path = dict.join(pos.file());
        let bytes = std::fs::read(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            DataError::Malformed {
                path: path.clone(),
                line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
                message: format!("not UTF-8 ({})", e.utf8_error()),
            }
        })?;
        all.extend(parse_data(&text, pos, &path)?);
    }
    Ok(all)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// A data file in WordNet's layout, each offset its line's byte position.
    pub(crate) fn data_file(lines: &[(u8, &str)]) -> String {
        let mut text = String::from("  1 This software and database is being provided\n");
        for (lexfile, gloss) in lines {
            let at = text.len();
            let _ = writeln!(text, "{at:08} {lexfile:02} n 01 word 0 000 | {gloss}  ");
        }
        text
    }

    #[test]
    fn definitions_drop_examples_and_extra_space() {
        assert_eq!(
            definition_of("a domestic  animal; kept as a pet; \"the dog barked\"; \"x\"  "),
            "a domestic animal; kept as a pet"
        );
        assert_eq!(
            definition_of("(botany) a plant part"),
            "(botany) a plant part"
        );
        assert_eq!(definition_of("\"only an example\""), "");
    }

    #[test]
    fn parses_synset_lines_and_checks_offsets() {
        let noun = Path::new("data.noun");
        let text = data_file(&[(5, "an animal that barks"), (20, "a green plant; \"x\"")]);
        let synsets = parse_data(&text, Pos::Noun, noun).unwrap();
        assert_eq!(synsets.len(), 2);
        assert_eq!(synsets[0].lexfile, 5);
        assert_eq!(synsets[1].definition, "a green plant");
        assert_eq!(synsets[0].id(), format!("n{:08}", synsets[0].offset));
        let broken = text.replacen("00000049", "00000048", 1);
        let err = parse_data(&broken, Pos::Noun, noun).unwrap_err();
        assert!(
            matches!(&err, DataError::Malformed { path, line: 2, message }
                if path == noun && message.contains("byte 49")),
            "{err}"
        );
        assert!(err.to_string().starts_with("data.noun:2: "), "{err}");
        let err =
            parse_data("00000000 05 n 01 dog 0 000\n", Pos::Noun, Path::new("f")).unwrap_err();
        assert!(
            matches!(&err, DataError::Malformed { line: 1, message, .. }
                if message.contains("no gloss")),
            "{err}"
        );
        let err = parse_data("  license only\n", Pos::Noun, noun).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err}");
    }

    #[test]
    fn read_dict_names_the_file_and_line_of_bad_bytes() {
        let dict =
            std::env::temp_dir().join(format!("taskmoe-wordnet-dict-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dict);
        std::fs::create_dir_all(&dict).unwrap();
        for pos in Pos::ALL {
            std::fs::write(
                dict.join(pos.file()),
                data_file(&[(5, "a thing of this kind")]),
            )
            .unwrap();
        }
        assert_eq!(read_dict(&dict).unwrap().len(), 4);
        let mut bytes = data_file(&[(5, "a thing of this kind")]).into_bytes();
        bytes.extend_from_slice(b"00000099 05 n 01 w 0 000 | caf\xe9 \n");
        std::fs::write(dict.join("data.verb"), bytes).unwrap();
        let err = read_dict(&dict).unwrap_err();
        let _ = std::fs::remove_dir_all(&dict);
        assert!(
            matches!(&err, DataError::Malformed { path, line: 3, message }
                if path.ends_with("data.verb") && message.contains("UTF-8")),
            "{err}"
        );
        let err = read_dict(&dict.join("missing")).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err}");
    }
}
