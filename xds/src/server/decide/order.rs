//! The order of types in a push (make-before-break): additions and updates by [`push_rank`] (clusters →
//! endpoints → listeners → routes → others); removals go the other way round (the sessions reverse this
//! order) so stale clusters and endpoints go last, after nothing references them any more.

use crate::type_url::push_rank;

/// `types` in the order their updates are pushed.
pub(crate) fn updates<'a>(types: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = types.into_iter().collect();
    v.sort_by(|a, b| push_rank(a).cmp(&push_rank(b)).then(a.cmp(b)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::type_url::*;

    #[test]
    fn order() {
        let all = [
            ROUTE,
            "type.googleapis.com/z.Other",
            LISTENER,
            ADDRESS,
            ENDPOINT,
            CLUSTER,
            "type.googleapis.com/a.Other",
        ];
        assert_eq!(
            updates(all),
            [
                CLUSTER,
                ENDPOINT,
                LISTENER,
                ROUTE,
                ADDRESS,
                "type.googleapis.com/a.Other",
                "type.googleapis.com/z.Other"
            ]
        );
    }
}
