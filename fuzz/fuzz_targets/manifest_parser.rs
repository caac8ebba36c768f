#![no_main]

// The manifest module has no dependency beyond serde, so it is compiled here on its own: the
// root package would bring the AWS SDK and the MongoDB driver into every instrumented build.
#[allow(dead_code)]
#[path = "../../src/manifest.rs"]
mod manifest;

use libfuzzer_sys::fuzz_target;
use manifest::{Latest, Manifest};

// Whatever a destination holds at a manifest's or latest.json's key, parsing never panics;
// whatever parses as a manifest serialises to a document that parses back to the same value.
fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let json = m.to_json();
        let again = match Manifest::parse(&json) {
            Ok(again) => again,
            Err(e) => panic!("manifest output does not parse: {e}"),
        };
        assert_eq!(again.to_json(), json);
        let latest = m.latest(format!("{}/manifest.json", m.backup_id));
        let text = serde_json::to_vec(&latest).unwrap_or_default();
        assert!(serde_json::from_slice::<Latest>(&text).is_ok());
    }
    let _ = serde_json::from_slice::<Latest>(data);
});
