//! BSON value order and identity as mongod defines them: values of different types sort by
//! a fixed type rank, and numbers compare by value whatever their BSON type.

use std::cmp::Ordering;

use bson::{Bson, Document, RawBsonRef, RawDocument};

/// mongod's canonical type rank (bsontypes.h `canonicalizeBSONType`).
pub fn type_rank(v: &Bson) -> u8 {
    match v {
        Bson::MinKey => 0,
        Bson::Null | Bson::Undefined => 5,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 10,
        Bson::String(_) | Bson::Symbol(_) => 15,
        Bson::Document(_) => 20,
        Bson::Array(_) => 25,
        Bson::Binary(_) => 30,
        Bson::ObjectId(_) => 35,
        Bson::Boolean(_) => 40,
        Bson::DateTime(_) => 45,
        Bson::Timestamp(_) => 47,
        Bson::RegularExpression(_) => 50,
        Bson::DbPointer(_) => 55,
        Bson::JavaScriptCode(_) => 60,
        Bson::JavaScriptCodeWithScope(_) => 65,
        Bson::MaxKey => 127,
    }
}

/// A number reduced to what comparison needs: exact integers stay exact.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

fn as_num(v: &Bson) -> Option<Num> {
    match v {
        Bson::Int32(i) => Some(Num::Int(i64::from(*i))),
        Bson::Int64(i) => Some(Num::Int(*i)),
        Bson::Double(f) => Some(Num::Float(*f)),
        Bson::Decimal128(d) => Some(Num::Float(d.to_string().parse::<f64>().unwrap_or(f64::NAN))),
        _ => None,
    }
}

/// The value as a float, for arithmetic such as `$sum` and `$inc`.
pub fn as_f64(v: &Bson) -> Option<f64> {
    match as_num(v)? {
        Num::Int(i) => Some(i as f64),
        Num::Float(f) => Some(f),
    }
}

fn cmp_num(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
        (Num::Float(x), Num::Float(y)) => cmp_float(x, y),
    }
}

