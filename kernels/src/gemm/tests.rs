//! Every available ISA path against [`gemm_reference`] computed in f64.

use proptest::prelude::*;
use rayon::prelude::*;

use super::*;

/// Deterministic values in [-1, 1) (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// How one operand is stored.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Stored transposed (column-major), read through `.t()`-style strides.
    trans: bool,
    /// Extra elements at the end of each stored row (a sub-matrix view).
    pad: usize,
    /// One matrix shared by the whole batch (batch stride 0).
    broadcast: bool,
}

const PLAIN: Layout = Layout { trans: false, pad: 0, broadcast: false };
const TRANS: Layout = Layout { trans: true, pad: 0, broadcast: false };

/// Storage and strides `(data, row_stride, col_stride, batch_stride)` of a
/// batch of random `rows × cols` matrices laid out as `layout`.
fn operand(rng: &mut Rng, batch: usize, rows: usize, cols: usize, layout: Layout) -> (Vec<f64>, usize, usize, usize) {
    let (outer, inner) = if layout.trans { (cols, rows) } else { (rows, cols) };
    let ld = inner + layout.pad;
    let size = outer * ld;
    let items = if layout.broadcast { 1 } else { batch };
    let (rs, cs) = if layout.trans { (1, ld) } else { (ld, 1) };
    (rng.vec(size * items), rs, cs, if layout.broadcast { 0 } else { size })
}

#[derive(Clone, Copy, Debug)]
struct Case {
    dims: GemmDims,
    a: Layout,
    b: Layout,
    /// Extra elements per row of C.
    c_pad: usize,
    alpha: f64,
    beta: f64,
}

impl Case {
    fn new(batch: usize, m: usize, n: usize, k: usize) -> Self {
        Case { dims: GemmDims { batch, m, n, k }, a: PLAIN, b: PLAIN, c_pad: 0, alpha: 1.0, beta: 0.0 }
    }
    fn layouts(self, a: Layout, b: Layout) -> Self {
        Case { a, b, ..self }
    }
    fn scale(self, alpha: f64, beta: f64) -> Self {
        Case { alpha, beta, ..self }
    }
    fn c_pad(self, c_pad: usize) -> Self {
        Case { c_pad, ..self }
    }
}

/// Runs `case` in T on `isa` and compares with the f64 reference, element
/// by element, within `sqrt(k)·eps·(|alpha|·Σ|a||b| + |beta·c|)` (times 4).
fn check<T: Float>(isa: Isa, case: Case, seed: u64) {
    let GemmDims { batch, m, n, k } = case.dims;
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (a, a_rs, a_cs, a_bs) = operand(&mut rng, batch, m, k, case.a);
    let (b, b_rs, b_cs, b_bs) = operand(&mut rng, batch, k, n, case.b);
    let ldc = n + case.c_pad;
    let c0 = rng.vec(batch * m * ldc);
    // Round the inputs to T first so the reference sees the same values.
    let round = |v: &[f64]| -> Vec<f64> { v.iter().map(|&x| T::from_f64(x).to_f64()).collect() };
    let (a, b, c0) = (round(&a), round(&b), round(&c0));
    let (alpha, beta) = (T::from_f64(case.alpha).to_f64(), T::from_f64(case.beta).to_f64());

    fn view<X>(data: &[X], row_stride: usize, col_stride: usize, batch_stride: usize) -> MatRef<'_, X> {
        MatRef { data, row_stride, col_stride, batch_stride }
    }
    let mut want = c0.clone();
    gemm_reference(
        case.dims,
        alpha,
        view(&a, a_rs, a_cs, a_bs),
        view(&b, b_rs, b_cs, b_bs),
        beta,
        MatMut { data: &mut want, row_stride: ldc, batch_stride: m * ldc },
    );
    let (abs_a, abs_b): (Vec<f64>, Vec<f64>) =
        (a.iter().map(|x| x.abs()).collect(), b.iter().map(|x| x.abs()).collect());
    let mut bound = c0.iter().map(|x| x.abs()).collect::<Vec<_>>();
    gemm_reference(
        case.dims,
        alpha.abs(),
        view(&abs_a, a_rs, a_cs, a_bs),
        view(&abs_b, b_rs, b_cs, b_bs),
        beta.abs(),
        MatMut { data: &mut bound, row_stride: ldc, batch_stride: m * ldc },
    );

    let to_t = |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::from_f64(x)).collect() };
    let (at, bt) = (to_t(&a), to_t(&b));
    // With beta == 0, C must not be read: start from NaN.
    let mut got: Vec<T> = if case.beta == 0.0 { vec![T::from_f64(f64::NAN); c0.len()] } else { to_t(&c0) };
    gemm_with(
        isa,
        case.dims,
        T::from_f64(alpha),
        view(&at, a_rs, a_cs, a_bs),
        view(&bt, b_rs, b_cs, b_bs),
        T::from_f64(beta),
        MatMut { data: &mut got, row_stride: ldc, batch_stride: m * ldc },
    );

    let eps = if T::NAME == "f32" { f32::EPSILON as f64 } else { f64::EPSILON };
    let scale = 4.0 * (k.max(1) as f64).sqrt() * eps;
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..ldc {
                let idx = bi * m * ldc + i * ldc + j;
                let g = got[idx].to_f64();
                if j >= n {
                    // Padding of C must be left alone.
                    let untouched = if case.beta == 0.0 { g.is_nan() } else { g == c0[idx] };
                    assert!(untouched, "{isa:?} {} {case:?}: C padding ({bi},{i},{j}) overwritten with {g}", T::NAME);
                    continue;
                }
                let tol = scale * bound[idx] + f64::MIN_POSITIVE;
                assert!(
                    (g - want[idx]).abs() <= tol,
                    "{isa:?} {} {case:?}: C[{bi},{i},{j}] = {g}, want {} (tol {tol:e})",
                    T::NAME,
                    want[idx]
                );
            }
        }
    }
}

