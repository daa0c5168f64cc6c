//! Manifests as the control plane reads them: arbitrary text (lossy UTF-8) as one YAML file
//! → `control_plane::manifest::parse_files` → when it parses, `translate`. Never panics; errors
//! render.
#![no_main]

use control_plane::manifest::{ManifestFile, parse_files};
use control_plane::translate::{Options, translate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = ManifestFile {
        name: "fuzz.yaml".into(),
        text: String::from_utf8_lossy(data).into_owned(),
    };
    match parse_files(&[file]) {
        Ok(objects) => match translate(&objects, &Options::default()) {
            Ok(t) => {
                let _ = t.summary.to_string();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        },
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
