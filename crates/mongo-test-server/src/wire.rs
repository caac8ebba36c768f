//! The MongoDB wire protocol as pure functions over bytes: parsing client messages and
//! encoding replies. Nothing here touches a socket, so it can be fuzzed and unit-tested.
//!
//! Only what drivers and the Database Tools send today is understood: OP_MSG for every
//! command and the legacy OP_QUERY for the first handshake. Everything else is refused.

use bson::{RawBsonRef, RawDocument, RawDocumentBuf};

use crate::error::CommandError;

/// Largest message accepted or produced, as mongod advertises in `maxMessageSizeBytes`.
pub const MAX_MESSAGE_SIZE: usize = 48_000_000;
/// Largest reply document mongod produces: the user limit plus room for the envelope.
pub const MAX_REPLY_DOCUMENT_SIZE: usize = 16 * 1024 * 1024 + 16 * 1024;

pub const OP_REPLY: i32 = 1;
pub const OP_QUERY: i32 = 2004;
pub const OP_COMPRESSED: i32 = 2012;
pub const OP_MSG: i32 = 2013;

const HEADER_LEN: usize = 16;

/// OP_MSG flag bits (the low 16 are "required": unknown ones must be refused).
pub const FLAG_CHECKSUM_PRESENT: u32 = 1;
pub const FLAG_MORE_TO_COME: u32 = 1 << 1;
pub const FLAG_EXHAUST_ALLOWED: u32 = 1 << 16;
const REQUIRED_FLAG_MASK: u32 = 0xffff;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Why a message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The framing itself is broken; the connection cannot continue.
    #[error("malformed message: {0}; the connection is closed")]
    Malformed(String),
    /// The declared length is outside what mongod accepts.
    #[error(
        "message length {0} is outside 16..={MAX_MESSAGE_SIZE} bytes; the connection is closed"
    )]
    BadLength(i64),
    /// An opcode this server does not speak (mongod closes the connection on these).
    #[error("unsupported opcode {0}; the connection is closed")]
    UnsupportedOpcode(i32),
    /// The frame is sound but its content is refused; mongod answers these with an error
    /// reply to `request_id` and keeps the connection.
    #[error("request {request_id} refused: {error}")]
    Refused {
        request_id: i32,
        error: CommandError,
    },
}

/// The 16-byte header of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub message_length: i32,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: i32,
}

/// One parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Msg(OpMsg),
    Query(OpQuery),
}

impl Message {
    pub fn header(&self) -> &Header {
        match self {
            Message::Msg(m) => &m.header,
            Message::Query(q) => &q.header,
        }
    }
}

