//! `forwarded` header parsing: never panics, bounded output.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(elements) = hbone::headers::parse_forwarded(s) {
            assert!(elements.len() <= 16);
            for e in &elements {
                let _ = e.for_addr();
            }
        }
    }
});
