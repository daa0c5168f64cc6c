//! Child processes with a wall-clock limit, and the stop flag that ctrl-c / SIGTERM raise.
//!
//! Every command the bench runs goes through [`run`]: its output goes to files in the scratch
//! directory (no pipe can fill up), it is killed at its deadline or when a stop was asked for,
//! and a non-zero exit is an error that carries its stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static STOP: AtomicBool = AtomicBool::new(false);
static SEQ: AtomicU32 = AtomicU32::new(0);
const POLL: Duration = Duration::from_millis(20);

/// Handles SIGINT and SIGTERM by raising the stop flag instead of dying, so the mesh guard
/// still runs `meshctl down`. (On ctrl-c the terminal also signals our children directly.)
pub(crate) fn handle_signals() -> Result<()> {
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
        eprintln!("ztunnel-bench: stopping (the mesh is removed next)");
        STOP.store(true, Ordering::SeqCst);
    });
    Ok(())
}

pub(crate) fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Fails once a stop was asked for; called between steps.
pub(crate) fn check() -> Result<()> {
    if stopped() {
        bail!("interrupted");
    }
    Ok(())
}

#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) stdout: String,
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn scratch_file(dir: &Path, what: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("cmd-{n:04}.{what}"))
}

/// Runs `cmd` to completion within `limit`; a non-zero exit, the deadline or a stop is an error.
pub(crate) fn run(cmd: &mut Command, limit: Duration, scratch: &Path) -> Result<Output> {
    run_inner(cmd, limit, scratch, false)
}

/// Like [`run`], but ignores a stop request (used for `meshctl down`).
pub(crate) fn run_unstoppable(
    cmd: &mut Command,
    limit: Duration,
    scratch: &Path,
) -> Result<Output> {
    run_inner(cmd, limit, scratch, true)
}

fn run_inner(
    cmd: &mut Command,
    limit: Duration,
    scratch: &Path,
    ignore_stop: bool,
) -> Result<Output> {
    let what = describe(cmd);
    let out_path = scratch_file(scratch, "out");
    let err_path = scratch_file(scratch, "err");
    let out = std::fs::File::create(&out_path)?;
    let err = std::fs::File::create(&err_path)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("start {what}"))?;
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
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        bail!("{what}: {status}: {}", stderr.trim());
    }
    Ok(Output { stdout })
}
