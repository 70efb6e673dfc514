//! Read-only memory maps of weight files. Mapping a file is `unsafe` in
//! Rust (another process could change it underneath); keeping the one
//! call here leaves every other crate free of `unsafe`.

use std::fs::File;

pub use memmap2::Mmap;
use memmap2::MmapOptions;

/// Map `len` bytes of `file` starting at byte `offset`, read-only.
pub fn map_range(file: &File, offset: u64, len: usize) -> std::io::Result<Mmap> {
    // SAFETY: the mapping is read-only; reading it is undefined only if the
    // file is truncated or rewritten in place while mapped. kogner never
    // does that to its inputs, and its own writers replace files by rename,
    // which leaves an existing mapping's inode intact.
    unsafe { MmapOptions::new().offset(offset).len(len).map(file) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_range_equals_the_bytes_read() {
        let path = std::env::temp_dir().join(format!("kogner-mmap-{}", std::process::id()));
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        for (off, len) in [(0usize, 1usize), (4097, 9000), (12_345, 7_655)] {
            let m = map_range(&f, off as u64, len).unwrap();
            assert_eq!(&m[..], &bytes[off..off + len]);
        }
        std::fs::remove_file(&path).unwrap();
    }
}
