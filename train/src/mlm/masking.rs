//! Whole-word masking, as Hugging Face's `DataCollatorForWholeWordMask`:
//! words are drawn in a random order and taken whole while the masked
//! tokens stay within `round(mask_prob · sequence length)` (special tokens
//! counted in the length, never masked; a block whose words are all over
//! that budget has one word predicted all the same, so every sequence
//! teaches something); then each chosen token becomes
//! `[MASK]` with probability 0.8, a random token with 0.1, or stays as it
//! is, and only the chosen tokens are predicted.
//!
//! The draw is a function of the rng handed in, which the trainer seeds
//! from (seed, position), so every epoch masks anew (RoBERTa's dynamic
//! masking) and a run is reproducible.

use kogner_tensor::Rng;

use super::blocks::TokenBlock;

/// The target of a position that is not predicted (PyTorch's `ignore_index`).
pub const IGNORE: i64 = -100;

/// Ids the masking needs.
#[derive(Clone, Copy, Debug)]
pub struct MaskSpec {
    pub mask_prob: f64,
    pub mask_id: u32,
    /// Random replacements are drawn from `0..vocab_size`, as HF does.
    pub vocab_size: usize,
}

/// A block with its masking: `inputs` and `targets` cover the block's
/// content tokens (the caller adds the special tokens around them).
#[derive(Clone, Debug, PartialEq)]
pub struct MaskedBlock {
    pub inputs: Vec<u32>,
    /// The original id where predicted, [`IGNORE`] elsewhere.
    pub targets: Vec<i64>,
}

/// Mask `block`, a sequence of `block.len() + specials` tokens.
pub fn mask_whole_words(block: &TokenBlock, specials: usize, spec: &MaskSpec, rng: &mut Rng) -> MaskedBlock {
    let n = block.len();
    // words as token ranges
    let mut words: Vec<(usize, usize)> = Vec::new();
    for i in 0..n {
        if block.word_start[i] || words.is_empty() {
            words.push((i, i + 1));
        } else {
            words.last_mut().expect("pushed above").1 = i + 1;
        }
    }
    rng.shuffle(&mut words);
    let budget = (((n + specials) as f64 * spec.mask_prob).round() as usize).max(1);
    let mut chosen = vec![false; n];
    let mut count = 0;
    for &(a, b) in &words {
        if count >= budget {
            break;
        }
        if count + (b - a) > budget {
            continue;
        }
        chosen[a..b].iter_mut().for_each(|c| *c = true);
        count += b - a;
    }
    if count == 0 {
        // every word is over the budget (a short block of long words): HF
        // would predict nothing, and a batch of such blocks has no loss
        if let Some(&(a, b)) = words.first() {
            chosen[a..b].iter_mut().for_each(|c| *c = true);
        }
    }
    let mut inputs = block.ids.clone();
    let mut targets = vec![IGNORE; n];
    for i in (0..n).filter(|&i| chosen[i]) {
        targets[i] = i64::from(block.ids[i]);
        if rng.next_f64() < 0.8 {
            inputs[i] = spec.mask_id;
        } else if rng.next_f64() < 0.5 {
            inputs[i] = rng.below(spec.vocab_size) as u32;
        }
    }
    MaskedBlock { inputs, targets }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words of 1–3 pieces, ids 1000.. so they never collide with the mask id.
    fn block(word_lens: &[usize]) -> TokenBlock {
        let mut b = TokenBlock { ids: Vec::new(), word_start: Vec::new() };
        for &len in word_lens {
            for k in 0..len {
                b.ids.push(1000 + b.ids.len() as u32);
                b.word_start.push(k == 0);
            }
        }
        b
    }

    const SPEC: MaskSpec = MaskSpec { mask_prob: 0.15, mask_id: 103, vocab_size: 30522 };

    #[test]
    fn budget_whole_words_and_targets() {
        let lens: Vec<usize> = (0..60).map(|i| 1 + i % 3).collect();
        let b = block(&lens);
        for seed in 0..50 {
            let m = mask_whole_words(&b, 2, &SPEC, &mut Rng::new(seed));
            let predicted: Vec<usize> = (0..b.len()).filter(|&i| m.targets[i] != IGNORE).collect();
            // within the budget, and (words being at most 3 pieces) close to it
            let budget = ((b.len() + 2) as f64 * 0.15).round() as usize;
            assert!(predicted.len() <= budget && predicted.len() + 2 >= budget, "{} of {budget}", predicted.len());
            for i in 0..b.len() {
                if m.targets[i] == IGNORE {
                    assert_eq!(m.inputs[i], b.ids[i], "an unpredicted token is changed");
                } else {
                    assert_eq!(m.targets[i], i64::from(b.ids[i]));
                }
                // whole words: a continuation piece is predicted iff its word's first piece is
                if !b.word_start[i] {
                    assert_eq!(m.targets[i] == IGNORE, m.targets[i - 1] == IGNORE);
                }
            }
        }
    }

    #[test]
    fn a_word_over_the_budget_is_predicted_whole_when_it_is_all_there_is() {
        // budget round(7 · 0.15) = 1 token, the one word has 5 pieces
        let m = mask_whole_words(&block(&[5]), 2, &SPEC, &mut Rng::new(0));
        assert!(m.targets.iter().all(|&t| t != IGNORE), "{m:?}");
    }

    #[test]
    fn eighty_ten_ten_and_reproducible() {
        let b = block(&vec![1; 400]);
        let (mut masked, mut kept, mut random, mut total) = (0, 0, 0, 0);
        for seed in 0..200 {
            let m = mask_whole_words(&b, 2, &SPEC, &mut Rng::new(seed));
            assert_eq!(m, mask_whole_words(&b, 2, &SPEC, &mut Rng::new(seed)));
            for i in (0..b.len()).filter(|&i| m.targets[i] != IGNORE) {
                total += 1;
                match m.inputs[i] {
                    103 => masked += 1,
                    x if x == b.ids[i] => kept += 1,
                    _ => random += 1,
                }
            }
        }
        let frac = |k: usize| k as f64 / total as f64;
        assert!((frac(masked) - 0.8).abs() < 0.02, "{}", frac(masked));
        assert!((frac(kept) - 0.1).abs() < 0.015, "{}", frac(kept));
        assert!((frac(random) - 0.1).abs() < 0.015, "{}", frac(random));
        assert_ne!(mask_whole_words(&b, 2, &SPEC, &mut Rng::new(1)), mask_whole_words(&b, 2, &SPEC, &mut Rng::new(2)));
    }
}
