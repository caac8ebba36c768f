#![no_main]

use libfuzzer_sys::fuzz_target;
use mongo_test_server::wire::{self, Message, WireError, FLAG_CHECKSUM_PRESENT};

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

// A client message as the server receives it: never a panic, whatever the bytes. Most random
// inputs die at the length check, so the first byte chooses whether the declared length (and
// for a checksummed OP_MSG the trailing CRC-32C) is made to agree with the input, which sends
// the rest of the bytes into section, document-sequence and OP_QUERY decoding.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= 4 {
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        bytes[..4].copy_from_slice(&len.to_le_bytes());
        let checksummed = bytes.len() >= 24
            && u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]])
                & FLAG_CHECKSUM_PRESENT
                != 0;
        if mode & 2 == 2 && checksummed {
            let end = bytes.len() - 4;
            let crc = CRC32C.checksum(&bytes[..end]);
            bytes[end..].copy_from_slice(&crc.to_le_bytes());
        }
    }
    if bytes.len() >= 4 {
        let prefix = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if let Ok(len) = wire::message_length(prefix) {
            assert!((16..=wire::MAX_MESSAGE_SIZE).contains(&len));
        }
    }
    match wire::parse_message(&bytes) {
        Ok(Message::Msg(msg)) => {
            assert_eq!(msg.header.message_length as usize, bytes.len());
            let command = msg.command();
            for seq in &msg.sequences {
                let top = seq.identifier.split('.').next().unwrap_or_default();
                assert!(command.get(top).is_ok());
            }
            let _ = msg.more_to_come();
        }
        Ok(Message::Query(query)) => {
            assert_eq!(query.header.message_length as usize, bytes.len());
            let _ = query.command();
            let _ = query.command_db();
        }
        Err(WireError::Refused { .. }) => {}
        Err(_) => {}
    }
    let _ = wire::parse_reply(&bytes);
});
