//! CPU time and memory of a process, from /proc (Linux).

/// A sample of a process's resource use.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcSample {
    /// User + system CPU time, seconds.
    pub(crate) cpu_secs: f64,
    /// Resident set size, KiB.
    pub(crate) rss_kib: u64,
}

/// Sample process `pid` ("self" for this process).
///
/// CPU time comes from the scheduler's per-thread nanosecond counters
/// (`/proc/PID/task/*/schedstat`) when they exist: the tick-sampled
/// utime/stime of `/proc/PID/stat` was seen to miss half the CPU time of
/// busy, rapidly switching threads on a virtual machine here.
pub(crate) fn sample(pid: &str) -> Option<ProcSample> {
    let rss_kib = rss_kib(pid)?;
    if let Some(cpu_secs) = schedstat_secs(pid) {
        return Some(ProcSample { cpu_secs, rss_kib });
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold
    // spaces): state is field 3; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(ProcSample {
        cpu_secs: (utime + stime) / clock_ticks(),
        rss_kib,
    })
}

fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU seconds of all live threads of `pid` (threads that have exited are
/// not counted; the broker's and the generator's threads live for the run).
fn schedstat_secs(pid: &str) -> Option<f64> {
    let mut total_ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total_ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total_ns as f64 / 1e9)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Open file descriptors of process `pid`.
pub(crate) fn open_fds(pid: &str) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_self() {
        let s = super::sample("self").expect("proc");
        assert!(s.rss_kib > 0);
        assert!(s.cpu_secs >= 0.0);
    }
}
