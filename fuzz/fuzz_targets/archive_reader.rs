#![no_main]

use libfuzzer_sys::fuzz_target;
use nightdump_archive::{ArchiveReader, Event, Namespace, MAX_DOCUMENT_SIZE};

// Arbitrary bytes must never panic or hang the reader, and whatever it yields must respect
// the format's bounds.
fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = ArchiveReader::new(data) else {
        return;
    };
    // Muting exercises the CRC-skipping path on half of the inputs.
    if data.len() % 2 == 0 {
        let names: Vec<Namespace> = reader.prelude().iter().map(|e| e.namespace()).collect();
        for ns in &names {
            reader.mute(ns);
        }
    }
    let mut last_offset = reader.offset();
    loop {
        match reader.next_event() {
            Ok(Some(Event::Document { raw, .. })) => {
                assert!(raw.len() >= 5 && raw.len() <= MAX_DOCUMENT_SIZE);
                assert_eq!(raw.last(), Some(&0));
                let declared = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
                assert_eq!(declared, raw.len());
            }
            Ok(Some(Event::NamespaceEnd { .. })) => {}
            Ok(None) => {
                assert_eq!(reader.offset(), data.len() as u64);
                assert!(matches!(reader.next_event(), Ok(None)));
                break;
            }
            Err(_) => {
                assert!(reader.next_event().is_err());
                break;
            }
        }
        // Every event consumes input, so the loop always ends.
        assert!(reader.offset() > last_offset);
        last_offset = reader.offset();
    }
});
