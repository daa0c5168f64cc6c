//! What a chosen route does to a request, as pure functions: path rewrites and redirect
//! locations (`rewrite`), header changes, the consistent-hash key (`hashing`) and the retry
//! decisions (`retry`).

mod hashing;
mod retry;
mod rewrite;

pub use hashing::{HashOutcome, hash_key};
pub use retry::{AttemptOutcome, backoff, retriable};
pub use rewrite::{redirect_location, rewrite_path};

use super::HeaderChanges;

/// Applies one level of header changes: every removal, then the additions in order (`append`
/// adds a value; otherwise the value replaces all existing ones).
pub fn apply_headers(changes: &HeaderChanges, headers: &mut http::HeaderMap) {
    for name in &changes.remove {
        headers.remove(name);
    }
    for (name, value, append) in &changes.add {
        if *append {
            headers.append(name.clone(), value.clone());
        } else {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests;
