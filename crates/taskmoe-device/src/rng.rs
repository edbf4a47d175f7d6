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

use std::cell::Cell;
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

thread_local! {
    /// The base seed of [`keyed_initialisation`] while it runs on this thread.
    static INIT_KEY: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `f` (which builds a model) so that every module that draws its parameters through
/// [`draw_for`] draws them from a stream keyed by `(seed, module name)` instead of from one
/// stream consumed in construction order. Two models that share module names then share
/// those modules' initial values bit for bit, whatever else each has: the dense and the MoE
/// arm of one seed start from the same embeddings, attention, norms and heads (paired
/// initialisation), and adding a router or an expert does not move any other parameter.
///
/// Holds the global generator (as [`seeded`]) for the whole of `f`; nested calls use the
/// innermost seed.
pub fn keyed_initialisation<R>(seed: u64, f: impl FnOnce() -> R) -> R {
    let _guard = lock_global_rng();
    let outer = INIT_KEY.with(|k| k.replace(Some(seed)));
    let result = f();
    INIT_KEY.with(|k| k.set(outer));
    result
}

/// Runs `f`, which draws the parameters of the module called `name` (its path in the model,
/// `encoder.layer.0.attention`). Inside [`keyed_initialisation`] the global generator is first
/// seeded with [`init_key`]`(seed, name)`; outside it nothing is reseeded and `f` draws from
/// the generator's current stream, as before.
pub fn draw_for<R>(name: &str, f: impl FnOnce() -> R) -> R {
    match INIT_KEY.with(Cell::get) {
        Some(seed) => {
            let _guard = lock_global_rng();
            tch::manual_seed(init_key(seed, name));
            f()
        }
        None => f(),
    }
}

/// A module's name for [`draw_for`]: its path's components joined by `.`
/// (`encoder.layer.0.attention.self.query`), the prefix of its parameters' names.
pub fn module_name(p: &tch::nn::Path) -> String {
    p.components().collect::<Vec<_>>().join(".")
}

/// The seed of module `name`'s parameters under base seed `seed`: the 64-bit FNV-1a hash of
/// the name mixed with the seed by SplitMix64's finaliser, kept non-negative. A pure function
/// of its arguments (stable across runs, platforms and versions of this crate).
pub fn init_key(seed: u64, name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15) ^ h;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
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

    #[test]
    fn keyed_draws_depend_on_seed_and_name_not_on_order() {
        let (a, b) = keyed_initialisation(3, || (draw_for("a", draw), draw_for("b", draw)));
        let (b2, a2) = keyed_initialisation(3, || {
            let _ = draw(); // an unkeyed draw in between moves nothing keyed
            (draw_for("b", draw), draw_for("a", draw))
        });
        assert_eq!((a.clone(), b.clone()), (a2, b2));
        assert_ne!(a, b);
        assert_ne!(keyed_initialisation(4, || draw_for("a", draw)), a);
        // Outside keyed initialisation, draw_for draws from the current stream.
        assert_eq!(seeded(9, || draw_for("a", draw)), seeded(9, draw));
    }
}
