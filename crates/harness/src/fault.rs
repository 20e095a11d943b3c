//! Fault injection for the crash tests: makes a run die or misbehave at an exact point, so
//! "killed at any moment" can be tested deterministically rather than by racing a timer.
//!
//! Set `BENCH_CLI_FAULT=<action>:<point>:<n>` to act the `n`-th time (from 1) the process
//! reaches `point`. Actions:
//! - `kill`: SIGKILL itself, as the kernel's OOM killer or a power cut would;
//! - `interrupt`: send itself SIGINT, as Ctrl-C would;
//! - `nan`: make the gradient at that point NaN (point `window` only);
//! - `mark`: print `fault: reached <point> <n>` on stderr and go on, so that a test can
//!   act (kill the process, say) at a moment it knows the run has reached, not after a
//!   duration that a slower or faster machine would make too short or too long.
//!
//! Points, in the order a run reaches them:
//! - `window`: a window's loss and gradients are computed, before its update;
//! - `checkpoint-tensor`: a tensor is about to be written into a training checkpoint's
//!   temporary file (so `kill` there leaves a half-written temporary);
//! - `checkpoint-saved`: a training checkpoint is in place, before the CSV is rewritten;
//! - `final`: before the final weights file is written.
//!
//! Only builds with the `testing` feature (which the tests turn on) read the variable; in
//! any other build, a release binary among them, [`reached`] is a constant `false`, so no
//! environment variable can kill or corrupt a run.

#[cfg(feature = "testing")]
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(feature = "testing")]
use std::sync::OnceLock;

/// The environment variable read once per process.
pub const FAULT_ENV: &str = "BENCH_CLI_FAULT";

#[cfg(feature = "testing")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Interrupt,
    Nan,
    Mark,
}

#[cfg(feature = "testing")]
struct Fault {
    action: Action,
    point: String,
    nth: usize,
}

#[cfg(feature = "testing")]
static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
#[cfg(feature = "testing")]
static HITS: AtomicUsize = AtomicUsize::new(0);

#[cfg(feature = "testing")]
fn configured() -> Option<&'static Fault> {
    FAULT
        .get_or_init(|| {
            let text = std::env::var(FAULT_ENV).ok()?;
            let mut parts = text.splitn(3, ':');
            let action = match parts.next()? {
                "kill" => Action::Kill,
                "interrupt" => Action::Interrupt,
                "nan" => Action::Nan,
                "mark" => Action::Mark,
                _ => return None,
            };
            let point = parts.next()?.to_string();
            let nth = parts.next()?.parse().ok()?;
            Some(Fault { action, point, nth })
        })
        .as_ref()
}

/// Without the `testing` feature: nothing happens, ever.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub fn reached(_point: &str) -> bool {
    false
}

/// Marks that the run reached `point`. Kills or interrupts the process if this is the
/// configured hit; returns true if the caller should inject a NaN here.
#[cfg(feature = "testing")]
pub fn reached(point: &str) -> bool {
    let Some(fault) = configured() else {
        return false;
    };
    if fault.point != point || HITS.fetch_add(1, Ordering::Relaxed) + 1 != fault.nth {
        return false;
    }
    match fault.action {
        Action::Nan => true,
        Action::Kill => {
            raise(Signal::Kill);
            false
        }
        Action::Interrupt => {
            raise(Signal::Interrupt);
            false
        }
        Action::Mark => {
            use std::io::Write;
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "fault: reached {point} {}", fault.nth);
            let _ = stderr.flush();
            false
        }
    }
}

#[cfg(feature = "testing")]
enum Signal {
    Kill,
    Interrupt,
}

#[cfg(all(unix, feature = "testing"))]
fn raise(signal: Signal) {
    let signal = match signal {
        Signal::Kill => libc::SIGKILL,
        Signal::Interrupt => libc::SIGINT,
    };
    // SAFETY: sending a signal to our own process has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), signal);
    }
    if signal == libc::SIGKILL {
        // Delivery may lag the call by a moment: do nothing more meanwhile.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

#[cfg(all(not(unix), feature = "testing"))]
fn raise(signal: Signal) {
    if let Signal::Kill = signal {
        std::process::abort();
    }
}
