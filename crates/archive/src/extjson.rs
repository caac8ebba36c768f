//! Canonical Extended JSON v2 exactly as the Go driver writes it with
//! `bson.MarshalExtJSON(v, canonical=true, escapeHTML=false)`, and a parser that accepts the
//! canonical, relaxed and legacy forms older mongodump releases wrote.

use std::fmt::Write as _;

use bson::{Bson, Document};
use serde_json::{Map, Value};

use crate::error::ArchiveError;

/// Serialises `doc` as compact canonical Extended JSON, byte for byte what Go's
/// `bson.MarshalExtJSON(doc, true, false)` produces: key order kept, no whitespace, no HTML
/// escaping.
pub fn to_canonical_extjson(doc: &Document) -> String {
    let mut out = String::with_capacity(128);
    write_document(&mut out, doc);
    out
}

fn write_document(out: &mut String, doc: &Document) {
    out.push('{');
    for (i, (key, value)) in doc.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

fn write_value(out: &mut String, value: &Bson) {
    match value {
        Bson::Double(f) => {
            out.push_str(r#"{"$numberDouble":""#);
            out.push_str(&format_double(*f));
            out.push_str(r#""}"#);
        }
        Bson::String(s) => write_string(out, s),
        Bson::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Bson::Document(doc) => write_document(out, doc),
        Bson::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Bson::Null => out.push_str("null"),
        Bson::RegularExpression(regex) => {
            out.push_str(r#"{"$regularExpression":{"pattern":"#);
            write_string(out, &regex.pattern);
            out.push_str(r#","options":""#);
            let mut options: Vec<char> = regex.options.chars().collect();
            options.sort_unstable();
            out.extend(options);
            out.push_str(r#""}}"#);
        }
        Bson::JavaScriptCode(code) => {
            out.push_str(r#"{"$code":"#);
            write_string(out, code);
            out.push('}');
        }
        Bson::JavaScriptCodeWithScope(cws) => {
            out.push_str(r#"{"$code":"#);
            write_string(out, &cws.code);
            out.push_str(r#","$scope":"#);
            write_document(out, &cws.scope);
            out.push('}');
        }
        Bson::Int32(i) => {
            let _ = write!(out, r#"{{"$numberInt":"{i}"}}"#);
        }
        Bson::Int64(i) => {
            let _ = write!(out, r#"{{"$numberLong":"{i}"}}"#);
        }
        Bson::Timestamp(ts) => {
            let _ = write!(
                out,
                r#"{{"$timestamp":{{"t":{},"i":{}}}}}"#,
                ts.time, ts.increment
            );
        }
        Bson::Binary(binary) => {
            out.push_str(r#"{"$binary":{"base64":""#);
            base64_encode(out, &binary.bytes);
            let _ = write!(out, r#"","subType":"{:02x}"}}}}"#, u8::from(binary.subtype));
        }
        Bson::ObjectId(oid) => {
            let _ = write!(out, r#"{{"$oid":"{}"}}"#, oid.to_hex());
        }
        Bson::DateTime(dt) => {
            let _ = write!(
                out,
                r#"{{"$date":{{"$numberLong":"{}"}}}}"#,
                dt.timestamp_millis()
            );
        }
        Bson::Symbol(symbol) => {
            out.push_str(r#"{"$symbol":"#);
            write_string(out, symbol);
            out.push('}');
        }
        Bson::Decimal128(d) => {
            let _ = write!(out, r#"{{"$numberDecimal":"{d}"}}"#);
        }
        Bson::Undefined => out.push_str(r#"{"$undefined":true}"#),
        Bson::MaxKey => out.push_str(r#"{"$maxKey":1}"#),
        Bson::MinKey => out.push_str(r#"{"$minKey":1}"#),
        Bson::DbPointer(_) => write_db_pointer(out, value),
    }
}

// The bson crate keeps a DBPointer's fields private; its own canonical form exposes them.
fn write_db_pointer(out: &mut String, value: &Bson) {
    let json = value.clone().into_canonical_extjson();
    let pointer = json.get("$dbPointer");
    let ns = pointer
        .and_then(|p| p.get("$ref"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let oid = pointer
        .and_then(|p| p.get("$id"))
        .and_then(|id| id.get("$oid"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    out.push_str(r#"{"$dbPointer":{"$ref":"#);
    write_string(out, ns);
    out.push_str(r#","$id":{"$oid":""#);
    out.push_str(oid);
    out.push_str(r#""}}}"#);
}

/// Go's `writeStringWithEscapes` without HTML escaping: `"` and `\` escaped, `\n \r \t \b \f`
/// by name, other control bytes as `\u00xx`, and U+2028/U+2029 escaped.
fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 => Some(""),
            _ => None,
        };
        let Some(escape) = escape else { continue };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let b = c as u32 as usize;
            out.push_str("\\u00");
            out.push(HEX[b >> 4] as char);
            out.push(HEX[b & 0xF] as char);
        } else {
            out.push_str(escape);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn base64_encode(out: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for k in 0..4 {
            if k < symbols {
                out.push(ALPHABET[((n >> (18 - 6 * k)) & 0x3F) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'G', -1, 64)` with `.0` appended when the result has neither
/// a point nor an exponent, plus the ExtJSON names for the non-finite values.
pub(crate) fn format_double(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` prints the same shortest round-tripping digits as Go; only the layout
    // differs, so take the digits and exponent apart and lay them out Go's way.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    // %G with the shortest precision switches to an exponent outside [-4, 6).
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('E');
        out.push(if exp < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", exp.unsigned_abs());
        return out;
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        out.push_str("0.");
        for _ in 0..-point {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Parses Extended JSON text (canonical, relaxed, or the legacy v1 forms such as
/// `{"$binary": "…", "$type": "00"}` and `{"$regex": "…", "$options": "…"}`) into a document,
/// keeping key order.
pub fn parse_extjson(json: &str) -> Result<Document, ArchiveError> {
    let value: Value = serde_json::from_str(json).map_err(|e| ArchiveError::InvalidExtJson {
        detail: e.to_string(),
    })?;
    let Value::Object(map) = value else {
        return Err(ArchiveError::InvalidExtJson {
            detail: "top level is not a JSON object".into(),
        });
    };
    let map = rewrite_legacy_map(map);
    Document::try_from(map).map_err(|e| ArchiveError::InvalidExtJson {
        detail: e.to_string(),
    })
}

/// Rewrites the legacy v1 wrappers the bson crate does not read into their v2 equivalents.
fn rewrite_legacy(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(rewrite_legacy_map(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(rewrite_legacy).collect()),
        other => other,
    }
}

fn rewrite_legacy_map(map: Map<String, Value>) -> Map<String, Value> {
    if map.len() == 2 {
        if let (Some(Value::String(data)), Some(Value::String(subtype))) =
            (map.get("$binary"), map.get("$type"))
        {
            let subtype = if subtype.len() == 1 {
                format!("0{subtype}")
            } else {
                subtype.clone()
            };
            let mut inner = Map::new();
            inner.insert("base64".into(), Value::String(data.clone()));
            inner.insert("subType".into(), Value::String(subtype));
            let mut out = Map::new();
            out.insert("$binary".into(), Value::Object(inner));
            return out;
        }
        if let (Some(Value::String(pattern)), Some(Value::String(options))) =
            (map.get("$regex"), map.get("$options"))
        {
            let mut inner = Map::new();
            inner.insert("pattern".into(), Value::String(pattern.clone()));
            inner.insert("options".into(), Value::String(options.clone()));
            let mut out = Map::new();
            out.insert("$regularExpression".into(), Value::Object(inner));
            return out;
        }
    }
    map.into_iter()
        .map(|(k, v)| (k, rewrite_legacy(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId, spec::BinarySubtype, Binary, Decimal128, Regex, Timestamp};

    #[test]
    fn go_double_layout() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (100.0, "100.0"),
            (123456.0, "123456.0"),
            (1e6, "1E+06"),
            (1234567.0, "1.234567E+06"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (0.00001, "1E-05"),
            (1.5e-7, "1.5E-07"),
            (1e21, "1E+21"),
            (1e100, "1E+100"),
            (5e-324, "5E-324"),
            (f64::MAX, "1.7976931348623157E+308"),
            (1.2345678901234568e18, "1.2345678901234568E+18"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (999999.0, "999999.0"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_double(*value), *expected, "formatting {value:e}");
        }
    }

    #[test]
    fn string_escapes_like_go_without_html() {
        let mut out = String::new();
        write_string(
            &mut out,
            "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}<>&\u{7f}é\u{2028}\u{2029}😀",
        );
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f<>&\u{7f}é\\u2028\\u2029😀\""
        );
    }

    #[test]
    fn base64_padding() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xff\xfe\xfd", "//79"),
        ] {
            let mut out = String::new();
            base64_encode(&mut out, input);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn every_type_in_canonical_form() {
        let oid = ObjectId::parse_str("5bb4fd0f5a4e400df5a45946").unwrap();
        let doc = doc! {
            "int": 1i32,
            "long": -2i64,
            "double": 1.0f64,
            "string": "s",
            "bool": true,
            "null": null,
            "doc": { "a": [1i32, "x"] },
            "date": bson::DateTime::from_millis(1_590_972_160_292),
            "bin": Binary { subtype: BinarySubtype::Uuid, bytes: vec![0xd6, 0xb7, 0xb0] },
            "oid": oid,
            "re": Regex { pattern: "a\"b".into(), options: "xmi".into() },
            "ts": Timestamp { time: 1_538_588_024, increment: 7 },
            "sym": Bson::Symbol("sym".into()),
            "code": Bson::JavaScriptCode("f()".into()),
            "cws": Bson::JavaScriptCodeWithScope(bson::JavaScriptCodeWithScope {
                code: "g()".into(),
                scope: doc! { "x": 1i32 },
            }),
            "dec": "1.05E+3".parse::<Decimal128>().unwrap(),
            "min": Bson::MinKey,
            "max": Bson::MaxKey,
            "undef": Bson::Undefined,
        };
        let json = to_canonical_extjson(&doc);
        assert_eq!(
            json,
            concat!(
                r#"{"int":{"$numberInt":"1"},"long":{"$numberLong":"-2"},"#,
                r#""double":{"$numberDouble":"1.0"},"string":"s","bool":true,"null":null,"#,
                r#""doc":{"a":[{"$numberInt":"1"},"x"]},"#,
                r#""date":{"$date":{"$numberLong":"1590972160292"}},"#,
                r#""bin":{"$binary":{"base64":"1rew","subType":"04"}},"#,
                r#""oid":{"$oid":"5bb4fd0f5a4e400df5a45946"},"#,
                r#""re":{"$regularExpression":{"pattern":"a\"b","options":"imx"}},"#,
                r#""ts":{"$timestamp":{"t":1538588024,"i":7}},"#,
                r#""sym":{"$symbol":"sym"},"code":{"$code":"f()"},"#,
                r#""cws":{"$code":"g()","$scope":{"x":{"$numberInt":"1"}}},"#,
                r#""dec":{"$numberDecimal":"1.05E+3"},"#,
                r#""min":{"$minKey":1},"max":{"$maxKey":1},"undef":{"$undefined":true}}"#
            )
        );
        let back = parse_extjson(&json).unwrap();
        assert_eq!(to_canonical_extjson(&back), json);
    }

    #[test]
    fn db_pointer_round_trips() {
        let json =
            r#"{"p":{"$dbPointer":{"$ref":"db.c","$id":{"$oid":"5bb4fd0f5a4e400df5a45946"}}}}"#;
        let doc = parse_extjson(json).unwrap();
        assert!(matches!(doc.get("p"), Some(Bson::DbPointer(_))));
        assert_eq!(to_canonical_extjson(&doc), json);
    }

    #[test]
    fn keys_are_escaped() {
        let doc = doc! { "{\"a\":\"b\"}": 1.0f64 };
        let json = to_canonical_extjson(&doc);
        assert_eq!(json, r#"{"{\"a\":\"b\"}":{"$numberDouble":"1.0"}}"#);
        assert_eq!(parse_extjson(&json).unwrap(), doc);
    }

    #[test]
    fn relaxed_and_legacy_forms_parse() {
        let doc = parse_extjson(
            r#"{"v":2,"big":4294967296,"f":1.5,"e":1E+06,"key":{"_id":1},
                "b":{"$binary":"1rew","$type":"4"},"r":{"$regex":"^a","$options":"mi"},
                "d":{"$date":1590972160292},"iso":{"$date":"2020-06-01T00:42:40.292Z"}}"#,
        )
        .unwrap();
        assert_eq!(doc.get("v"), Some(&Bson::Int32(2)));
        assert_eq!(doc.get("big"), Some(&Bson::Int64(4_294_967_296)));
        assert_eq!(doc.get("f"), Some(&Bson::Double(1.5)));
        assert_eq!(doc.get("e"), Some(&Bson::Double(1e6)));
        assert_eq!(
            doc.get("b"),
            Some(&Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes: vec![0xd6, 0xb7, 0xb0]
            }))
        );
        assert_eq!(
            to_canonical_extjson(&doc! { "r": doc.get("r").cloned().unwrap() }),
            r#"{"r":{"$regularExpression":{"pattern":"^a","options":"im"}}}"#
        );
        let millis = bson::DateTime::from_millis(1_590_972_160_292);
        assert_eq!(doc.get("d"), Some(&Bson::DateTime(millis)));
        assert_eq!(doc.get("iso"), Some(&Bson::DateTime(millis)));
    }

    #[test]
    fn non_objects_and_bad_wrappers_are_errors() {
        assert!(parse_extjson("[1]").is_err());
        assert!(parse_extjson("").is_err());
        assert!(parse_extjson(r#"{"a":{"$numberInt":"x"}}"#).is_err());
        assert!(parse_extjson(r#"{"a":{"$oid":"zz"}}"#).is_err());
    }

    #[test]
    fn decimal128_uses_the_spec_string_form() {
        // Canonical strings from the BSON Decimal128 corpus, which the Go driver also passes.
        for text in [
            "2",
            "-0",
            "0.001",
            "1.05E+3",
            "1E+3",
            "0E-10",
            "-1.23E-7",
            "NaN",
            "Infinity",
            "-Infinity",
            "9.999999999999999999999999999999999E+6144",
        ] {
            let json = format!(r#"{{"d":{{"$numberDecimal":"{text}"}}}}"#);
            let doc = parse_extjson(&json).unwrap();
            assert_eq!(to_canonical_extjson(&doc), json);
        }
    }

    #[test]
    fn doubles_round_trip_through_text() {
        for f in [1.0, -0.0, 1e6, 1.5e-7, 123456.0, f64::MAX, 5e-324, 0.1] {
            let json = to_canonical_extjson(&doc! { "d": f });
            let back = parse_extjson(&json).unwrap();
            let Some(Bson::Double(g)) = back.get("d") else {
                panic!("not a double")
            };
            assert_eq!(g.to_bits(), f.to_bits(), "{json}");
        }
    }
}
