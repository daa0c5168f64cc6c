//! Environment-variable tables for the proxies that link this crate (ztunnel, waypoint), which Istio
//! configures through the environment: each binary lists every variable it reads once, with its default and
//! meaning ([`env_vars!`]), reads the environment only through those entries, and prints them for `--help`
//! ([`help`]). The tables themselves live with each binary's configuration.

use std::fmt::Write as _;

/// One environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// Its name; a name ending in `_` is a prefix (`XDS_HEADER_<name>`).
    pub name: &'static str,
    /// The default, as an operator would write it (empty: none).
    pub default: &'static str,
    /// One line of meaning.
    pub meaning: &'static str,
}

impl EnvVar {
    /// Whether this entry is a family of variables sharing the prefix [`Self::name`].
    pub fn is_prefix(&self) -> bool {
        self.name.ends_with('_')
    }

    /// The name as `--help` shows it: `XDS_HEADER_<name>` for a prefix.
    pub fn shown(&self) -> String {
        if self.is_prefix() {
            format!("{}<name>", self.name)
        } else {
            self.name.to_owned()
        }
    }
}

/// Defines one [`EnvVar`] constant per variable and `ALL`, so no variable can be read without being listed.
#[macro_export]
macro_rules! env_vars {
    ($($id:ident = $name:literal, $default:literal, $meaning:literal;)*) => {
        $(
            #[doc = $meaning]
            pub const $id: $crate::env_vars::EnvVar =
                $crate::env_vars::EnvVar { name: $name, default: $default, meaning: $meaning };
        )*
        /// Every variable, in the order `--help` lists them.
        pub const ALL: &[$crate::env_vars::EnvVar] = &[$($id),*];
    };
}

/// The table for `--help`: one line per variable, names aligned, defaults in brackets.
pub fn help(vars: &[EnvVar]) -> String {
    let width = vars.iter().map(|v| v.shown().len()).max().unwrap_or(0);
    let mut out = String::new();
    for v in vars {
        let _ = write!(out, "  {:width$}  {}", v.shown(), v.meaning);
        if !v.default.is_empty() {
            let _ = write!(out, " [default: {}]", v.default);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_aligns_names_shows_prefixes_and_defaults() {
        let vars = [
            EnvVar {
                name: "A",
                default: "1",
                meaning: "first",
            },
            EnvVar {
                name: "HEADER_",
                default: "",
                meaning: "second",
            },
        ];
        assert_eq!(
            help(&vars),
            "  A              first [default: 1]\n  HEADER_<name>  second\n"
        );
    }
}
