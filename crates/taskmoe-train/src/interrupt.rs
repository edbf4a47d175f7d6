//! Ctrl-C for training: the first SIGINT asks the loop to stop after the step it is taking
//! (it then writes a checkpoint and says how to resume); a second one exits at once.
//!
//! The handler only stores to a static [`AtomicBool`] (async-signal-safe); [`Trainer::train`]
//! polls [`interrupted`] between steps. Nothing is installed unless the program calls
//! [`install_interrupt_handler`] (the `taskmoe` binary does).
//!
//! [`Trainer::train`]: crate::Trainer::train

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Installs the SIGINT handler (idempotent).
pub fn install_interrupt_handler() {
    // SAFETY: the handler only touches an atomic and calls _exit.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// Whether an interrupt was requested since the last [`clear_interrupt`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Requests a stop as SIGINT would (for tests and embedding programs).
pub fn request_interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Forgets a requested stop.
pub fn clear_interrupt() {
    INTERRUPTED.store(false, Ordering::SeqCst);
}
