//! A small counter-based random generator (SplitMix64 finaliser over a
//! counter). Deterministic for a seed on every machine and thread count:
//! element i of a draw depends only on (seed, stream position), so bulk
//! draws can be filled in parallel and runs reproduce exactly.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    key: u64,
    counter: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { key: mix(seed ^ 0x6B6F_676E_6572), counter: 0 }
    }

    /// The generator's full state (for checkpoints): (key, counter).
    pub fn state(&self) -> (u64, u64) {
        (self.key, self.counter)
    }
    pub fn from_state(key: u64, counter: u64) -> Rng {
        Rng { key, counter }
    }

    #[inline]
    fn at(&self, i: u64) -> u64 {
        mix(self.key.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN)))
    }

    pub fn next_u64(&mut self) -> u64 {
        let v = self.at(self.counter);
        self.counter += 1;
        v
    }

    /// Uniform in [0, 1) with 24 random bits (exact in f32).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / 16_777_216.0
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `0..n` (n > 0), without modulo bias worth noting for n ≪ 2^64.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// `n` uniforms in [0,1), filled in parallel; advances the stream by `n`.
    pub fn uniform_f32_vec(&mut self, n: usize) -> Vec<f32> {
        use rayon::prelude::*;
        let base = self.counter;
        let me = self.clone();
        let mut out = vec![0f32; n];
        out.par_chunks_mut(1 << 16).enumerate().for_each(|(c, chunk)| {
            for (j, o) in chunk.iter_mut().enumerate() {
                let i = base + (c * (1 << 16) + j) as u64;
                *o = (me.at(i) >> 40) as f32 / 16_777_216.0;
            }
        });
        self.counter += n as u64;
        out
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_and_single_draws_agree_and_reproduce() {
        let mut a = Rng::new(7);
        let bulk = a.uniform_f32_vec(200_000);
        let mut b = Rng::new(7);
        let single: Vec<f32> = (0..200_000).map(|_| b.next_f32()).collect();
        assert_eq!(bulk, single);
        assert_eq!(a, b);
        let mean = bulk.iter().map(|&v| v as f64).sum::<f64>() / bulk.len() as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert_ne!(Rng::new(8).next_u64(), Rng::new(7).next_u64());
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = Rng::new(1);
        let v: Vec<f64> = (0..100_000).map(|_| r.normal()).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.02, "mean {mean} var {var}");
    }
}
