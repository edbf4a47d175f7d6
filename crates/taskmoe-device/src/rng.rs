//! One owner at a time for libtorch's process-global random generator.
//!
//! libtorch draws parameter initialisations, `randn` / `rand`, the dropout seeds of
//! `taskmoe_kernels::dropout` and router noise from one generator per device type, shared by
//! every thread of the process. `tch::manual_seed(s)` followed by draws is reproducible only
//! if no other thread draws in between: two test threads that each seed and draw interleave,
//! and so do two trainers in one process. [`seeded`] makes "seed, then draw" one critical
//! section: it holds a process-wide lock, seeds, runs the closure and releases. The lock is
//! re-entrant, so a seeded section may call code that takes it again (a test that seeds around
//! `Trainer::new`, which seeds itself).
//!
//! The rule (docs/architecture.md, testing): every test that seeds the global generator and
//! depends on what it draws does so through [`seeded`], and so does every test in the same
//! binary that draws from it at all; library code that seeds (the trainer) does the same.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};

/// Who holds the generator and how many times (re-entrant).
struct Owner {
    thread: Option<ThreadId>,
    depth: usize,
}

static OWNER: Mutex<Owner> = Mutex::new(Owner {
    thread: None,
    depth: 0,
});
static RELEASED: Condvar = Condvar::new();

fn owner() -> MutexGuard<'static, Owner> {
    // A panic inside a seeded section (a failing test) must not poison the others.
    OWNER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Exclusive use of the global generator until dropped; taken by [`lock_global_rng`].
#[must_use = "the generator is released when the guard is dropped"]
pub struct GlobalRngGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for GlobalRngGuard {
    fn drop(&mut self) {
        let mut o = owner();
        o.depth -= 1;
        if o.depth == 0 {
            o.thread = None;
            RELEASED.notify_all();
        }
    }
}

/// Waits until no other thread holds the global generator and takes it (again, if this thread
/// holds it already). Draws made while the guard lives are not interleaved with draws of other
/// threads that take the lock.
pub fn lock_global_rng() -> GlobalRngGuard {
    let me = thread::current().id();
    let mut o = owner();
    while o.thread.is_some_and(|t| t != me) {
        o = RELEASED.wait(o).unwrap_or_else(PoisonError::into_inner);
    }
    o.thread = Some(me);
    o.depth += 1;
    GlobalRngGuard {
        _not_send: std::marker::PhantomData,
    }
}

/// Runs `f` with the global generator seeded to `seed` and held by this thread, so everything
/// `f` draws is a pure function of `seed` whatever else runs in the process.
pub fn seeded<R>(seed: i64, f: impl FnOnce() -> R) -> R {
    let _guard = lock_global_rng();
    tch::manual_seed(seed);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    fn draw() -> Vec<f32> {
        Vec::try_from(Tensor::randn([64], (Kind::Float, tch::Device::Cpu))).unwrap()
    }

    #[test]
    fn seeded_draws_repeat_while_other_threads_draw() {
        let reference = seeded(5, draw);
        let noisy: Vec<_> = (0..4)
            .map(|_| {
                thread::spawn(|| {
                    for _ in 0..50 {
                        let _guard = lock_global_rng();
                        let _ = draw();
                    }
                })
            })
            .collect();
        for _ in 0..50 {
            assert_eq!(seeded(5, draw), reference);
        }
        for t in noisy {
            t.join().unwrap();
        }
    }

    #[test]
    fn the_lock_is_reentrant() {
        let inner = seeded(1, || seeded(2, draw));
        assert_eq!(inner, seeded(2, draw));
    }
}
