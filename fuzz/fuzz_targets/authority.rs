//! CONNECT `:authority` parsing: never panics, and whatever parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(a) = hbone::headers::parse_authority(s) {
            assert_eq!(hbone::headers::parse_authority(&a.to_string()), Ok(a));
        }
    }
});
