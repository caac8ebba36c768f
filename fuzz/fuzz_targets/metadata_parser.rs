#![no_main]

use libfuzzer_sys::fuzz_target;
use nightdump_archive::{parse_extjson, to_canonical_extjson, CollectionMetadata};

// Parsing never panics, and whatever parses re-serialises to canonical Extended JSON that
// parses back to the same canonical text.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(doc) = parse_extjson(text) {
        let canonical = to_canonical_extjson(&doc);
        let again = match parse_extjson(&canonical) {
            Ok(again) => again,
            Err(e) => panic!("canonical output does not parse: {e}: {canonical}"),
        };
        assert_eq!(to_canonical_extjson(&again), canonical);
    }
    if let Ok(meta) = CollectionMetadata::parse(text) {
        let json = meta.to_extjson();
        let again = match CollectionMetadata::parse(&json) {
            Ok(again) => again,
            Err(e) => panic!("metadata output does not parse: {e}: {json}"),
        };
        assert_eq!(again.to_extjson(), json);
    }
});
