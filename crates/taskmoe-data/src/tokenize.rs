//! Text to token ids through the Hugging Face `tokenizers` crate.
//!
//! A [`TextTokenizer`] wraps a `tokenizers::Tokenizer` loaded from a `tokenizer.json` or built
//! from a WordPiece `vocab.txt` (the BERT pipeline: BERT normalizer, BERT pre-tokenizer,
//! WordPiece with `##` continuations, and the `[CLS] a [SEP] b [SEP]` post-processor). Every
//! encoding is truncated to `max_len` tokens, special tokens included, with the longest-first
//! strategy for pairs. Stored examples stay unpadded ([`EncodedExample`]); [`crate::Batch`] pads
//! them, and [`TextTokenizer::encode_padded`] pads a single input for direct use.

use std::path::Path;

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

use crate::error::{invalid, DataError, Result};
use crate::example::{EncodedExample, TextExample};

/// One input encoded and padded to `max_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedEncoding {
    /// Token ids, then `pad_id` up to `max_len`. `[max_len]`
    pub input_ids: Vec<i64>,
    /// 1 for a real token, 0 for padding. `[max_len]`
    pub attention_mask: Vec<i64>,
    /// Segment ids (0 first sentence, 1 second), 0 on padding. `[max_len]`
    pub token_type_ids: Vec<i64>,
}

/// A `tokenizers` tokenizer with truncation to a fixed maximum length and a known pad id.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
    pad_id: i64,
}

fn tk_err(e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer(e.to_string())
}

/// Encodes a sentence or a sentence pair with special tokens, as `inner` is set up.
fn encode_raw(
    inner: &Tokenizer,
    text_a: &str,
    text_b: Option<&str>,
) -> Result<tokenizers::Encoding> {
    match text_b {
        None => inner.encode(text_a, true),
        Some(b) => inner.encode((text_a, b), true),
    }
    .map_err(tk_err)
}

/// A [`TextTokenizer`]'s pipeline without truncation
/// ([`TextTokenizer::length_counter`]): an input is cut by the tokenizer exactly when it
/// counts more than [`TextTokenizer::max_len`] tokens here.
#[derive(Debug, Clone)]
pub struct LengthCounter {
    inner: Tokenizer,
}

impl LengthCounter {
    /// The number of tokens a sentence or a sentence pair encodes to, special tokens
    /// included, before truncation.
    pub fn count(&self, text_a: &str, text_b: Option<&str>) -> Result<usize> {
        Ok(encode_raw(&self.inner, text_a, text_b)?.len())
    }
}

impl TextTokenizer {
    /// Loads a `tokenizer.json` (as saved by HF `tokenizers` / `transformers`). Its own
    /// post-processor decides the special tokens and pair separators; its padding settings are
    /// replaced by this type's (the pad id is kept).
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| DataError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::from_tokenizer(inner, max_len)
    }

    /// Builds the BERT WordPiece pipeline from a `vocab.txt` (one token per line, id = line
    /// index). `lowercase` selects uncased BERT behaviour (lowercasing and accent stripping).
    /// The vocabulary must hold `[UNK]`, `[CLS]`, `[SEP]` and `[PAD]`.
    pub fn from_wordpiece_vocab(path: &Path, lowercase: bool, max_len: usize) -> Result<Self> {
        let path_str = path
            .to_str()
            .ok_or_else(|| DataError::Tokenizer(format!("{}: not UTF-8", path.display())))?;
        if !path.is_file() {
            return Err(DataError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let model = WordPiece::from_file(path_str)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| DataError::Tokenizer(format!("{}: {e}", path.display())))?;
        let mut inner = Tokenizer::new(model);
        let id = |t: &str| {
            inner.token_to_id(t).ok_or_else(|| {
                DataError::Tokenizer(format!("{}: the vocabulary lacks {t}", path.display()))
            })
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        id("[UNK]")?;
        id("[PAD]")?;
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(
                ("[SEP]".into(), sep),
                ("[CLS]".into(), cls),
            )));
        Self::from_tokenizer(inner, max_len)
    }

    /// Wraps a tokenizer built in code. The pad id is the tokenizer's padding id if it has
    /// padding settings, else the id of `[PAD]` or `<pad>`.
    pub fn from_tokenizer(mut inner: Tokenizer, max_len: usize) -> Result<Self> {
        if max_len < 4 {
            return Err(invalid(
                "tokenizer",
                format!("max_len = {max_len} is below 4"),
            ));
        }
        let pad_id = match inner.get_padding() {
            Some(p) => p.pad_id,
            None => ["[PAD]", "<pad>"]
                .iter()
                .find_map(|t| inner.token_to_id(t))
                .ok_or_else(|| {
                    DataError::Tokenizer("no padding settings and no [PAD] or <pad> token".into())
                })?,
        };
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                ..TruncationParams::default()
            }))
            .map_err(tk_err)?;
        Ok(TextTokenizer {
            inner,
            max_len,
            pad_id: i64::from(pad_id),
        })
    }

    /// A [`LengthCounter`]: the same pipeline without truncation, to measure how long inputs
    /// really are (`taskmoe data check`).
    pub fn length_counter(&self) -> Result<LengthCounter> {
        let mut inner = self.inner.clone();
        inner.with_truncation(None).map_err(tk_err)?;
        Ok(LengthCounter { inner })
    }

    /// The maximum encoded length, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// The vocabulary size, added tokens included (the embedding table's row count).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `token`, if the vocabulary holds it.
    pub fn token_to_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Encodes a sentence or a sentence pair with special tokens, truncated to `max_len`,
    /// unpadded: `(input_ids, token_type_ids)`.
    pub fn encode(&self, text_a: &str, text_b: Option<&str>) -> Result<(Vec<i64>, Vec<i64>)> {
        let (ids, types, _) = self.encode_checked(text_a, text_b)?;
        Ok((ids, types))
    }

    /// [`TextTokenizer::encode`], also saying whether tokens were cut off at `max_len`:
    /// `(input_ids, token_type_ids, truncated)`.
    pub fn encode_checked(
        &self,
        text_a: &str,
        text_b: Option<&str>,
    ) -> Result<(Vec<i64>, Vec<i64>, bool)> {
        let enc = encode_raw(&self.inner, text_a, text_b)?;
        let ids = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        let types = enc.get_type_ids().iter().map(|&i| i64::from(i)).collect();
        Ok((ids, types, !enc.get_overflowing().is_empty()))
    }

    /// Encodes like [`TextTokenizer::encode`] and pads to exactly `max_len` with a mask.
    pub fn encode_padded(&self, text_a: &str, text_b: Option<&str>) -> Result<PaddedEncoding> {
        let (mut input_ids, mut token_type_ids) = self.encode(text_a, text_b)?;
        let n = input_ids.len();
        let mut attention_mask = vec![1; n];
        input_ids.resize(self.max_len, self.pad_id);
        token_type_ids.resize(self.max_len, 0);
        attention_mask.resize(self.max_len, 0);
        Ok(PaddedEncoding {
            input_ids,
            attention_mask,
            token_type_ids,
        })
    }

    /// Encodes a split; example `i` gets id `i`.
    pub fn encode_examples(&self, examples: &[TextExample]) -> Result<Vec<EncodedExample>> {
        examples
            .iter()
            .enumerate()
            .map(|(i, ex)| {
                let (input_ids, token_type_ids) = self.encode(&ex.text_a, ex.text_b.as_deref())?;
                Ok(EncodedExample {
                    id: i as u64,
                    input_ids,
                    token_type_ids,
                    label: ex.label,
                    source_id: ex.source_id.clone(),
                })
            })
            .collect()
    }
}
