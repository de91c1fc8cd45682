//! A deadline on MPI's collectives, as PyTorch's `init_process_group(timeout=...)` puts
//! one on NCCL's: a process whose collective waits longer than the timeout for the others
//! (one of them died, or hangs) says so on its standard error and ends the job with
//! `MPI_Abort` and exit code [`EXIT_CODE`], instead of waiting for ever.
//!
//! A collective cannot be abandoned (MPI keeps writing into its buffers until it
//! completes), so the deadline is kept by a thread beside the program's: the program's
//! thread marks when it enters and leaves a collective, the watchdog looks every tick.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The exit code of a job ended by the watchdog.
pub const EXIT_CODE: i32 = 124;

/// What the program's thread tells the watchdog's.
struct Shared {
    rank: usize,
    timeout: Duration,
    origin: Instant,
    /// Milliseconds from `origin` at which the current collective started, plus one;
    /// 0 while the program is not in a collective.
    entered: AtomicU64,
    /// Which collective it is.
    what: Mutex<&'static str>,
    /// The step the program is at (0 before the first).
    step: AtomicU64,
    stop: AtomicBool,
}

/// The watchdog of one process; dropping it stops its thread.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the watchdog of process `rank`.
    pub(crate) fn start(rank: usize, timeout: Duration) -> Self {
        let shared = Arc::new(Shared {
            rank,
            timeout,
            origin: Instant::now(),
            entered: AtomicU64::new(0),
            what: Mutex::new(""),
            step: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let watched = Arc::clone(&shared);
        let tick = (timeout / 8).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let thread =
            std::thread::Builder::new().name("rmsprop-mpi-watchdog".into()).spawn(move || watch(&watched, tick)).ok();
        Watchdog { shared, thread }
    }

    /// Runs the collective `f` (named by `what`) under the deadline.
    pub(crate) fn guard<R>(&self, what: &'static str, f: impl FnOnce() -> R) -> R {
        *self.shared.what.lock().unwrap_or_else(|p| p.into_inner()) = what;
        let now = self.shared.origin.elapsed().as_millis() as u64 + 1;
        self.shared.entered.store(now, Ordering::Release);
        let r = f();
        self.shared.entered.store(0, Ordering::Release);
        r
    }

    /// Notes the step the program is at, for the watchdog's message.
    pub(crate) fn at_step(&self, step: u64) {
        self.shared.step.store(step, Ordering::Relaxed);
    }

    /// The timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.shared.timeout
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The watchdog's thread: every `tick`, whether the program has been in one collective
/// for longer than the timeout.
fn watch(s: &Shared, tick: Duration) {
    while !s.stop.load(Ordering::Acquire) {
        std::thread::park_timeout(tick);
        let entered = s.entered.load(Ordering::Acquire);
        if entered == 0 {
            continue;
        }
        let waited = Duration::from_millis((s.origin.elapsed().as_millis() as u64 + 1).saturating_sub(entered));
        if waited <= s.timeout || s.stop.load(Ordering::Acquire) {
            continue;
        }
        let what = *s.what.lock().unwrap_or_else(|p| p.into_inner());
        let step = match s.step.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!(" at step {n}"),
        };
        // one write of the whole line: `eprintln!` writes its pieces one by one, and another
        // process's report, forwarded by mpirun to the same stream, could land between them
        let line = format!(
            "error: process {}: no answer from the other processes for {:.1} s in the {what}{step}: \
             one of them died or hangs; ending the job (MPI_Abort, exit code {EXIT_CODE})\n",
            s.rank,
            waited.as_secs_f64()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        // SAFETY: MPI is initialised (the watchdog belongs to an `Mpi`, made from a
        // communicator of an initialised universe) and not finalised (the program's
        // thread is blocked in a collective). MPI_Abort from a thread other than the one
        // that initialised MPI is what it is for here: that thread cannot return; Open MPI
        // ends every process of the job from any thread.
        unsafe {
            mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, EXIT_CODE);
        }
        std::process::exit(EXIT_CODE);
    }
}