/// `check` on every available path, in f32 and f64.
fn check_all(case: Case) {
    for (s, isa) in Isa::all_available().into_iter().enumerate() {
        check::<f32>(isa, case, s as u64 + 1);
    }
    check::<f64>(Isa::Scalar, case, 7);
}

fn all_transposes(case: Case) {
    for a in [PLAIN, TRANS] {
        for b in [PLAIN, TRANS] {
            check_all(case.layouts(a, b));
        }
    }
}

#[test]
fn tiny_and_odd_shapes() {
    for (m, n, k) in [(1, 1, 1), (7, 13, 5), (2, 3, 1), (1, 40, 3), (40, 1, 3), (3, 5, 300)] {
        all_transposes(Case::new(1, m, n, k).scale(1.5, 0.0));
    }
}

#[test]
fn shapes_straddling_tiles_and_blocks() {
    // Around MR/NR of every path (4×4, 6×16, 8×32), KC (256, 384) and MC
    // (64, 144, 256); with m or n <= 64 the kernels read A / B in place,
    // above both they read packed panels.
    for (m, n, k) in [
        (17, 33, 19),
        (5, 15, 64),
        (6, 16, 7),
        (31, 47, 385),
        (97, 50, 257),
        (145, 17, 33),
        (257, 18, 20),
        (80, 90, 60),
    ] {
        all_transposes(Case::new(1, m, n, k).scale(0.5, -1.25));
    }
}

#[test]
fn threaded_products() {
    // Big enough to be split over threads: over N (m <= n), over M, and a
    // batch that does not divide evenly.
    check_all(Case::new(1, 40, 200, 130).layouts(PLAIN, TRANS));
    check_all(Case::new(1, 200, 300, 50).scale(1.0, -1.0));
    check_all(Case::new(1, 200, 40, 130).layouts(TRANS, PLAIN).scale(1.0, 1.0));
    check_all(Case::new(3, 70, 90, 100).scale(2.0, 0.5));
}

#[test]
fn deep_products_split_over_k() {
    // Deep, with a row-major B (or column-major A) that a cut over N (M)
    // would split: the threads take depth ranges and C sums their parts.
    check_all(Case::new(1, 8, 40, 2100).scale(1.5, 0.5));
    check_all(Case::new(1, 40, 8, 2100).layouts(TRANS, TRANS).scale(-1.0, 1.0));
    check_all(Case::new(3, 8, 24, 2100).c_pad(3));
}

#[test]
fn batched_with_broadcast_operands() {
    let bcast = |l: Layout| Layout { broadcast: true, ..l };
    for case in [Case::new(5, 9, 20, 30), Case::new(4, 33, 40, 50)] {
        check_all(case.layouts(bcast(PLAIN), PLAIN).scale(1.0, 2.0));
        check_all(case.layouts(TRANS, bcast(TRANS)));
        check_all(case.layouts(PLAIN, bcast(TRANS)).scale(-1.0, 0.25));
    }
}

#[test]
fn sub_matrix_views() {
    let padded = |l: Layout| Layout { pad: 3, ..l };
    for case in [Case::new(2, 19, 21, 23), Case::new(1, 37, 70, 45)] {
        for (a, b) in [(PLAIN, PLAIN), (PLAIN, TRANS), (TRANS, PLAIN), (TRANS, TRANS)] {
            check_all(case.layouts(padded(a), padded(b)).c_pad(5).scale(1.0, 1.0));
            check_all(case.layouts(padded(a), padded(b)).c_pad(2));
        }
    }
}

#[test]
fn zero_depth_scales_c() {
    check_all(Case::new(2, 5, 7, 0).scale(1.0, 3.0));
    check_all(Case::new(2, 5, 7, 0));
}

