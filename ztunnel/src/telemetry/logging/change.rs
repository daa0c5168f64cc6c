//! A requested log-level change and its parsing from the `/logging` query string (spec §10).
//!
//! Owns: the accepted level names, module-name validation and the query grammar
//! (`level=info`, `level=mod:lvl,mod2:lvl`, both mixed, `reset`, percent-encoding allowed).
//! Does not own: applying the change (see [`super::LogLevelControl::apply`]).

use super::LoggingError;

/// A level accepted by `/logging`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    /// The lower-case name, as used in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    /// Parses a level name, case-insensitively.
    pub fn parse(name: &str) -> Result<Self, LoggingError> {
        const ALL: [Level; 6] = [
            Level::Off,
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ];
        ALL.into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| LoggingError::UnknownLevel {
                level: name.to_owned(),
            })
    }
}

/// A change of the log filter: optional reset, then optional global level, then module levels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelChange {
    /// Restore the start-up filter first.
    pub reset: bool,
    /// Set every target to this level (clears module overrides).
    pub global: Option<Level>,
    /// Per-module levels (`ztunnel::proxy` → debug).
    pub modules: Vec<(String, Level)>,
}

impl LevelChange {
    /// Parses a `/logging` query. `Ok(None)` means "no change, list the current level".
    pub fn from_query(query: Option<&str>) -> Result<Option<Self>, LoggingError> {
        let mut change = Self::default();
        let mut any = false;
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match percent_decode(name).as_str() {
                "reset" => change.reset = true,
                "level" => change.add_directives(&percent_decode(value))?,
                other => {
                    return Err(LoggingError::UnknownParameter {
                        name: other.to_owned(),
                    });
                }
            }
            any = true;
        }
        Ok(any.then_some(change))
    }

    /// Adds `info`, `mod:lvl` or a comma-separated mix of both.
    fn add_directives(&mut self, directives: &str) -> Result<(), LoggingError> {
        for directive in directives.split(',').map(str::trim) {
            match directive.rsplit_once(':') {
                None => self.global = Some(Level::parse(directive)?),
                Some((module, level)) => {
                    if !is_module_name(module) {
                        return Err(LoggingError::InvalidModule {
                            module: module.to_owned(),
                            directive: directive.to_owned(),
                        });
                    }
                    self.modules.push((module.to_owned(), Level::parse(level)?));
                }
            }
        }
        Ok(())
    }
}

/// A Rust module path or target: letters, digits, `_`, `-`, `.` and `::` separators.
fn is_module_name(module: &str) -> bool {
    !module.is_empty()
        && module.split("::").all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        })
}

/// Decodes `%XX` escapes and `+`; malformed escapes are kept as they are.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_queries() {
        let module = |m: &str, l| (m.to_owned(), l);
        let cases: &[(Option<&str>, Option<LevelChange>)] = &[
            (None, None),
            (Some(""), None),
            (
                Some("level=info"),
                Some(LevelChange {
                    global: Some(Level::Info),
                    ..Default::default()
                }),
            ),
            (
                Some("level=DEBUG"),
                Some(LevelChange {
                    global: Some(Level::Debug),
                    ..Default::default()
                }),
            ),
            (
                Some("reset"),
                Some(LevelChange {
                    reset: true,
                    ..Default::default()
                }),
            ),
            (
                Some("reset="),
                Some(LevelChange {
                    reset: true,
                    ..Default::default()
                }),
            ),
            (
                Some("level=ztunnel::proxy:debug,hyper:off"),
                Some(LevelChange {
                    modules: vec![
                        module("ztunnel::proxy", Level::Debug),
                        module("hyper", Level::Off),
                    ],
                    ..Default::default()
                }),
            ),
            (
                Some("reset&level=warn%2Caccess%3Atrace"),
                Some(LevelChange {
                    reset: true,
                    global: Some(Level::Warn),
                    modules: vec![module("access", Level::Trace)],
                }),
            ),
        ];
        for (query, want) in cases {
            assert_eq!(
                LevelChange::from_query(*query).unwrap(),
                *want,
                "query {query:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_queries() {
        for query in [
            "level=verbose",
            "level=",
            "level=mod:loud",
            "level=:info",
            "level=a=b:info",
            "level=a,b:info",
            "lvl=info",
        ] {
            assert!(
                LevelChange::from_query(Some(query)).is_err(),
                "query {query:?}"
            );
        }
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%3Ab%2cc+d"), "a:b,c d");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
