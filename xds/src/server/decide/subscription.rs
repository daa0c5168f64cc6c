//! What one client is subscribed to for one type: a wildcard (all the resources the server has for the
//! client) and/or explicit names, following the xDS rules for both protocol variants, including the legacy
//! wildcard (an empty first request means "*").

use std::collections::BTreeSet;

/// The explicit wildcard name.
pub(crate) const WILDCARD: &str = "*";

/// Subscription state of one type on one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
    /// The client has named resources (or "*") at least once: an empty list no longer means wildcard.
    explicit: bool,
}

impl Subscription {
    /// Applies a SotW request: `names` is the complete new set. Empty names mean wildcard only until the
    /// client has named something (legacy wildcard); afterwards they mean "nothing".
    pub(crate) fn apply_sotw(&mut self, names: &[String]) {
        if names.is_empty() && !self.explicit {
            self.wildcard = true;
            self.names.clear();
            return;
        }
        self.explicit = true;
        self.wildcard = names.iter().any(|n| n == WILDCARD);
        self.names = names.iter().filter(|n| *n != WILDCARD).cloned().collect();
    }

    /// Applies a delta request. On the first request of a type, empty `subscribe` and `unsubscribe` mean
    /// wildcard (legacy); afterwards the wildcard holds until "*" is unsubscribed. Subscriptions are applied
    /// before unsubscriptions.
    pub(crate) fn apply_delta(
        &mut self,
        first: bool,
        subscribe: &[String],
        unsubscribe: &[String],
    ) {
        if first && subscribe.is_empty() && unsubscribe.is_empty() {
            self.wildcard = true;
        }
        for name in subscribe {
            if name == WILDCARD {
                self.wildcard = true;
            } else {
                self.names.insert(name.clone());
            }
        }
        for name in unsubscribe {
            if name == WILDCARD {
                self.wildcard = false;
            } else {
                self.names.remove(name);
            }
        }
    }

    /// Whether the client wants `name` (by wildcard or by name).
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    pub(crate) fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether `name` is subscribed explicitly (wildcard aside).
    pub(crate) fn names_explicitly(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The explicit names (without "*").
    pub(crate) fn names(&self) -> &BTreeSet<String> {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn state(sub: &Subscription) -> (bool, Vec<&str>) {
        (
            sub.is_wildcard(),
            sub.names().iter().map(String::as_str).collect(),
        )
    }

    /// The SotW example of the xDS protocol document, step by step.
    #[test]
    fn sotw_legacy_wildcard_sequence() {
        let steps: &[(&[&str], bool, &[&str])] = &[
            (&[], true, &[]),            // empty first request: legacy wildcard
            (&[], true, &[]),            // still legacy (ACKs of Envoy's CDS/LDS look like this)
            (&["*", "A"], true, &["A"]), // explicit wildcard plus A
            (&["A"], false, &["A"]),     // wildcard dropped
            (&[], false, &[]),           // now empty means nothing, not wildcard
            (&["B"], false, &["B"]),
        ];
        let mut sub = Subscription::default();
        for (i, (names, wildcard, expect)) in steps.iter().enumerate() {
            sub.apply_sotw(&v(names));
            assert_eq!(
                state(&sub),
                (*wildcard, expect.to_vec()),
                "step {i}: {names:?}"
            );
        }
    }

    #[test]
    fn sotw_named_first_is_not_wildcard() {
        let mut sub = Subscription::default();
        sub.apply_sotw(&v(&["r1", "r2"]));
        assert_eq!(state(&sub), (false, vec!["r1", "r2"]));
        assert!(sub.covers("r1") && !sub.covers("r3"));
    }

    /// The incremental example of the xDS protocol document, plus ztunnel's "nothing" idiom.
    #[test]
    fn delta_sequences() {
        type Step<'a> = (bool, &'a [&'a str], &'a [&'a str], bool, &'a [&'a str]);
        let cases: &[(&str, &[Step])] = &[
            (
                "protocol document example",
                &[
                    (true, &[], &[], true, &[]),
                    (false, &["A"], &[], true, &["A"]),
                    (false, &[], &["*"], false, &["A"]),
                    (false, &[], &["A"], false, &[]),
                    (false, &[], &[], false, &[]), // empty later request is not a wildcard
                ],
            ),
            ("explicit wildcard", &[(true, &["*"], &[], true, &[])]),
            (
                "on-demand: unsubscribe * first",
                &[(true, &[], &["*"], false, &[])],
            ),
            (
                "subscribe and unsubscribe * at once",
                &[(true, &["*"], &["*"], false, &[])],
            ),
            (
                "names then wildcard",
                &[
                    (true, &["a", "b"], &[], false, &["a", "b"]),
                    (false, &["*"], &["b"], true, &["a"]),
                ],
            ),
            (
                "phantom unsubscribe",
                &[(true, &["a"], &["zzz"], false, &["a"])],
            ),
        ];
        for (name, steps) in cases {
            let mut sub = Subscription::default();
            for (i, (first, subscribe, unsubscribe, wildcard, names)) in steps.iter().enumerate() {
                sub.apply_delta(*first, &v(subscribe), &v(unsubscribe));
                assert_eq!(state(&sub), (*wildcard, names.to_vec()), "{name}: step {i}");
            }
        }
    }
}