#[test]
fn nested_inside_rayon() {
    let (m, n, k) = (48, 64, 80);
    let mut rng = Rng(3);
    let a: Vec<f32> = rng.vec(m * k).iter().map(|&x| x as f32).collect();
    let b: Vec<f32> = rng.vec(k * n).iter().map(|&x| x as f32).collect();
    let dims = GemmDims { batch: 1, m, n, k };
    let mut want = vec![0f32; m * n];
    gemm_reference(
        dims,
        1.0,
        MatRef::row_major(&a, m, k),
        MatRef::row_major(&b, k, n),
        0.0,
        MatMut { data: &mut want, row_stride: n, batch_stride: m * n },
    );
    let outs: Vec<Vec<f32>> = (0..8)
        .into_par_iter()
        .map(|_| {
            let mut c = vec![f32::NAN; m * n];
            gemm(
                dims,
                1.0,
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                0.0,
                MatMut { data: &mut c, row_stride: n, batch_stride: m * n },
            );
            c
        })
        .collect();
    for c in outs {
        for (g, w) in c.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }
}

#[test]
#[should_panic(expected = "too short")]
fn short_operand_panics() {
    let (a, b, mut c) = (vec![0f32; 5], vec![0f32; 6], vec![0f32; 4]);
    gemm(
        GemmDims { batch: 1, m: 2, n: 2, k: 3 },
        1.0,
        MatRef::row_major(&a, 2, 3),
        MatRef::row_major(&b, 3, 2),
        0.0,
        MatMut { data: &mut c, row_stride: 2, batch_stride: 4 },
    );
}

#[test]
#[should_panic(expected = "overlap")]
fn overlapping_c_panics() {
    let (a, b, mut c) = (vec![0f32; 6], vec![0f32; 6], vec![0f32; 4]);
    gemm(
        GemmDims { batch: 1, m: 2, n: 2, k: 3 },
        1.0,
        MatRef::row_major(&a, 2, 3),
        MatRef::row_major(&b, 3, 2),
        0.0,
        MatMut { data: &mut c, row_stride: 1, batch_stride: 4 },
    );
}

#[test]
fn flops() {
    assert_eq!(gemm_flops(GemmDims { batch: 3, m: 2, n: 5, k: 7 }), 420.0);
}

fn layout() -> impl Strategy<Value = Layout> {
    (any::<bool>(), 0..3usize, any::<bool>()).prop_map(|(trans, pad, broadcast)| Layout { trans, pad, broadcast })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_shapes(
        batch in 1..4usize,
        m in 1..70usize,
        n in 1..70usize,
        k in 0..90usize,
        a in layout(),
        b in layout(),
        c_pad in 0..3usize,
        alpha in prop_oneof![Just(1.0), -2.0..2.0f64],
        beta in prop_oneof![Just(0.0), Just(1.0), -2.0..2.0f64],
        seed in any::<u64>(),
    ) {
        let case = Case { dims: GemmDims { batch, m, n, k }, a, b, c_pad, alpha, beta };
        for isa in Isa::all_available() {
            check::<f32>(isa, case, seed);
        }
        check::<f64>(Isa::Scalar, case, seed);
    }
}

/// A packed B gives the very bits of the strided call on the same path (both
/// pack the same panels; neither splits the depth), and C's padding stays.
fn check_prepacked(isa: Isa, (m, n, k): (usize, usize, usize), b_trans: bool, c_pad: usize, beta: f32, seed: u64) {
    let mut rng = Rng(seed | 1);
    let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let (a, b) = (f32s(rng.vec(m * k)), f32s(rng.vec(k * n)));
    let b_view = if b_trans { MatRef::row_major(&b, n, k).t() } else { MatRef::row_major(&b, k, n) };
    let ldc = n + c_pad;
    let c0 = f32s(rng.vec(m * ldc));
    let packed = PackedB::new_with(isa, b_view, k, n);
    assert_eq!((packed.k(), packed.n(), packed.isa()), (k, n, isa));
    let mut got = c0.clone();
    let c = MatMut { data: &mut got, row_stride: ldc, batch_stride: 0 };
    gemm_prepacked(m, 0.75, MatRef::row_major(&a, m, k), &packed, beta, c);
    let mut want = c0.clone();
    let c = MatMut { data: &mut want, row_stride: ldc, batch_stride: 0 };
    gemm_with(isa, GemmDims { batch: 1, m, n, k }, 0.75, MatRef::row_major(&a, m, k), b_view, beta, c);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g.to_bits() == w.to_bits(), "{isa:?} {m}x{n}x{k} trans {b_trans}: C[{i}] = {g}, strided {w}");
    }
}

#[test]
fn prepacked_b_on_model_shapes() {
    // A sentence (57 rows) and a batch (456) against 1024→4096 / 4096→1024 weights.
    for isa in Isa::all_available() {
        for dims in [(57, 4096, 1024), (456, 1024, 4096), (3, 70, 1030)] {
            check_prepacked(isa, dims, true, 0, 0.0, 11);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn prepacked_b_random_shapes(
        m in 1..150usize,
        n in 1..150usize,
        k in 0..800usize,
        b_trans in any::<bool>(),
        c_pad in 0..3usize,
        beta in prop_oneof![Just(0.0f32), Just(1.0), -2.0..2.0f32],
        seed in any::<u64>(),
    ) {
        for isa in Isa::all_available() {
            check_prepacked(isa, (m, n, k), b_trans, c_pad, beta, seed);
        }
    }
}
