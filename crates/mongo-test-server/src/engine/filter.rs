//! Query predicates (`find` filters, `$match`, partial indexes, validators in their query
//! form), compiled once and evaluated against raw stored documents.

use std::cmp::Ordering;

use bson::{Bson, Document, RawDocument};

use super::errors;
use super::value::{compare, lookup_raw, truthy, type_rank};
use crate::error::CommandError;

#[derive(Debug, Clone)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Nor(Vec<Expr>),
    Field(String, Vec<Cond>),
    /// `{}` or a filter that cannot restrict anything.
    True,
}

#[derive(Debug, Clone)]
pub enum Cond {
    Eq(Bson),
    Ne(Bson),
    Cmp(Ordering, bool, Bson),
    In(Vec<Bson>),
    Nin(Vec<Bson>),
    Exists(bool),
    Not(Vec<Cond>),
    Size(usize),
    Type(Vec<u8>),
    All(Vec<Bson>),
    ElemMatch(Box<Expr>, Vec<Cond>),
}

impl Expr {
    pub fn parse(filter: &Document) -> Result<Expr, CommandError> {
        let mut parts = Vec::new();
        for (k, v) in filter {
            parts.push(match k.as_str() {
                "$and" | "$or" | "$nor" => {
                    let arr = match v {
                        Bson::Array(a) if !a.is_empty() => a,
                        _ => return Err(errors::bad_value(format!("{k} must be a nonempty array"))),
                    };
                    let mut subs = Vec::new();
                    for s in arr {
                        match s {
                            Bson::Document(d) => subs.push(Expr::parse(d)?),
                            _ => {
                                return Err(errors::bad_value(
                                    "$or/$and/$nor entries need to be full objects",
                                ))
                            }
                        }
                    }
                    match k.as_str() {
                        "$and" => Expr::And(subs),
                        "$or" => Expr::Or(subs),
                        _ => Expr::Nor(subs),
                    }
                }
                "$comment" => continue,
                "$expr" | "$where" | "$text" | "$jsonSchema" => Expr::True,
                other if other.starts_with('$') => {
                    return Err(errors::bad_value(format!(
                        "unknown top level operator: {other}. If you have a field name that starts with a '$' symbol, consider using $getField or $setField."
                    )))
                }
                _ => Expr::Field(k.clone(), parse_conds(v)?),
            });
        }
        Ok(match parts.len() {
            0 => Expr::True,
            1 => parts.pop().unwrap_or(Expr::True),
            _ => Expr::And(parts),
        })
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Expr::True)
    }

    pub fn matches(&self, doc: &RawDocument) -> bool {
        match self {
            Expr::True => true,
            Expr::And(v) => v.iter().all(|e| e.matches(doc)),
            Expr::Or(v) => v.iter().any(|e| e.matches(doc)),
            Expr::Nor(v) => !v.iter().any(|e| e.matches(doc)),
            Expr::Field(path, conds) => {
                let values = lookup_raw(doc, path);
                conds.iter().all(|c| c.matches(&values))
            }
        }
    }

    /// The `_id` value when the filter is exactly an equality on `_id` (point lookup).
    pub fn id_equality(&self) -> Option<&Bson> {
        match self {
            Expr::Field(p, conds) if p == "_id" && conds.len() == 1 => match &conds[0] {
                Cond::Eq(v)
                    if !matches!(v, Bson::Array(_) | Bson::Null | Bson::RegularExpression(_)) =>
                {
                    Some(v)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Equality fields a filter pins down, which an upsert copies into its new document.
    pub fn equalities(&self, out: &mut Vec<(String, Bson)>) {
        match self {
            Expr::Field(p, conds) => {
                for c in conds {
                    if let Cond::Eq(v) = c {
                        out.push((p.clone(), v.clone()));
                    }
                }
            }
            Expr::And(v) => v.iter().for_each(|e| e.equalities(out)),
            _ => {}
        }
    }
}

fn is_operator_doc(v: &Bson) -> Option<&Document> {
    match v {
        Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => Some(d),
        _ => None,
    }
}

fn parse_conds(v: &Bson) -> Result<Vec<Cond>, CommandError> {
    let Some(ops) = is_operator_doc(v) else {
        return Ok(vec![Cond::Eq(v.clone())]);
    };
    let mut out = Vec::new();
    for (op, arg) in ops {
        out.push(match op.as_str() {
            "$eq" => Cond::Eq(arg.clone()),
            "$ne" => Cond::Ne(arg.clone()),
            "$gt" => Cond::Cmp(Ordering::Greater, false, arg.clone()),
            "$gte" => Cond::Cmp(Ordering::Greater, true, arg.clone()),
            "$lt" => Cond::Cmp(Ordering::Less, false, arg.clone()),
            "$lte" => Cond::Cmp(Ordering::Less, true, arg.clone()),
            "$in" | "$nin" | "$all" => {
                let Bson::Array(a) = arg else {
                    return Err(errors::bad_value(format!("{op} needs an array")));
                };
                match op.as_str() {
                    "$in" => Cond::In(a.clone()),
                    "$nin" => Cond::Nin(a.clone()),
                    _ => Cond::All(a.clone()),
                }
            }
            "$exists" => Cond::Exists(truthy(arg)),
            "$not" => match arg {
                Bson::Document(_) => Cond::Not(parse_conds(arg)?),
                Bson::RegularExpression(_) => Cond::Not(vec![Cond::Eq(arg.clone())]),
                _ => return Err(errors::bad_value("$not needs a regex or a document")),
            },
            "$size" => match super::value::as_f64(arg) {
                Some(n) if n >= 0.0 && n.fract() == 0.0 => Cond::Size(n as usize),
                _ => return Err(errors::bad_value("$size needs a number")),
            },
            "$type" => {
                let list = match arg {
                    Bson::Array(a) => a.clone(),
                    x => vec![x.clone()],
                };
                let mut ranks = Vec::new();
                for t in list {
                    ranks.push(type_code(&t)?);
                }
                Cond::Type(ranks)
            }
            "$elemMatch" => match arg {
                Bson::Document(d) => {
                    if is_operator_doc(arg).is_some() {
                        Cond::ElemMatch(Box::new(Expr::True), parse_conds(arg)?)
                    } else {
                        Cond::ElemMatch(Box::new(Expr::parse(d)?), Vec::new())
                    }
                }
                _ => return Err(errors::bad_value("$elemMatch needs an Object")),
            },
            "$regex" => {
                let options = match ops.get("$options") {
                    Some(Bson::String(o)) => o.clone(),
                    _ => String::new(),
                };
                let pattern = match arg {
                    Bson::String(p) => p.clone(),
                    Bson::RegularExpression(r) => r.pattern.clone(),
                    _ => return Err(errors::bad_value("$regex has to be a string")),
                };
                Cond::Eq(Bson::RegularExpression(bson::Regex { pattern, options }))
            }
            "$options" | "$comment" => continue,
            other => return Err(errors::bad_value(format!("unknown operator: {other}"))),
        });
    }
    Ok(out)
}

fn type_code(t: &Bson) -> Result<u8, CommandError> {
    let code = match t {
        Bson::String(s) => match s.as_str() {
            "double" => 1,
            "string" => 2,
            "object" => 3,
            "array" => 4,
            "binData" => 5,
            "objectId" => 7,
            "bool" => 8,
            "date" => 9,
            "null" => 10,
            "regex" => 11,
            "int" => 16,
            "timestamp" => 17,
            "long" => 18,
            "decimal" => 19,
            "number" => 0,
            other => {
                return Err(errors::bad_value(format!(
                    "Unknown type name alias: {other}"
                )))
            }
        },
        other => match super::value::as_f64(other) {
            Some(n) => n as u8,
            None => {
                return Err(errors::bad_value(
                    "type must be represented as a number or a string",
                ))
            }
        },
    };
    Ok(code)
}

fn bson_type_code(v: &Bson) -> u8 {
    v.element_type() as u8
}

/// Candidate values for comparison: each found value, plus the elements of found arrays.
fn expand(values: &[Bson]) -> impl Iterator<Item = &Bson> {
    values.iter().flat_map(|v| {
        let elems: Box<dyn Iterator<Item = &Bson>> = match v {
            Bson::Array(a) => Box::new(std::iter::once(v).chain(a.iter())),
            _ => Box::new(std::iter::once(v)),
        };
        elems
    })
}

fn eq_matches(values: &[Bson], target: &Bson) -> bool {
    if values.is_empty() {
        return matches!(target, Bson::Null);
    }
    if let Bson::RegularExpression(re) = target {
        return expand(values).any(|v| match v {
            Bson::String(s) => simple_regex(&re.pattern, &re.options, s),
            Bson::RegularExpression(r) => r == re,
            _ => false,
        });
    }
    expand(values).any(|v| compare(v, target) == Ordering::Equal)
}

impl Cond {
    fn matches(&self, values: &[Bson]) -> bool {
        match self {
            Cond::Eq(t) => eq_matches(values, t),
            Cond::Ne(t) => !eq_matches(values, t),
            Cond::Cmp(dir, inclusive, t) => expand(values).any(|v| {
                let same_class =
                    type_rank(v) == type_rank(t) || matches!(t, Bson::MinKey | Bson::MaxKey);
                if !same_class {
                    return false;
                }
                let o = compare(v, t);
                o == *dir || (*inclusive && o == Ordering::Equal)
            }),
            Cond::In(list) => list.iter().any(|t| eq_matches(values, t)),
            Cond::Nin(list) => !list.iter().any(|t| eq_matches(values, t)),
            Cond::Exists(want) => values.is_empty() != *want,
            Cond::Not(conds) => !conds.iter().all(|c| c.matches(values)),
            Cond::Size(n) => values
                .iter()
                .any(|v| matches!(v, Bson::Array(a) if a.len() == *n)),
            Cond::Type(codes) => expand(values).any(|v| {
                let c = bson_type_code(v);
                codes
                    .iter()
                    .any(|want| *want == c || (*want == 0 && matches!(c, 1 | 16 | 18 | 19)))
            }),
            Cond::All(list) => !list.is_empty() && list.iter().all(|t| eq_matches(values, t)),
            Cond::ElemMatch(expr, conds) => values.iter().any(|v| match v {
                Bson::Array(a) => a.iter().any(|e| {
                    if conds.is_empty() {
                        match e {
                            Bson::Document(d) => bson::RawDocumentBuf::from_document(d)
                                .map(|r| expr.matches(&r))
                                .unwrap_or(false),
                            _ => false,
                        }
                    } else {
                        let one = [e.clone()];
                        conds.iter().all(|c| c.matches(&one))
                    }
                }),
                _ => false,
            }),
        }
    }
}

/// Enough of regular expressions for tests: anchors `^`/`$`, `.`, `.*`, and the `i` option.
fn simple_regex(pattern: &str, options: &str, s: &str) -> bool {
    let ci = options.contains('i');
    let (p, s) = if ci {
        (pattern.to_lowercase(), s.to_lowercase())
    } else {
        (pattern.to_string(), s.to_string())
    };
    let anchored_start = p.starts_with('^');
    let p = p.trim_start_matches('^');
    let anchored_end = p.ends_with('$') && !p.ends_with("\\$");
    let p = if anchored_end { &p[..p.len() - 1] } else { p };
    let pc: Vec<char> = p.chars().collect();
    let sc: Vec<char> = s.chars().collect();
    if anchored_start {
        match_here(&pc, &sc, anchored_end)
    } else {
        (0..=sc.len()).any(|i| match_here(&pc, &sc[i..], anchored_end))
    }
}

fn match_here(p: &[char], s: &[char], to_end: bool) -> bool {
    if p.is_empty() {
        return !to_end || s.is_empty();
    }
    if p.len() >= 2 && p[1] == '*' {
        let mut i = 0;
        loop {
            if match_here(&p[2..], &s[i..], to_end) {
                return true;
            }
            if i < s.len() && (p[0] == '.' || s[i] == p[0]) {
                i += 1;
            } else {
                return false;
            }
        }
    }
    if p[0] == '\\' && p.len() >= 2 {
        return !s.is_empty() && s[0] == p[1] && match_here(&p[2..], &s[1..], to_end);
    }
    !s.is_empty() && (p[0] == '.' || p[0] == s[0]) && match_here(&p[1..], &s[1..], to_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, rawdoc};

    fn m(filter: Document, d: &RawDocument) -> bool {
        Expr::parse(&filter).unwrap().matches(d)
    }

    #[test]
    fn operators_follow_mongod() {
        let d = rawdoc! {"_id": 1, "a": 5_i64, "s": "abc", "arr": [1, 2, 3], "sub": {"x": 2.5}};
        assert!(m(doc! {"a": 5}, &d));
        assert!(m(doc! {"a": {"$gt": 4.5, "$lte": 5}}, &d));
        assert!(!m(doc! {"a": {"$gt": "4"}}, &d));
        assert!(m(doc! {"arr": 2}, &d));
        assert!(m(doc! {"sub.x": {"$gte": 2}}, &d));
        assert!(m(doc! {"missing": null}, &d));
        assert!(m(doc! {"missing": {"$exists": false}}, &d));
        assert!(!m(doc! {"a": {"$exists": false}}, &d));
        assert!(m(doc! {"a": {"$in": [1, 5.0]}}, &d));
        assert!(m(doc! {"a": {"$nin": [1, 2]}}, &d));
        assert!(m(doc! {"$or": [{"a": 1}, {"s": "abc"}]}, &d));
        assert!(!m(doc! {"$and": [{"a": 5}, {"s": "x"}]}, &d));
        assert!(m(doc! {"a": {"$ne": 4}}, &d));
        assert!(m(doc! {"s": {"$regex": "^AB", "$options": "i"}}, &d));
        assert!(!m(doc! {"s": {"$regex": "^b"}}, &d));
        assert!(m(
            doc! {"s": bson::Regex { pattern: "b.$".into(), options: String::new() }},
            &d
        ));
    }

    #[test]
    fn unknown_operator_is_bad_value() {
        let e = Expr::parse(&doc! {"a": {"$frob": 1}}).unwrap_err();
        assert_eq!(e.code, 2);
        assert_eq!(e.errmsg, "unknown operator: $frob");
    }
}
