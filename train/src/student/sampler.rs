//! What each training step sees, as a pure function of (seed, position):
//! the example order (a fresh shuffle every epoch) and the labels each
//! example is prompted with. Nothing here carries state between steps, so
//! a resumed run sees exactly what an uninterrupted one would.

use kogner_tensor::Rng;

/// Mix a seed with stream ids into an independent seed (splitmix64 finaliser).
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const ORDER_STREAM: u64 = 1;
const LABEL_STREAM: u64 = 2;
pub(crate) const DROPOUT_STREAM: u64 = 3;
/// A data-parallel step's shard i > 0 draws its dropout masks from (its micro-batch's dropout seed, this, i).
pub(crate) const SHARD_STREAM: u64 = 4;
/// Example i of micro-batch m draws its negative-sampling mask from (seed, this, m · batch size + i).
pub(crate) const NEGATIVE_STREAM: u64 = 5;

/// The example order: epoch e is a shuffle of 0..n seeded by (seed, e).
/// With length grouping (Hugging Face's `group_by_length`), the shuffle
/// is cut into mega-batches of 50 batches, each sorted by length (longest
/// first) so a batch holds similar lengths and pads little, and the batches
/// are shuffled again: every epoch still visits every example once.
pub struct ExampleOrder {
    n: usize,
    seed: u64,
    /// (lengths, batch size) when grouping by length.
    grouping: Option<(Vec<usize>, usize)>,
    epoch: Option<(usize, Vec<usize>)>,
}

/// Batches per length-sorted mega-batch (Hugging Face's `LengthGroupedSampler` uses 50).
const MEGABATCH: usize = 50;

impl ExampleOrder {
    pub fn new(n: usize, seed: u64) -> ExampleOrder {
        ExampleOrder { n, seed, grouping: None, epoch: None }
    }

    /// Batches of `batch_size` consecutive positions hold similar `lengths`.
    pub fn grouped_by_length(lengths: Vec<usize>, batch_size: usize, seed: u64) -> ExampleOrder {
        ExampleOrder { n: lengths.len(), seed, grouping: Some((lengths, batch_size.max(1))), epoch: None }
    }

    fn permutation(&self, epoch: usize) -> Vec<usize> {
        let mut rng = Rng::new(mix(self.seed, ORDER_STREAM, epoch as u64));
        let mut perm: Vec<usize> = (0..self.n).collect();
        rng.shuffle(&mut perm);
        let Some((lengths, bs)) = &self.grouping else { return perm };
        let mut batches: Vec<Vec<usize>> = Vec::new();
        for mega in perm.chunks(MEGABATCH * bs) {
            let mut mega = mega.to_vec();
            mega.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
            batches.extend(mega.chunks(*bs).map(<[usize]>::to_vec));
        }
        rng.shuffle(&mut batches);
        batches.concat()
    }

    /// The example at global position `pos` (position `epoch·n + i`).
    pub fn at(&mut self, pos: usize) -> usize {
        let (epoch, i) = (pos / self.n, pos % self.n);
        if self.epoch.as_ref().map(|(e, _)| *e) != Some(epoch) {
            self.epoch = Some((epoch, self.permutation(epoch)));
        }
        self.epoch.as_ref().expect("set above").1[i]
    }
}

/// How the labels of an example are chosen.
#[derive(Clone, Debug)]
pub enum LabelSampling {
    /// Every label, in a shuffled order.
    All,
    /// GLiNER's `batch_generate_class_mappings`: the example's own labels
    /// plus the first `ratio · #mentions` of the shuffled negatives, ratio
    /// drawn from 0..=max_neg_type_ratio, shuffled, cut at `max_types`.
    Gliner { max_neg_type_ratio: usize, max_types: usize },
}

/// Labels for the example at global position `pos`, given its gold labels.
pub fn example_labels(all: &[String], gold: &[&str], sampling: &LabelSampling, seed: u64, pos: usize) -> Vec<String> {
    let mut rng = Rng::new(mix(seed, LABEL_STREAM, pos as u64));
    match sampling {
        LabelSampling::All => {
            let mut labels = all.to_vec();
            rng.shuffle(&mut labels);
            labels
        }
        LabelSampling::Gliner { max_neg_type_ratio, max_types } => {
            let mut negatives = all.to_vec();
            rng.shuffle(&mut negatives);
            let ratio = rng.below(max_neg_type_ratio + 1);
            let mut labels: Vec<String> = Vec::new();
            for l in gold.iter().map(|s| s.to_string()).chain(negatives.iter().take(ratio * gold.len()).cloned()) {
                if !labels.contains(&l) {
                    labels.push(l);
                }
            }
            if labels.is_empty() {
                // A sentence without mentions still teaches "no entity here".
                labels.push(negatives[0].clone());
            }
            rng.shuffle(&mut labels);
            labels.truncate(*max_types);
            labels
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_is_a_permutation_and_epochs_differ() {
        let mut order = ExampleOrder::new(10, 7);
        let e0: Vec<usize> = (0..10).map(|p| order.at(p)).collect();
        let e1: Vec<usize> = (10..20).map(|p| order.at(p)).collect();
        let mut s0 = e0.clone();
        s0.sort();
        assert_eq!(s0, (0..10).collect::<Vec<_>>());
        assert_ne!(e0, e1);
        // positions are a pure function: asking again (out of order) gives the same
        assert_eq!(ExampleOrder::new(10, 7).at(13), e1[3]);
    }

    #[test]
    fn length_groups_are_permutations_of_similar_lengths() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 7919) % 97).collect();
        let mut order = ExampleOrder::grouped_by_length(lengths.clone(), 4, 3);
        let epoch: Vec<usize> = (0..1000).map(|p| order.at(p)).collect();
        let mut sorted = epoch.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        // padding: the summed (max length in batch) is far below random batches'
        let waste = |e: &[usize]| e.chunks(4).map(|b| 4 * b.iter().map(|&i| lengths[i]).max().unwrap() - b.iter().map(|&i| lengths[i]).sum::<usize>()).sum::<usize>();
        let mut plain = ExampleOrder::new(1000, 3);
        let random: Vec<usize> = (0..1000).map(|p| plain.at(p)).collect();
        assert!(waste(&epoch) * 5 < waste(&random), "{} vs {}", waste(&epoch), waste(&random));
    }

    #[test]
    fn gliner_sampling_keeps_gold_labels_and_limits() {
        let all: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        for pos in 0..50 {
            let l = example_labels(&all, &["b"], &LabelSampling::Gliner { max_neg_type_ratio: 1, max_types: 25 }, 1, pos);
            assert!(l.contains(&"b".to_string()) && l.len() <= 2, "{l:?}");
            let l = example_labels(&all, &[], &LabelSampling::Gliner { max_neg_type_ratio: 1, max_types: 25 }, 1, pos);
            assert_eq!(l.len(), 1);
            let l = example_labels(&all, &["a"], &LabelSampling::All, 1, pos);
            assert_eq!(l.len(), 4);
        }
    }
}
