//! The thread-local switch that turns op recording off (inference).

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// While alive, ops on this thread record nothing; restores the previous mode on drop.
pub struct NoGradGuard {
    prev: bool,
}

impl NoGradGuard {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let prev = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard { prev }
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.prev));
    }
}

/// Run `f` with recording off.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _g = NoGradGuard::new();
    f()
}
