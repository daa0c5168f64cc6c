//! Child processes for the benchmarks: long-running ones ([`Proc`], killed when dropped, also on
//! error and after ctrl-c) and commands run to completion within a wall-clock limit ([`run`]).
//! Output goes to files in a scratch directory, so no pipe can fill up and the tail is at hand
//! for errors. SIGINT and SIGTERM raise a stop flag that every wait checks, so the guards (child
//! processes, a mesh) still clean up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static STOP: AtomicBool = AtomicBool::new(false);
static SEQ: AtomicU32 = AtomicU32::new(0);
const POLL: Duration = Duration::from_millis(20);

/// Handles SIGINT and SIGTERM by raising the stop flag instead of dying; `message` is printed
/// when that happens.
pub fn handle_signals(message: &'static str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Register both handlers before returning, so no signal can slip past them.
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
        eprintln!("{message}");
        STOP.store(true, Ordering::SeqCst);
    });
    Ok(())
}

/// Whether a stop was asked for.
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Fails once a stop was asked for; called in every wait loop and between steps.
pub fn check() -> Result<()> {
    if stopped() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `d` unless a stop is asked for first.
pub fn sleep(d: Duration) -> Result<()> {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        check()?;
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
    check()
}

/// The last `n` lines of a text file (for error messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `name` in `PATH`, if it is there.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
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
pub struct Proc {
    pub name: &'static str,
    child: std::process::Child,
    /// Its stdout and stderr (one file).
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr going to `<scratch>/<name>.log`.
    pub fn spawn(name: &'static str, cmd: &mut Command, scratch: &Path) -> Result<Proc> {
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails (with the log's tail) if the process has exited.
    pub fn alive(&mut self) -> Result<()> {
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
/// stop is an error carrying its stderr's tail. Output files are `<scratch>/<n>-<tag>.{out,err}`.
pub fn run(cmd: &mut Command, limit: Duration, scratch: &Path, tag: &str) -> Result<String> {
    run_inner(cmd, limit, scratch, tag, false)
}

/// Like [`run`], but ignores a stop request (for clean-up such as `meshctl down`).
pub fn run_unstoppable(
    cmd: &mut Command,
    limit: Duration,
    scratch: &Path,
    tag: &str,
) -> Result<String> {
    run_inner(cmd, limit, scratch, tag, true)
}

fn run_inner(
    cmd: &mut Command,
    limit: Duration,
    scratch: &Path,
    tag: &str,
    ignore_stop: bool,
) -> Result<String> {
    let what = describe(cmd);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let out_path = scratch.join(format!("{n:04}-{tag}.out"));
    let err_path = scratch.join(format!("{n:04}-{tag}.err"));
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
        if late || (!ignore_stop && stopped()) {
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
