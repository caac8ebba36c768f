//! A command document in mongod's log/shell notation (`{ find: "c", filter: {}, $db: "app" }`),
//! as its Unauthorized messages quote it.

use std::fmt::Write as _;

use bson::{spec::BinarySubtype, RawBsonRef, RawDocument};

/// The fields a driver sends as OP_MSG document sequences: mongod quotes the command body
/// only, so they are not part of its message.
const SEQUENCES: &[(&str, &str)] = &[
    ("insert", "documents"),
    ("update", "updates"),
    ("delete", "deletes"),
];

pub fn command(name: &str, cmd: &RawDocument) -> String {
    let mut out = String::new();
    let skip = SEQUENCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, field)| *field);
    document(&mut out, cmd, skip);
    out
}

fn document(out: &mut String, doc: &RawDocument, skip: Option<&str>) {
    let mut first = true;
    out.push('{');
    for (key, value) in doc.into_iter().flatten() {
        if Some(key) == skip {
            continue;
        }
        out.push_str(if first { " " } else { ", " });
        first = false;
        out.push_str(key);
        out.push_str(": ");
        // mongod redacts passwords before quoting a command.
        if key == "pwd" {
            out.push_str("\"xxx\"");
            continue;
        }
        self::value(out, value);
    }
    out.push_str(if first { "}" } else { " }" });
}

fn value(out: &mut String, v: RawBsonRef<'_>) {
    match v {
        RawBsonRef::Double(d) if d.fract() == 0.0 && d.is_finite() => {
            let _ = write!(out, "{d:.1}");
        }
        RawBsonRef::Double(d) => {
            let _ = write!(out, "{d}");
        }
        RawBsonRef::String(s) => {
            let _ = write!(out, "\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        }
        RawBsonRef::Document(d) => document(out, d, None),
        RawBsonRef::Array(a) => {
            let mut first = true;
            out.push('[');
            for item in a.into_iter().flatten() {
                out.push_str(if first { " " } else { ", " });
                first = false;
                value(out, item);
            }
            out.push_str(if first { "]" } else { " ]" });
        }
        RawBsonRef::Binary(b) if b.subtype == BinarySubtype::Uuid && b.bytes.len() == 16 => {
            let h = hex(b.bytes);
            let _ = write!(
                out,
                "UUID(\"{}-{}-{}-{}-{}\")",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            );
        }
        RawBsonRef::Binary(b) => {
            let _ = write!(
                out,
                "BinData({}, {})",
                u8::from(b.subtype),
                hex(b.bytes).to_uppercase()
            );
        }
        RawBsonRef::ObjectId(id) => {
            let _ = write!(out, "ObjectId('{id}')");
        }
        RawBsonRef::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        RawBsonRef::DateTime(d) => {
            let _ = write!(out, "new Date({})", d.timestamp_millis());
        }
        RawBsonRef::Null => out.push_str("null"),
        RawBsonRef::Undefined => out.push_str("undefined"),
        RawBsonRef::Int32(i) => {
            let _ = write!(out, "{i}");
        }
        RawBsonRef::Int64(i) => {
            let _ = write!(out, "{i}");
        }
        RawBsonRef::Timestamp(t) => {
            let _ = write!(out, "Timestamp({}, {})", t.time, t.increment);
        }
        RawBsonRef::RegularExpression(r) => {
            let _ = write!(out, "/{}/{}", r.pattern, r.options);
        }
        RawBsonRef::Decimal128(d) => {
            let _ = write!(out, "{d}");
        }
        RawBsonRef::MinKey => out.push_str("MinKey"),
        RawBsonRef::MaxKey => out.push_str("MaxKey"),
        other => {
            let _ = write!(out, "{:?}", other.element_type());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use bson::rawdoc;

    #[test]
    fn quotes_like_mongod_and_leaves_out_document_sequences() {
        let cmd = rawdoc! {
            "insert": "c",
            "ordered": true,
            "documents": [{"a": 1}],
            "lsid": {"id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![0x07, 0xe7, 0xb9, 0x98, 0xa2, 0xd7, 0x43, 0xc3, 0x92, 0xea, 0x70, 0x03, 0x3a, 0xd2, 0x0e, 0x7c] }},
            "$db": "app",
        };
        assert_eq!(
            super::command("insert", &cmd),
            r#"{ insert: "c", ordered: true, lsid: { id: UUID("07e7b998-a2d7-43c3-92ea-70033ad20e7c") }, $db: "app" }"#
        );
        let cmd = rawdoc! {"listDatabases": 1.0, "filter": {}, "$db": "admin"};
        assert_eq!(
            super::command("listDatabases", &cmd),
            r#"{ listDatabases: 1.0, filter: {}, $db: "admin" }"#
        );
    }
}
