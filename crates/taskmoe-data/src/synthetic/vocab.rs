//! The synthetic vocabulary: BERT-style special tokens, then one token per word.

use std::path::Path;

use crate::error::{DataError, Result};

/// The special tokens, in id order (the order of BERT's `vocab.txt`).
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Token id of `[PAD]`.
pub const PAD_ID: i64 = 0;
/// Token id of `[CLS]`.
pub const CLS_ID: i64 = 2;
/// Token id of `[SEP]`.
pub const SEP_ID: i64 = 3;

/// Word `v` (`0..words`) is token `w{v}` with id `SPECIAL_TOKENS.len() + v`.
///
/// [`SyntheticVocab::write_vocab_txt`] writes the matching WordPiece `vocab.txt`, so the text
/// rendering of an example ([`super::SyntheticExample::render`]) tokenized by
/// [`crate::TextTokenizer::from_wordpiece_vocab`] gives exactly the ids of
/// [`super::SyntheticExample::encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticVocab {
    words: usize,
}

impl SyntheticVocab {
    /// A vocabulary of `words` word tokens.
    pub fn new(words: usize) -> Self {
        SyntheticVocab { words }
    }

    /// The number of tokens, specials included (the embedding table's row count).
    pub fn len(&self) -> usize {
        SPECIAL_TOKENS.len() + self.words
    }

    /// Whether there are no tokens (never: the specials are always there).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The number of word tokens.
    pub fn words(&self) -> usize {
        self.words
    }

    /// The token id of word `v`.
    pub fn word_id(&self, v: u32) -> i64 {
        SPECIAL_TOKENS.len() as i64 + i64::from(v)
    }

    /// The text of word `v`.
    pub fn word_text(&self, v: u32) -> String {
        format!("w{v}")
    }

    /// Every token in id order.
    pub fn tokens(&self) -> Vec<String> {
        SPECIAL_TOKENS
            .iter()
            .map(|s| s.to_string())
            .chain((0..self.words as u32).map(|v| self.word_text(v)))
            .collect()
    }

    /// Writes a WordPiece `vocab.txt` (one token per line, id = line index).
    pub fn write_vocab_txt(&self, path: &Path) -> Result<()> {
        let mut text = self.tokens().join("\n");
        text.push('\n');
        std::fs::write(path, text).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