/// A document sequence (section kind 1).
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentSequence {
    pub identifier: String,
    pub documents: Vec<RawDocumentBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpMsg {
    pub header: Header,
    pub flags: u32,
    pub body: RawDocumentBuf,
    pub sequences: Vec<DocumentSequence>,
}

impl OpMsg {
    pub fn more_to_come(&self) -> bool {
        self.flags & FLAG_MORE_TO_COME != 0
    }

    /// The command as mongod's commands see it: the body with each document sequence
    /// appended as an array field named by its identifier.
    pub fn command(&self) -> RawDocumentBuf {
        if self.sequences.is_empty() {
            return self.body.clone();
        }
        let mut merged = self.body.clone();
        for seq in &self.sequences {
            let mut array = bson::RawArrayBuf::new();
            for doc in &seq.documents {
                array.push(doc.clone());
            }
            merged.append(seq.identifier.as_str(), array);
        }
        merged
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpQuery {
    pub header: Header,
    pub flags: i32,
    pub full_collection_name: String,
    pub number_to_skip: i32,
    pub number_to_return: i32,
    pub query: RawDocumentBuf,
}

impl OpQuery {
    /// The database of a command namespace `db.$cmd`, or `None` for a legacy query.
    pub fn command_db(&self) -> Option<&str> {
        self.full_collection_name.strip_suffix(".$cmd")
    }

    /// The command, unwrapped from `{$query: …, $readPreference: …}` when so wrapped
    /// (`query` is also accepted, as mongod does).
    pub fn command(&self) -> RawDocumentBuf {
        for key in ["$query", "query"] {
            if let Ok(inner) = self.query.get_document(key) {
                return inner.to_raw_document_buf();
            }
        }
        self.query.clone()
    }
}

/// Validates the first four bytes of a message and returns the whole message length, so a
/// reader can bound its allocation before reading the rest.
pub fn message_length(prefix: [u8; 4]) -> Result<usize, WireError> {
    let declared = i32::from_le_bytes(prefix);
    let len = usize::try_from(declared).map_err(|_| WireError::BadLength(declared.into()))?;
    if !(HEADER_LEN..=MAX_MESSAGE_SIZE).contains(&len) {
        return Err(WireError::BadLength(declared.into()));
    }
    Ok(len)
}

/// Parses one complete message (`bytes` must be exactly the declared length). Never panics;
/// allocates at most what the slice already holds.
pub fn parse_message(bytes: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader::new(bytes);
    let message_length = r.i32()?;
    let declared = message_length_of(message_length)?;
    if declared != bytes.len() {
        return Err(WireError::Malformed(format!(
            "declared length {declared} but {} bytes were given",
            bytes.len()
        )));
    }
    let header = Header {
        message_length,
        request_id: r.i32()?,
        response_to: r.i32()?,
        op_code: r.i32()?,
    };
    match header.op_code {
        OP_MSG => parse_op_msg(header, bytes).map(Message::Msg),
        OP_QUERY => parse_op_query(header, r).map(Message::Query),
        other => Err(WireError::UnsupportedOpcode(other)),
    }
}

fn message_length_of(declared: i32) -> Result<usize, WireError> {
    message_length(declared.to_le_bytes())
}

fn refused(header: &Header, code: i32, code_name: &'static str, errmsg: String) -> WireError {
    WireError::Refused {
        request_id: header.request_id,
        error: CommandError::new(code, code_name, errmsg),
    }
}

fn parse_op_msg(header: Header, bytes: &[u8]) -> Result<OpMsg, WireError> {
    let mut r = Reader::new(bytes);
    r.skip(HEADER_LEN)?;
    let flags = r.u32()?;
    if flags & !(FLAG_CHECKSUM_PRESENT | FLAG_MORE_TO_COME) & REQUIRED_FLAG_MASK != 0 {
        return Err(refused(
            &header,
            223,
            "IllegalOpMsgFlag",
            format!("Message contains illegal flags value: Ob{flags:032b}"),
        ));
    }
    let mut end = bytes.len();
    if flags & FLAG_CHECKSUM_PRESENT != 0 {
        if bytes.len() < HEADER_LEN + 4 + 4 + 1 {
            return Err(refused(
                &header,
                51251,
                "Location51251",
                "Invalid message size for an OpMsg containing a checksum".into(),
            ));
        }
        end -= 4;
        let mut crc_bytes = [0u8; 4];
        crc_bytes.copy_from_slice(&bytes[end..]);
        if u32::from_le_bytes(crc_bytes) != CRC32C.checksum(&bytes[..end]) {
            return Err(refused(
                &header,
                282,
                "ChecksumMismatch",
                "OP_MSG checksum does not match contents".into(),
            ));
        }
    }
    let mut r = Reader::new(&bytes[..end]);
    r.skip(HEADER_LEN + 4)?;

    let mut body = None;
    let mut sequences: Vec<DocumentSequence> = Vec::new();
    while !r.at_end() {
        match r.u8()? {
            0 => {
                if body.is_some() {
                    return Err(refused(
                        &header,
                        40430,
                        "Location40430",
                        "Multiple body sections in message".into(),
                    ));
                }
                body = Some(r.document()?);
            }
            1 => {
                let size = r.i32()?;
                let size = usize::try_from(size)
                    .ok()
                    .filter(|s| *s >= 4)
                    .ok_or_else(|| WireError::Malformed(format!("section size {size}")))?;
                let mut seq = Reader::new(r.take(size - 4)?);
                let identifier = seq.cstring()?;
                if sequences.iter().any(|s| s.identifier == identifier) {
                    return Err(refused(
                        &header,
                        40431,
                        "Location40431",
                        format!("Duplicate document sequence: {identifier}"),
                    ));
                }
                let mut documents = Vec::new();
                while !seq.at_end() {
                    documents.push(seq.document()?);
                }
                sequences.push(DocumentSequence {
                    identifier,
                    documents,
                });
            }
            kind => {
                return Err(refused(
                    &header,
                    40432,
                    "Location40432",
                    format!("Unknown section kind {kind}"),
                ))
            }
        }
    }
    let body = body.ok_or_else(|| {
        refused(
            &header,
            40587,
            "Location40587",
            "OP_MSG messages must have a body".into(),
        )
    })?;
    for seq in &sequences {
        let top = seq.identifier.split('.').next().unwrap_or_default();
        if body.get(top).ok().flatten().is_some() {
            return Err(refused(
                &header,
                40433,
                "Location40433",
                format!(
                    "Duplicate field between body and document sequence {}",
                    seq.identifier
                ),
            ));
        }
    }
    Ok(OpMsg {
        header,
        flags,
        body,
        sequences,
    })
}

fn parse_op_query(header: Header, mut r: Reader<'_>) -> Result<OpQuery, WireError> {
    let flags = r.i32()?;
    let full_collection_name = r.cstring()?;
    let number_to_skip = r.i32()?;
    let number_to_return = r.i32()?;
    let query = r.document()?;
    // An optional projection may follow; commands ignore it.
    if !r.at_end() {
        r.document()?;
    }
    if !r.at_end() {
        return Err(WireError::Malformed("trailing bytes after OP_QUERY".into()));
    }
    Ok(OpQuery {
        header,
        flags,
        full_collection_name,
        number_to_skip,
        number_to_return,
        query,
    })
}

/// Encodes an OP_MSG reply: flags 0 and a single kind-0 section.
pub fn encode_op_msg(request_id: i32, response_to: i32, body: &RawDocument) -> Vec<u8> {
    let doc = body.as_bytes();
    let len = HEADER_LEN + 4 + 1 + doc.len();
    let mut out = Vec::with_capacity(len);
    push_header(&mut out, len, request_id, response_to, OP_MSG);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(0);
    out.extend_from_slice(doc);
    out
}

/// Encodes an OP_MSG with the given flags and document sequences, as a client sends it.
/// Used by tests and tools that talk to the server without a driver.
pub fn encode_op_msg_request(
    request_id: i32,
    flags: u32,
    body: &RawDocument,
    sequences: &[DocumentSequence],
) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&(flags & !FLAG_CHECKSUM_PRESENT).to_le_bytes());
    payload.push(0);
    payload.extend_from_slice(body.as_bytes());
    for seq in sequences {
        payload.push(1);
        let docs_len: usize = seq.documents.iter().map(|d| d.as_bytes().len()).sum();
        let size = 4 + seq.identifier.len() + 1 + docs_len;
        payload.extend_from_slice(&len_i32(size).to_le_bytes());
        payload.extend_from_slice(seq.identifier.as_bytes());
        payload.push(0);
        for doc in &seq.documents {
            payload.extend_from_slice(doc.as_bytes());
        }
    }
    let checksum = flags & FLAG_CHECKSUM_PRESENT != 0;
    let len = HEADER_LEN + payload.len() + if checksum { 4 } else { 0 };
    let mut out = Vec::with_capacity(len);
    push_header(&mut out, len, request_id, 0, OP_MSG);
    out.extend_from_slice(&payload);
    if checksum {
        out[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&flags.to_le_bytes());
        let crc = CRC32C.checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

/// Encodes an OP_QUERY on `namespace`, as drivers send their first handshake.
pub fn encode_op_query(request_id: i32, namespace: &str, query: &RawDocument) -> Vec<u8> {
    let len = HEADER_LEN + 4 + namespace.len() + 1 + 8 + query.as_bytes().len();
    let mut out = Vec::with_capacity(len);
    push_header(&mut out, len, request_id, 0, OP_QUERY);
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(namespace.as_bytes());
    out.push(0);
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&(-1i32).to_le_bytes());
    out.extend_from_slice(query.as_bytes());
    out
}

/// Encodes an OP_REPLY carrying one document, as mongod answers a legacy OP_QUERY command.
pub fn encode_op_reply(request_id: i32, response_to: i32, doc: &RawDocument) -> Vec<u8> {
    let bytes = doc.as_bytes();
    let len = HEADER_LEN + 4 + 8 + 4 + 4 + bytes.len();
    let mut out = Vec::with_capacity(len);
    push_header(&mut out, len, request_id, response_to, OP_REPLY);
    out.extend_from_slice(&0i32.to_le_bytes()); // responseFlags
    out.extend_from_slice(&0i64.to_le_bytes()); // cursorID
    out.extend_from_slice(&0i32.to_le_bytes()); // startingFrom
    out.extend_from_slice(&1i32.to_le_bytes()); // numberReturned
    out.extend_from_slice(bytes);
    out
}

/// Parses a reply (OP_MSG or OP_REPLY) into its single document; for clients and tests.
pub fn parse_reply(bytes: &[u8]) -> Result<(Header, RawDocumentBuf), WireError> {
    let mut r = Reader::new(bytes);
    let message_length = r.i32()?;
    if message_length_of(message_length)? != bytes.len() {
        return Err(WireError::Malformed("reply length mismatch".into()));
    }
    let header = Header {
        message_length,
        request_id: r.i32()?,
        response_to: r.i32()?,
        op_code: r.i32()?,
    };
    match header.op_code {
        OP_MSG => {
            r.u32()?;
            if r.u8()? != 0 {
                return Err(WireError::Malformed("reply without a body section".into()));
            }
            Ok((header, r.document()?))
        }
        OP_REPLY => {
            r.skip(4 + 8 + 4 + 4)?;
            Ok((header, r.document()?))
        }
        other => Err(WireError::UnsupportedOpcode(other)),
    }
}

fn push_header(out: &mut Vec<u8>, len: usize, request_id: i32, response_to: i32, op: i32) {
    out.extend_from_slice(&len_i32(len).to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&response_to.to_le_bytes());
    out.extend_from_slice(&op.to_le_bytes());
}

fn len_i32(len: usize) -> i32 {
    // Callers keep messages under MAX_MESSAGE_SIZE, far below i32::MAX.
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// A bounds-checked cursor over a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                WireError::Malformed(format!(
                    "needed {n} bytes at offset {} of {}",
                    self.pos,
                    self.bytes.len()
                ))
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), WireError> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn array4(&mut self) -> Result<[u8; 4], WireError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(a)
    }

    fn i32(&mut self) -> Result<i32, WireError> {
        self.array4().map(i32::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.array4().map(u32::from_le_bytes)
    }

    fn cstring(&mut self) -> Result<String, WireError> {
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        let nul = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| WireError::Malformed("unterminated string".into()))?;
        let s = std::str::from_utf8(&rest[..nul])
            .map_err(|_| WireError::Malformed("string is not UTF-8".into()))?
            .to_owned();
        self.pos += nul + 1;
        Ok(s)
    }

    /// One BSON document, fully validated (as mongod's `Validated<BSONObj>`).
    fn document(&mut self) -> Result<RawDocumentBuf, WireError> {
        let mut peek = Reader {
            bytes: self.bytes,
            pos: self.pos,
        };
        let len = peek.i32()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l >= 5)
            .ok_or_else(|| WireError::Malformed(format!("document length {len}")))?;
        let bytes = self.take(len)?;
        let doc = RawDocument::from_bytes(bytes)
            .map_err(|e| WireError::Malformed(format!("invalid BSON: {e}")))?;
        validate(doc, 0)?;
        Ok(doc.to_raw_document_buf())
    }
}

