//! `baggage` header parsing: never panics; what parses re-serializes to something that parses
//! to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(b) = hbone::headers::parse_baggage(s) {
            let again = hbone::headers::parse_baggage(&b.to_header());
            assert_eq!(again.as_ref().map(|x| x.namespace.as_str()), Ok(b.namespace.as_str()));
        }
    }
});
