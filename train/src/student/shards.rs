//! Data parallelism inside a training step: a micro-batch is cut into
//! shards of whole examples that run forward and backward at the same time,
//! each on its own thread pool, and their gradients are added.
//!
//! Why: a MiniLM step's ops are too small for two threads to split each one
//! well (one → two threads gave only 1.47× on a Zen3), while two halves of
//! a batch are independent work with no synchronisation between ops.
//!
//! The sum of the shards' gradients is the micro-batch's gradient when each
//! shard's loss is its share of the whole batch's loss. That is so for sums;
//! a mean (GLiNER's `mean` divides by the padded logits' element count, the
//! distillation MSE by the linked spans) must be scaled by
//! (the shard's count / the whole batch's), which the trainer does.
//!
//! Cost: each shard holds a whole set of gradients until they are added,
//! dense embedding rows included (393 MB a shard for DeBERTa-v3's 128k
//! vocabulary), so memory grows with the shard count.

use rayon::{ThreadPool, ThreadPoolBuilder};

use kogner_autograd::Var;
use kogner_tensor::{Error, Result};

/// One thread pool per shard; none when the step runs on the caller's
/// threads (one thread, or one example per micro-batch).
pub struct Shards {
    pools: Vec<ThreadPool>,
}

impl Shards {
    /// `threads` split evenly over min(`threads`, `batch_size`) shards.
    pub fn new(threads: usize, batch_size: usize) -> Result<Shards> {
        let count = threads.min(batch_size);
        if count <= 1 {
            return Ok(Shards { pools: Vec::new() });
        }
        let pools = (0..count)
            .map(|i| {
                let size = threads / count + usize::from(i < threads % count);
                ThreadPoolBuilder::new()
                    .num_threads(size)
                    .thread_name(move |t| format!("shard{i}-{t}"))
                    .build()
                    .map_err(|e| Error::Msg(format!("data-parallel step: cannot start shard {i}'s threads: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(Shards { pools })
    }

    /// How many shards a micro-batch is cut into (at most).
    pub fn count(&self) -> usize {
        self.pools.len().max(1)
    }

    /// `f(i, inputs[i])` for every input at once, input i on pool i (on the
    /// caller's thread when there are no pools); results in input order.
    pub fn run<T: Send, R: Send>(&self, inputs: Vec<T>, f: impl Fn(usize, T) -> R + Sync) -> Vec<R> {
        assert!(inputs.len() <= self.count(), "{} shards for {} pools", inputs.len(), self.count());
        if self.pools.is_empty() || inputs.len() == 1 {
            return inputs.into_iter().enumerate().map(|(i, x)| f(i, x)).collect();
        }
        let f = &f;
        std::thread::scope(|scope| {
            let running: Vec<_> = inputs.into_iter().zip(&self.pools).enumerate().map(|(i, (x, pool))| scope.spawn(move || pool.install(|| f(i, x)))).collect();
            running.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        })
    }
}

/// A shard's part of a batch mean: `mean`, taken over the shard's `part`
/// elements, times part / `whole` (the batch's count), so the shards' parts
/// add up to the batch's mean. Unchanged when the shard is the whole batch.
pub fn part_of_mean(mean: Var, part: usize, whole: usize) -> Result<Var> {
    if part == whole {
        return Ok(mean);
    }
    mean.mul_scalar(part as f64 / whole as f64)
}

/// Cut examples of cost `costs[i]` (their length) into at most `parts`
/// groups of similar padded cost, returned as ascending example indices.
/// A shard pads every example to its longest, so its work is (examples ×
/// longest cost); groups are runs of the examples sorted by cost, the cut
/// chosen (dynamic programming) to make the largest group's work smallest.
pub fn partition(costs: &[usize], parts: usize) -> Vec<Vec<usize>> {
    let n = costs.len();
    let parts = parts.clamp(1, n.max(1));
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(costs[i]));
    // Sorted longest first, a run order[a..b] costs (b − a) · costs[order[a]].
    let work = |a: usize, b: usize| (b - a) * costs[order[a]];
    // best[p][b]: the smallest largest-group work for order[..b] in p groups; cut[p][b]: its last group's start.
    let mut best = vec![vec![usize::MAX; n + 1]; parts + 1];
    let mut cut = vec![vec![0; n + 1]; parts + 1];
    best[0][0] = 0;
    for p in 1..=parts {
        for b in p..=n {
            for a in p - 1..b {
                if best[p - 1][a] == usize::MAX {
                    continue;
                }
                let w = best[p - 1][a].max(work(a, b));
                if w < best[p][b] {
                    best[p][b] = w;
                    cut[p][b] = a;
                }
            }
        }
    }
    let p_best = (1..=parts).filter(|&p| best[p][n] != usize::MAX).min_by_key(|&p| (best[p][n], std::cmp::Reverse(p))).unwrap_or(1);
    let mut groups = Vec::with_capacity(p_best);
    let (mut p, mut b) = (p_best, n);
    while p > 0 {
        let a = cut[p][b];
        let mut group = order[a..b].to_vec();
        group.sort_unstable();
        groups.push(group);
        (p, b) = (p - 1, a);
    }
    groups.reverse();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(costs: &[usize], group: &[usize]) -> usize {
        group.len() * group.iter().map(|&i| costs[i]).max().unwrap_or(0)
    }

    #[test]
    fn partition_balances_padded_work() {
        // Sorted: 50 40 30 | 20 10 10 10 10 → works 150 and 100 (halves: 200 and 40).
        let costs = [10, 50, 10, 20, 40, 10, 30, 10];
        let groups = partition(&costs, 2);
        assert_eq!(groups, vec![vec![1, 4, 6], vec![0, 2, 3, 5, 7]]);
        assert_eq!(groups.iter().map(|g| work(&costs, g)).max(), Some(150));
        assert_eq!(partition(&costs, 1), vec![(0..8).collect::<Vec<_>>()]);
        // Every example in exactly one group, never more groups than asked or than examples.
        for parts in 1..=10 {
            let groups = partition(&costs, parts);
            assert!(groups.len() <= parts.min(costs.len()) && groups.iter().all(|g| !g.is_empty()));
            let mut all: Vec<usize> = groups.concat();
            all.sort_unstable();
            assert_eq!(all, (0..8).collect::<Vec<_>>());
        }
        // Equal lengths split evenly.
        assert_eq!(partition(&[7; 8], 2).iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4]);
        assert_eq!(partition(&[], 2), vec![Vec::<usize>::new()]);
    }

    #[test]
    fn shards_run_each_input_on_its_own_pool_and_keep_the_order() {
        let shards = Shards::new(2, 8).unwrap();
        assert_eq!(shards.count(), 2);
        let out = shards.run(vec![3, 4], |i, x| (i, x * 10, rayon::current_num_threads(), std::thread::current().name().map(str::to_owned)));
        assert_eq!((out[0].0, out[0].1, out[1].0, out[1].1), (0, 30, 1, 40));
        assert_eq!((out[0].2, out[1].2), (1, 1));
        assert_eq!((out[0].3.as_deref(), out[1].3.as_deref()), (Some("shard0-0"), Some("shard1-0")));
        // One thread, or one example per batch: no pools, the caller's thread.
        assert_eq!(Shards::new(1, 8).unwrap().count(), 1);
        assert_eq!(Shards::new(4, 1).unwrap().count(), 1);
        // Threads beyond the batch size go to the shards' own pools.
        let wide = Shards::new(5, 2).unwrap();
        assert_eq!(wide.run(vec![(), ()], |_, _| rayon::current_num_threads()), vec![3, 2]);
    }
}
