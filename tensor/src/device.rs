/// Where a tensor's storage lives. Only the CPU exists today; the CUDA
/// backend (NVRTC kernels + cuBLAS behind a `cuda` feature) will add a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Device {
    #[default]
    Cpu,
}
