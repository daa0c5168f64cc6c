//! Process-wide `tracing` set-up (`LOG_FORMAT` = plain | json, filter from `RUST_LOG`, default `info`) and the
//! runtime level control behind the admin `/logging` endpoint (spec §10).
//!
//! Owns: the subscriber stack, the reloadable filter and the semantics of level changes ([`LevelChange`]).
//! Does not own: HTTP parsing of `/logging` (see [`crate::admin`]) or what gets logged.
//!
//! Level changes: a global level replaces the whole filter (like Envoy's `?level=`, it clears per-module
//! overrides); per-module levels are added on top of the current filter, later ones replacing earlier ones for the
//! same module; reset restores the start-up filter. Query `mod:lvl` becomes the `EnvFilter` directive `mod=lvl`.

mod change;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Registry, reload};

pub use change::{Level, LevelChange};

/// Filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// Errors of logging set-up and level changes.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `LOG_FORMAT` is neither `plain` nor `json`.
    #[error("LOG_FORMAT {value:?} is not one of plain, json")]
    UnknownFormat { value: String },
    /// A level outside error, warn, info, debug, trace, off.
    #[error("unknown log level {level:?} (expected one of error, warn, info, debug, trace, off)")]
    UnknownLevel { level: String },
    /// A module name that cannot be a filter target.
    #[error("invalid module name {module:?} in level directive {directive:?}")]
    InvalidModule { module: String, directive: String },
    /// A query parameter `/logging` does not know.
    #[error("unknown /logging parameter {name:?} (expected level or reset)")]
    UnknownParameter { name: String },
    /// The resulting filter does not parse (e.g. a bad `RUST_LOG`).
    #[error("invalid log filter {filter:?}: {source}")]
    InvalidFilter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    /// The subscriber holding the filter is gone.
    #[error("cannot change the log filter to {filter:?}: {source}")]
    Reload {
        filter: String,
        source: reload::Error,
    },
    /// A global subscriber was already installed.
    #[error("cannot install the global tracing subscriber: {source}")]
    Install {
        source: tracing_subscriber::util::TryInitError,
    },
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per event, fields flattened (`"src.addr": ...`).
    Json,
}

impl LogFormat {
    /// Parses a `LOG_FORMAT` value; unset or empty means plain.
    pub fn from_env_value(value: Option<&str>) -> Result<Self, LoggingError> {
        match value.map(str::trim) {
            None | Some("") => Ok(Self::Plain),
            Some(v) if v.eq_ignore_ascii_case("plain") => Ok(Self::Plain),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(Self::Json),
            Some(v) => Err(LoggingError::UnknownFormat {
                value: v.to_owned(),
            }),
        }
    }
}

/// Installs the global subscriber from `LOG_FORMAT` and `RUST_LOG`.
pub fn init_from_env() -> Result<LogLevelControl, LoggingError> {
    use crate::config::vars::{LOG_FORMAT, RUST_LOG};
    let format = LogFormat::from_env_value(std::env::var(LOG_FORMAT.name).ok().as_deref())?;
    init(format, std::env::var(RUST_LOG.name).ok().as_deref())
}

/// Installs the global subscriber: `filter` (`RUST_LOG` syntax; `None`/empty = [`DEFAULT_FILTER`]) in front of a
/// stdout writer in `format`. Returns the control for runtime level changes.
pub fn init(format: LogFormat, filter: Option<&str>) -> Result<LogLevelControl, LoggingError> {
    let (filter_layer, control) = LogLevelControl::new(filter)?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let plain =
        (format == LogFormat::Plain).then(|| tracing_subscriber::fmt::layer().with_ansi(ansi));
    let json = (format == LogFormat::Json)
        .then(|| tracing_subscriber::fmt::layer().json().flatten_event(true));
    tracing_subscriber::registry()
        .with(filter_layer)
        .with(plain)
        .with(json)
        .try_init()
        .map_err(|source| LoggingError::Install { source })?;
    Ok(control)
}

/// The reloadable filter layer, to be put directly on a [`Registry`].
pub type FilterLayer = reload::Layer<EnvFilter, Registry>;

/// Runtime control of the log filter. Cheap to clone; all clones change the same filter.
#[derive(Clone)]
pub struct LogLevelControl {
    handle: reload::Handle<EnvFilter, Registry>,
    state: Arc<Mutex<FilterState>>,
}

impl std::fmt::Debug for LogLevelControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLevelControl")
            .field("current", &self.current())
            .finish()
    }
}

/// The filter as a start-up base plus module overrides.
#[derive(Clone, Debug)]
struct FilterState {
    initial: String,
    base: String,
    modules: BTreeMap<String, Level>,
}

impl FilterState {
    fn directives(&self) -> String {
        let mut out = self.base.clone();
        for (module, level) in &self.modules {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(module);
            out.push('=');
            out.push_str(level.as_str());
        }
        out
    }
}

impl LogLevelControl {
    /// A filter layer for `filter` (`None`/empty = [`DEFAULT_FILTER`]) and its control. Put the layer on a
    /// [`Registry`]; [`init`] does that globally, tests can keep the subscriber local.
    pub fn new(filter: Option<&str>) -> Result<(FilterLayer, Self), LoggingError> {
        let initial = filter
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .unwrap_or(DEFAULT_FILTER)
            .to_owned();
        let env_filter = parse_filter(&initial)?;
        let (layer, handle) = reload::Layer::new(env_filter);
        let state = FilterState {
            base: initial.clone(),
            initial,
            modules: BTreeMap::new(),
        };
        Ok((
            layer,
            Self {
                handle,
                state: Arc::new(Mutex::new(state)),
            },
        ))
    }

    /// The filter in effect, in `RUST_LOG` syntax.
    pub fn current(&self) -> String {
        self.lock().directives()
    }

    /// Applies a change; on error the filter is left as it was. Returns the new filter.
    pub fn apply(&self, change: &LevelChange) -> Result<String, LoggingError> {
        let mut state = self.lock();
        let mut next = state.clone();
        if change.reset {
            next.base = next.initial.clone();
            next.modules.clear();
        }
        if let Some(level) = change.global {
            next.base = level.as_str().to_owned();
            next.modules.clear();
        }
        for (module, level) in &change.modules {
            next.modules.insert(module.clone(), *level);
        }
        let filter = next.directives();
        let env_filter = parse_filter(&filter)?;
        self.handle
            .reload(env_filter)
            .map_err(|source| LoggingError::Reload {
                filter: filter.clone(),
                source,
            })?;
        *state = next;
        Ok(filter)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FilterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn parse_filter(filter: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|source| LoggingError::InvalidFilter {
            filter: filter.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests;
