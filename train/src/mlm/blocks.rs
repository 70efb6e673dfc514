//! A corpus's text as blocks of word-piece ids for masked-LM training:
//! documents are tokenised in order and their tokens packed into blocks of
//! at most `max_content` tokens (Hugging Face `run_mlm.py`'s `group_texts`,
//! but a block ends at a word boundary, so whole-word masking sees whole
//! words). A single word longer than a block is cut.

use tokenizers::Tokenizer;

use kogner_tensor::{Error, Result};

use crate::data::Document;

/// One training sequence without its special tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBlock {
    pub ids: Vec<u32>,
    /// `word_start[i]`: token i begins a word (the others continue one, `##…`).
    pub word_start: Vec<bool>,
}

impl TokenBlock {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The blocks of `docs` (text order kept), each of 1..=`max_content` tokens.
pub fn token_blocks(tokenizer: &Tokenizer, docs: &[Document], max_content: usize) -> Result<Vec<TokenBlock>> {
    if max_content == 0 {
        return Err(Error::Msg("masked-LM blocks: the block length must leave room for tokens".into()));
    }
    let mut blocks = Vec::new();
    let mut current = TokenBlock { ids: Vec::new(), word_start: Vec::new() };
    for doc in docs {
        let enc = tokenizer.encode(doc.text.as_str(), false).map_err(|e| Error::Msg(format!("document {}: tokenizer: {e}", doc.id)))?;
        let (ids, word_ids) = (enc.get_ids(), enc.get_word_ids());
        let mut start = 0;
        while start < ids.len() {
            // the word = tokens start..end sharing one word id
            let mut end = start + 1;
            while end < ids.len() && word_ids[end].is_some() && word_ids[end] == word_ids[start] {
                end += 1;
            }
            for (k, piece) in ids[start..end].chunks(max_content).enumerate() {
                if current.len() + piece.len() > max_content {
                    blocks.push(std::mem::replace(&mut current, TokenBlock { ids: Vec::new(), word_start: Vec::new() }));
                }
                current.ids.extend_from_slice(piece);
                current.word_start.extend((0..piece.len()).map(|i| i == 0 && k == 0));
            }
            start = end;
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn tokenizer() -> Tokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/models/all-MiniLM-L6-v2/tokenizer.json");
        let mut t = Tokenizer::from_file(path).unwrap();
        t.with_truncation(None).unwrap();
        t.with_padding(None);
        t
    }

    fn doc(text: &str) -> Document {
        Document { id: "d".into(), text: text.into(), mentions: vec![] }
    }

    #[test]
    fn blocks_keep_every_token_in_order_and_end_at_words() {
        let tok = tokenizer();
        let docs = [doc("Familial hypercholesterolaemia and adenomatous polyposis coli."), doc("The BRCA1 gene is mutated in breast-ovarian cancer families.")];
        let all: Vec<u32> = docs.iter().flat_map(|d| tok.encode(d.text.as_str(), false).unwrap().get_ids().to_vec()).collect();
        for max in [1, 3, 5, 8, 1000] {
            let blocks = token_blocks(&tok, &docs, max).unwrap();
            let joined: Vec<u32> = blocks.iter().flat_map(|b| b.ids.clone()).collect();
            assert_eq!(joined, all, "max {max}");
            assert!(blocks.iter().all(|b| !b.is_empty() && b.len() <= max && b.word_start.len() == b.len()));
            if max >= 8 {
                // no word is longer than 8 pieces here, so every block starts a word
                assert!(blocks.iter().all(|b| b.word_start[0]), "max {max}");
            }
        }
        // `hypercholesterolaemia` is several pieces: only its first starts a word
        let one = token_blocks(&tok, &docs[..1], 1000).unwrap();
        let pieces: Vec<String> = one[0].ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
        let starts: Vec<bool> = pieces.iter().map(|p| !p.starts_with("##")).collect();
        assert_eq!(one[0].word_start, starts, "{pieces:?}");
        assert!(starts.iter().any(|s| !s));
    }
}
