//! Child processes: long-running ones ([`Proc`], killed when dropped, also on error and after
//! ctrl-c) and commands run to completion within a wall-clock limit ([`run`]). Output goes to
//! files in the scratch directory, so no pipe can fill up and the tail is at hand for errors.
//! SIGINT and SIGTERM raise a stop flag that every wait checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static STOP: AtomicBool = AtomicBool::new(false);
const POLL: Duration = Duration::from_millis(20);

/// Handles SIGINT and SIGTERM by raising the stop flag instead of dying, so the [`Proc`]
/// guards still kill every child.
pub(crate) fn handle_signals() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut term = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    })?;
    let mut int = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    })?;
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        eprintln!("waypoint-bench: stopping (child processes are killed next)");
        STOP.store(true, Ordering::SeqCst);
    });
    Ok(())
}

/// Fails once a stop was asked for; called in every wait loop.
pub(crate) fn check() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `d` unless a stop is asked for first.
pub(crate) fn sleep(d: Duration) -> Result<()> {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        check()?;
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
    check()
}

/// The last `n` lines of a text file (for error messages).
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A long-running child; killed and reaped on drop.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: &'static str,
    child: std::process::Child,
    /// Its stdout and stderr (one file).
    pub(crate) log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `<scratch>/<name>.log`.
    pub(crate) fn spawn(name: &'static str, cmd: &mut Command, scratch: &Path) -> Result<Proc> {
        let log = scratch.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: {}", describe(cmd)))?;
        Ok(Proc { name, child, log })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails (with the log's tail) if the process has exited.
    pub(crate) fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited with {status}; its output ends with:\n{}",
                self.name,
                tail(&self.log, 30)
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to completion within `limit`; its stdout. A non-zero exit, the deadline or a
/// stop is an error carrying its stderr.
pub(crate) fn run(cmd: &mut Command, limit: Duration, scratch: &Path, tag: &str) -> Result<String> {
    let what = describe(cmd);
    let out_path = scratch.join(format!("{tag}.out"));
    let err_path = scratch.join(format!("{tag}.err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let late = Instant::now() >= deadline;
        if late || check().is_err() {
            let _ = child.kill();
            let _ = child.wait();
            let why = if late {
                format!("still running after {limit:?}")
            } else {
                "interrupted".to_owned()
            };
            bail!("{what}: {why}");
        }
        std::thread::sleep(POLL);
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        bail!("{what}: {status}: {}", tail(&err_path, 20));
    }
    Ok(stdout)
}

/// `name` in `PATH`, if it is there.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
