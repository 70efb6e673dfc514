//! Keep freed memory for reuse. A training or inference step allocates and
//! frees the same large tensors again and again; glibc's malloc serves
//! blocks over its mmap threshold with fresh mmaps and returns freed heap
//! tops to the OS, so every step pays page faults and kernel page zeroing
//! for memory it just gave back (measured: a third of the wall time of a
//! MiniLM training step was system time). Turning both off keeps the
//! memory in the process, where the next step reuses it.

/// Make malloc keep freed memory (glibc on Linux; elsewhere a no-op).
/// Returns whether the settings took effect. Call once at program start.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_MAX: i32 = -4;
        // SAFETY: mallopt only changes malloc's tuning parameters; it takes
        // plain integers, and glibc serialises it against allocation with
        // the arena lock, so calling it while other threads allocate is fine.
        unsafe { mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn allocation_still_works_after_tuning() {
        let on = super::retain_freed_memory();
        assert_eq!(on, cfg!(all(target_os = "linux", target_env = "gnu")));
        // a large block (over the default 32 MiB mmap ceiling) comes from the heap now
        let v = vec![1.5f32; 16 << 20];
        assert_eq!(v.iter().map(|&x| x as f64).sum::<f64>(), 1.5 * (16 << 20) as f64);
    }
}