// NaN sorts below every other number, as in mongod.
fn cmp_float(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

fn cmp_int_float(x: i64, y: f64) -> Ordering {
    if y.is_nan() {
        return Ordering::Greater;
    }
    // Beyond ±2^63 the float wins outright; inside, compare the integral parts exactly.
    if y >= 9.223_372_036_854_776e18 {
        return Ordering::Less;
    }
    if y < -9.223_372_036_854_776e18 {
        return Ordering::Greater;
    }
    let t = y.trunc();
    let ti = t as i64;
    match x.cmp(&ti) {
        Ordering::Equal => 0.0f64.partial_cmp(&(y - t)).unwrap_or(Ordering::Equal),
        o => o,
    }
}

/// Total order over BSON values (mongod's `woCompare` without collation).
pub fn compare(a: &Bson, b: &Bson) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        _ if ra == 10 => match (as_num(a), as_num(b)) {
            (Some(x), Some(y)) => cmp_num(x, y),
            _ => Ordering::Equal,
        },
        (Bson::String(x) | Bson::Symbol(x), Bson::String(y) | Bson::Symbol(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        (Bson::Document(x), Bson::Document(y)) => compare_docs(x, y),
        (Bson::Array(x), Bson::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let o = compare(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.timestamp_millis().cmp(&y.timestamp_millis()),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .cmp(&y.pattern)
            .then_with(|| x.options.cmp(&y.options)),
        (Bson::JavaScriptCode(x), Bson::JavaScriptCode(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

pub fn compare_docs(x: &Document, y: &Document) -> Ordering {
    let mut xi = x.iter();
    let mut yi = y.iter();
    loop {
        match (xi.next(), yi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((kx, vx)), Some((ky, vy))) => {
                let o = type_rank(vx)
                    .cmp(&type_rank(vy))
                    .then_with(|| kx.cmp(ky))
                    .then_with(|| compare(vx, vy));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

pub fn values_equal(a: &Bson, b: &Bson) -> bool {
    compare(a, b) == Ordering::Equal
}

/// Bytes that are equal exactly when two values are equal for an index (1, 1.0 and
/// NumberLong(1) are one key).
pub fn key_bytes(v: &Bson, out: &mut Vec<u8>) {
    out.push(type_rank(v));
    match v {
        _ if type_rank(v) == 10 => match as_num(v) {
            Some(Num::Int(i)) => {
                out.push(b'i');
                out.extend_from_slice(&i.to_be_bytes());
            }
            Some(Num::Float(f)) => {
                if f.fract() == 0.0 && f.abs() < 9.0e18 {
                    out.push(b'i');
                    out.extend_from_slice(&(f as i64).to_be_bytes());
                } else {
                    out.push(b'f');
                    out.extend_from_slice(&f.to_bits().to_be_bytes());
                }
            }
            None => {}
        },
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        Bson::Document(d) => {
            for (k, x) in d {
                out.extend_from_slice(k.as_bytes());
                out.push(0);
                key_bytes(x, out);
            }
            out.push(0xff);
        }
        Bson::Array(a) => {
            for x in a {
                key_bytes(x, out);
            }
            out.push(0xff);
        }
        Bson::Binary(b) => {
            out.push(u8::from(b.subtype));
            out.extend_from_slice(&(b.bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(&b.bytes);
        }
        Bson::ObjectId(o) => out.extend_from_slice(&o.bytes()),
        Bson::Boolean(b) => out.push(u8::from(*b)),
        Bson::DateTime(d) => out.extend_from_slice(&d.timestamp_millis().to_be_bytes()),
        Bson::Timestamp(t) => {
            out.extend_from_slice(&t.time.to_be_bytes());
            out.extend_from_slice(&t.increment.to_be_bytes());
        }
        Bson::RegularExpression(r) => {
            out.extend_from_slice(r.pattern.as_bytes());
            out.push(0);
            out.extend_from_slice(r.options.as_bytes());
            out.push(0);
        }
        _ => {}
    }
}

pub fn to_bson(v: RawBsonRef<'_>) -> Bson {
    Bson::try_from(v.to_raw_bson()).unwrap_or(Bson::Null)
}

pub fn to_document(d: &RawDocument) -> Document {
    Document::try_from(d).unwrap_or_default()
}

/// Values found at a dotted path. Arrays met on the way are traversed element by element,
/// as mongod's query matching does; empty when nothing is there. Fields off the path are
/// never decoded.
pub fn lookup_raw(doc: &RawDocument, path: &str) -> Vec<Bson> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let mut out = Vec::new();
    if let Ok(Some(v)) = doc.get(head) {
        match rest {
            None => out.push(to_bson(v)),
            Some(r) => match v {
                RawBsonRef::Document(d) => out = lookup_raw(d, r),
                RawBsonRef::Array(_) => collect_path(&to_bson(v), r, &mut out, false),
                _ => {}
            },
        }
    }
    out
}

fn collect_path(v: &Bson, path: &str, out: &mut Vec<Bson>, in_array: bool) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    match v {
        Bson::Document(d) => {
            if let Some(x) = d.get(head) {
                match rest {
                    None => out.push(x.clone()),
                    Some(r) => collect_path(x, r, out, false),
                }
            }
        }
        Bson::Array(a) => {
            if let Ok(i) = head.parse::<usize>() {
                if let Some(x) = a.get(i) {
                    match rest {
                        None => out.push(x.clone()),
                        Some(r) => collect_path(x, r, out, false),
                    }
                }
            }
            if !in_array {
                for x in a {
                    if matches!(x, Bson::Document(_)) {
                        collect_path(x, path, out, true);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The value at an exact dotted path through documents only (no array traversal).
pub fn get_path<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut cur = doc;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let v = cur.get(p)?;
        if parts.peek().is_none() {
            return Some(v);
        }
        match v {
            Bson::Document(d) => cur = d,
            _ => return None,
        }
    }
    None
}

/// True when the value counts as "true" the way mongod reads flags such as `unique: 1`.
pub fn truthy(v: &Bson) -> bool {
    match v {
        Bson::Boolean(b) => *b,
        Bson::Null | Bson::Undefined => false,
        _ => as_f64(v).map(|f| f != 0.0).unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn numbers_compare_across_types() {
        assert_eq!(
            compare(&Bson::Int32(1), &Bson::Double(1.0)),
            Ordering::Equal
        );
        assert_eq!(
            compare(&Bson::Int64(2), &Bson::Double(1.5)),
            Ordering::Greater
        );
        assert_eq!(
            compare(&Bson::Double(f64::NAN), &Bson::Int32(-5)),
            Ordering::Less
        );
        assert_eq!(
            compare(&Bson::Int64(i64::MAX), &Bson::Double(9.3e18)),
            Ordering::Less
        );
    }

    #[test]
    fn types_sort_by_rank() {
        assert_eq!(compare(&Bson::Null, &Bson::Int32(0)), Ordering::Less);
        assert_eq!(
            compare(&Bson::String("a".into()), &Bson::Document(doc! {})),
            Ordering::Less
        );
        assert_eq!(
            compare(&Bson::Boolean(false), &Bson::Int32(9)),
            Ordering::Greater
        );
    }

    #[test]
    fn key_bytes_unify_numbers() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        key_bytes(&Bson::Int32(7), &mut a);
        key_bytes(&Bson::Double(7.0), &mut b);
        assert_eq!(a, b);
        let mut c = Vec::new();
        key_bytes(&Bson::Double(7.5), &mut c);
        assert_ne!(a, c);
    }

    #[test]
    fn paths_traverse_arrays() {
        let d = doc! {"a": [{"b": 1}, {"b": 2}], "c": {"d": 3}};
        let raw = bson::RawDocumentBuf::from_document(&d).unwrap();
        assert_eq!(
            lookup_raw(&raw, "a.b"),
            vec![Bson::Int32(1), Bson::Int32(2)]
        );
        assert!(lookup_raw(&raw, "x.y").is_empty());
        assert_eq!(lookup_raw(&raw, "c.d"), vec![Bson::Int32(3)]);
    }
}
