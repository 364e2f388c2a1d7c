//! The generator's threads: one current-thread tokio runtime per worker,
//! each owning the connections it opened (thread per core, like the
//! broker). A connection's setup and its loop run on the same worker, so
//! its socket's readiness never crosses threads and no task is stolen by
//! another worker: at moderate rates that is most of a generator's cost
//! (parking and waking threads), not the messages.
//!
//! The run itself (phases, timers, progress, results) is driven by the
//! `main` runtime; only connection work goes to the workers.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The workers' runtimes, set once at start.
static WORKERS: OnceLock<Vec<Handle>> = OnceLock::new();

/// Most workers the generator starts.
pub(crate) const MAX_WORKERS: usize = 64;

/// Start `n` workers (at least one, at most [`MAX_WORKERS`]), each a thread
/// running its own runtime until the process exits.
pub(crate) fn start(n: usize) -> Result<(), String> {
    let n = n.clamp(1, MAX_WORKERS);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start worker runtime {i}: {e}"))?;
        handles.push(runtime.handle().clone());
        std::thread::Builder::new()
            .name(format!("loadtest-worker-{i}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start worker thread {i}: {e}"))?;
    }
    WORKERS
        .set(handles)
        .map_err(|_| "the workers were started twice".to_string())
}

/// Run `task` for connection `index` on its worker (`index` modulo the
/// workers). Without workers (unit tests) it runs on the current runtime.
pub(crate) fn spawn<F>(index: usize, task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match WORKERS.get() {
        Some(handles) if !handles.is_empty() => handles[index % handles.len()].spawn(task),
        _ => tokio::spawn(task),
    }
}