/// mongod refuses documents nested deeper than this.
const MAX_DEPTH: usize = 200;

fn validate(doc: &RawDocument, depth: usize) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::Malformed("BSON nested too deeply".into()));
    }
    for element in doc {
        let (_, value) = element.map_err(|e| WireError::Malformed(format!("invalid BSON: {e}")))?;
        match value {
            RawBsonRef::Document(d) => validate(d, depth + 1)?,
            RawBsonRef::Array(a) => validate_array(a, depth + 1)?,
            RawBsonRef::JavaScriptCodeWithScope(c) => validate(c.scope, depth + 1)?,
            _ => {}
        }
    }
    Ok(())
}

fn validate_array(array: &bson::RawArray, depth: usize) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::Malformed("BSON nested too deeply".into()));
    }
    for item in array {
        match item.map_err(|e| WireError::Malformed(format!("invalid BSON: {e}")))? {
            RawBsonRef::Document(d) => validate(d, depth + 1)?,
            RawBsonRef::Array(inner) => validate_array(inner, depth + 1)?,
            RawBsonRef::JavaScriptCodeWithScope(c) => validate(c.scope, depth + 1)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn seq(name: &str, docs: Vec<RawDocumentBuf>) -> DocumentSequence {
        DocumentSequence {
            identifier: name.into(),
            documents: docs,
        }
    }

    #[test]
    fn op_msg_round_trip_merges_sequences_after_the_body() {
        let body = rawdoc! {"insert": "c", "ordered": false, "$db": "test"};
        let docs = vec![rawdoc! {"_id": 1}, rawdoc! {"_id": 2, "x": "y"}];
        let bytes = encode_op_msg_request(7, 0, &body, &[seq("documents", docs.clone())]);
        let Message::Msg(msg) = parse_message(&bytes).unwrap() else {
            panic!("expected OP_MSG")
        };
        assert_eq!(msg.header.request_id, 7);
        assert_eq!(msg.header.message_length as usize, bytes.len());
        assert_eq!(msg.body, body);
        let cmd = msg.command();
        let keys: Vec<&str> = cmd.iter().map(|e| e.unwrap().0).collect();
        assert_eq!(keys, ["insert", "ordered", "$db", "documents"]);
        let merged: Vec<RawDocumentBuf> = cmd
            .get_array("documents")
            .unwrap()
            .into_iter()
            .map(|d| d.unwrap().as_document().unwrap().to_raw_document_buf())
            .collect();
        assert_eq!(merged, docs);
    }

    #[test]
    fn checksum_is_verified_and_skipped() {
        let body = rawdoc! {"ping": 1, "$db": "admin"};
        let mut bytes = encode_op_msg_request(1, FLAG_CHECKSUM_PRESENT, &body, &[]);
        let Message::Msg(msg) = parse_message(&bytes).unwrap() else {
            panic!("expected OP_MSG")
        };
        assert_eq!(msg.body, body);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        match parse_message(&bytes) {
            Err(WireError::Refused { request_id, error }) => {
                assert_eq!(request_id, 1);
                assert_eq!(error.code, 282);
            }
            other => panic!("expected a checksum refusal, got {other:?}"),
        }
    }

    #[test]
    fn more_to_come_is_reported() {
        let body = rawdoc! {"insert": "c", "$db": "test"};
        let bytes = encode_op_msg_request(3, FLAG_MORE_TO_COME, &body, &[]);
        let Message::Msg(msg) = parse_message(&bytes).unwrap() else {
            panic!("expected OP_MSG")
        };
        assert!(msg.more_to_come());
    }

    #[test]
    fn op_query_unwraps_dollar_query() {
        let inner = rawdoc! {"isMaster": 1, "helloOk": true};
        let wrapped =
            rawdoc! {"$query": inner.clone(), "$readPreference": {"mode": "primaryPreferred"}};
        let bytes = encode_op_query(9, "admin.$cmd", &wrapped);
        let Message::Query(q) = parse_message(&bytes).unwrap() else {
            panic!("expected OP_QUERY")
        };
        assert_eq!(q.command_db(), Some("admin"));
        assert_eq!(q.number_to_return, -1);
        assert_eq!(q.command(), inner);
        let plain = encode_op_query(10, "test.$cmd", &inner);
        let Message::Query(q) = parse_message(&plain).unwrap() else {
            panic!("expected OP_QUERY")
        };
        assert_eq!(q.command_db(), Some("test"));
        assert_eq!(q.command(), inner);
    }

    #[test]
    fn replies_round_trip() {
        let doc = rawdoc! {"ok": 1.0, "n": 3};
        let (h, d) = parse_reply(&encode_op_msg(5, 4, &doc)).unwrap();
        assert_eq!((h.request_id, h.response_to, h.op_code), (5, 4, OP_MSG));
        assert_eq!(d, doc);
        let bytes = encode_op_reply(6, 9, &doc);
        let (h, d) = parse_reply(&bytes).unwrap();
        assert_eq!((h.response_to, h.op_code), (9, OP_REPLY));
        assert_eq!(d, doc);
        // responseFlags, cursorID, startingFrom, numberReturned.
        assert_eq!(&bytes[16..20], &0i32.to_le_bytes());
        assert_eq!(&bytes[20..28], &0i64.to_le_bytes());
        assert_eq!(&bytes[28..32], &0i32.to_le_bytes());
        assert_eq!(&bytes[32..36], &1i32.to_le_bytes());
    }

    #[test]
    fn huge_and_tiny_declared_lengths_are_rejected_up_front() {
        assert_eq!(
            message_length(i32::MAX.to_le_bytes()),
            Err(WireError::BadLength(i32::MAX.into()))
        );
        assert_eq!(
            message_length(48_000_001i32.to_le_bytes()),
            Err(WireError::BadLength(48_000_001))
        );
        assert!(message_length((-1i32).to_le_bytes()).is_err());
        assert!(message_length(15i32.to_le_bytes()).is_err());
        assert_eq!(message_length(48_000_000i32.to_le_bytes()), Ok(48_000_000));
        // A frame claiming more than it carries is refused, not read past.
        let mut bytes = encode_op_msg_request(1, 0, &rawdoc! {"ping": 1}, &[]);
        bytes[0..4].copy_from_slice(&1_000_000i32.to_le_bytes());
        assert!(matches!(
            parse_message(&bytes),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn huge_inner_lengths_are_rejected_without_reading_past_the_frame() {
        let mut bytes = encode_op_msg_request(1, 0, &rawdoc! {"ping": 1}, &[]);
        // The body document claims 2 GB.
        bytes[21..25].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(matches!(
            parse_message(&bytes),
            Err(WireError::Malformed(_))
        ));
        // A document sequence claims more bytes than remain.
        let body = rawdoc! {"insert": "c"};
        let mut bytes =
            encode_op_msg_request(1, 0, &body, &[seq("documents", vec![rawdoc! {"a": 1}])]);
        let at = 16 + 4 + 1 + body.as_bytes().len() + 1;
        bytes[at..at + 4].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(matches!(
            parse_message(&bytes),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_messages_are_rejected() {
        let body = rawdoc! {"ping": 1, "$db": "admin"};
        let good = encode_op_msg_request(2, 0, &body, &[]);
        // Every truncation fails cleanly.
        for cut in 0..good.len() {
            let mut short = good[..cut].to_vec();
            if short.len() >= 4 {
                short[0..4].copy_from_slice(&(cut as i32).to_le_bytes());
            }
            assert!(parse_message(&short).is_err(), "cut at {cut}");
        }
        // Unknown opcode.
        let mut bytes = good.clone();
        bytes[12..16].copy_from_slice(&2010i32.to_le_bytes());
        assert_eq!(
            parse_message(&bytes),
            Err(WireError::UnsupportedOpcode(2010))
        );
        // Unknown required flag bit.
        let mut bytes = good.clone();
        bytes[16..20].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(
            parse_message(&bytes),
            Err(WireError::Refused { error, .. }) if error.code == 223
        ));
        // Unknown optional flag bits (exhaustAllowed) are fine.
        let mut bytes = good.clone();
        bytes[16..20].copy_from_slice(&FLAG_EXHAUST_ALLOWED.to_le_bytes());
        assert!(parse_message(&bytes).is_ok());
        // Unknown section kind.
        let mut bytes = good.clone();
        bytes[20] = 5;
        assert!(matches!(
            parse_message(&bytes),
            Err(WireError::Refused { error, .. }) if error.code == 40432
        ));
        // Corrupt BSON inside the body: an element type that does not exist.
        let mut bytes = good.clone();
        bytes[25] = 0x7e;
        assert!(matches!(
            parse_message(&bytes),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn sequence_rules_match_mongod() {
        let body = rawdoc! {"insert": "c", "documents": []};
        let bytes = encode_op_msg_request(4, 0, &body, &[seq("documents", vec![])]);
        assert!(matches!(
            parse_message(&bytes),
            Err(WireError::Refused { error, .. }) if error.code == 40433
        ));
        let body = rawdoc! {"insert": "c"};
        let bytes = encode_op_msg_request(
            4,
            0,
            &body,
            &[seq("documents", vec![]), seq("documents", vec![])],
        );
        assert!(matches!(
            parse_message(&bytes),
            Err(WireError::Refused { error, .. }) if error.code == 40431
        ));
        // No body at all: only a sequence.
        let mut bytes = encode_op_msg_request(4, 0, &body, &[seq("documents", vec![])]);
        let body_len = body.as_bytes().len();
        bytes.drain(20..20 + 1 + body_len);
        let len = bytes.len() as i32;
        bytes[0..4].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(
            parse_message(&bytes),
            Err(WireError::Refused { error, .. }) if error.code == 40587
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: mutate a valid message byte by byte.
        let body = rawdoc! {"find": "c", "filter": {"a": {"$gt": 1}}, "$db": "x"};
        let good = encode_op_msg_request(2, 0, &body, &[seq("d", vec![rawdoc! {"z": [1, 2]}])]);
        let mut state: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let at = (state as usize) % bytes.len();
                bytes[at] = (state >> 8) as u8;
            }
            let _ = parse_message(&bytes);
        }
    }
}
