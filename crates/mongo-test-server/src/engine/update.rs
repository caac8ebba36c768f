//! Update documents: replacements, the update operators, and the pipeline forms
//! mongorestore sends (`$replaceRoot` with `$literal`).

use bson::{Bson, DateTime, Document};

use super::errors;
use super::value::{as_f64, compare, values_equal};
use crate::error::CommandError;

#[derive(Debug, Clone)]
pub enum UpdateSpec {
    Replacement(Document),
    Operators(Document),
    Pipeline(Vec<Document>),
}

impl UpdateSpec {
    pub fn parse(u: &Bson) -> Result<UpdateSpec, CommandError> {
        match u {
            Bson::Document(d) => {
                if d.keys().next().is_some_and(|k| k.starts_with('$')) {
                    for (k, v) in d {
                        if !KNOWN.contains(&k.as_str()) {
                            return Err(errors::failed_to_parse(format!(
                                "Unknown modifier: {k}. Expected a valid update modifier or pipeline-style update specified as an array"
                            )));
                        }
                        if !matches!(v, Bson::Document(_)) {
                            return Err(errors::failed_to_parse(format!(
                                "Modifiers operate on fields but we found type {} instead. For example: {{$mod: {{<field>: ...}}}} not {{{k}: {}}}",
                                super::type_name(v),
                                v
                            )));
                        }
                    }
                    check_conflicts(d)?;
                    Ok(UpdateSpec::Operators(d.clone()))
                } else {
                    Ok(UpdateSpec::Replacement(d.clone()))
                }
            }
            Bson::Array(stages) => Ok(UpdateSpec::Pipeline(
                stages
                    .iter()
                    .map(|s| match s {
                        Bson::Document(d) => Ok(d.clone()),
                        _ => Err(errors::failed_to_parse(
                            "Each element of the update pipeline must be an object",
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            )),
            other => Err(errors::failed_to_parse(format!(
                "Update argument must be either an object or an array, found {}",
                super::type_name(other)
            ))),
        }
    }

    pub fn is_replacement(&self) -> bool {
        matches!(self, UpdateSpec::Replacement(_))
    }

    /// The updated document. `inserting` is true for the document an upsert creates
    /// (`$setOnInsert` applies only then).
    pub fn apply(&self, old: &Document, inserting: bool) -> Result<Document, CommandError> {
        let new = match self {
            UpdateSpec::Replacement(r) => {
                let mut out = Document::new();
                if let Some(id) = old.get("_id") {
                    out.insert("_id", id.clone());
                }
                for (k, v) in r {
                    if k == "_id" {
                        if let Some(oid) = old.get("_id") {
                            if !values_equal(oid, v) {
                                return Err(errors::immutable_field(format!(
                                    "After applying the update, the (immutable) field '_id' was found to have been altered to _id: {v}"
                                )));
                            }
                            continue;
                        }
                    }
                    out.insert(k.clone(), v.clone());
                }
                out
            }
            UpdateSpec::Operators(ops) => {
                let mut d = old.clone();
                for (op, fields) in ops {
                    let Bson::Document(fields) = fields else {
                        continue;
                    };
                    for (path, arg) in fields {
                        if path == "_id" || path.starts_with("_id.") {
                            if op == "$setOnInsert"
                                || (op == "$set"
                                    && old.get("_id").is_some_and(|o| values_equal(o, arg)))
                            {
                                if inserting || op == "$set" {
                                    set_path(&mut d, path, arg.clone())?;
                                }
                                continue;
                            }
                            if !(inserting && old.get("_id").is_none()) {
                                return Err(errors::immutable_field(
                                    "Performing an update on the path '_id' would modify the immutable field '_id'",
                                ));
                            }
                        }
                        apply_op(&mut d, op, path, arg, inserting)?;
                    }
                }
                d
            }
            UpdateSpec::Pipeline(stages) => {
                let mut d = old.clone();
                for st in stages {
                    let Some((name, arg)) = st.iter().next() else {
                        continue;
                    };
                    match (name.as_str(), arg) {
                        ("$replaceRoot" | "$replaceWith", Bson::Document(a)) => {
                            let root = if name == "$replaceRoot" {
                                a.get("newRoot")
                            } else {
                                Some(arg)
                            };
                            let root = match root {
                                Some(Bson::Document(r)) => match r.get("$literal") {
                                    Some(Bson::Document(lit)) => lit.clone(),
                                    _ => r.clone(),
                                },
                                _ => {
                                    return Err(errors::failed_to_parse(
                                        "$replaceRoot needs a document newRoot",
                                    ))
                                }
                            };
                            d = root;
                        }
                        ("$set" | "$addFields", Bson::Document(a)) => {
                            for (k, v) in a {
                                let v = match v {
                                    Bson::Document(x) if x.contains_key("$literal") => {
                                        x.get("$literal").cloned().unwrap_or(Bson::Null)
                                    }
                                    Bson::String(s) if s.starts_with('$') => {
                                        super::value::get_path(old, &s[1..])
                                            .cloned()
                                            .unwrap_or(Bson::Null)
                                    }
                                    other => other.clone(),
                                };
                                set_path(&mut d, k, v)?;
                            }
                        }
                        ("$unset" | "$project", v) => {
                            let names: Vec<String> = match v {
                                Bson::String(s) => vec![s.clone()],
                                Bson::Array(a) => a
                                    .iter()
                                    .filter_map(|x| x.as_str().map(String::from))
                                    .collect(),
                                _ => Vec::new(),
                            };
                            for n in names {
                                unset_path(&mut d, &n);
                            }
                        }
                        _ => {
                            return Err(errors::location(
                                40324,
                                format!("Unrecognized pipeline stage name: '{name}'"),
                            ))
                        }
                    }
                }
                if let (Some(o), Some(n)) = (old.get("_id"), d.get("_id")) {
                    if !values_equal(o, n) {
                        return Err(errors::immutable_field(format!(
                            "After applying the update, the (immutable) field '_id' was found to have been altered to _id: {n}"
                        )));
                    }
                }
                d
            }
        };
        Ok(id_first(new, old.get("_id")))
    }
}

const KNOWN: &[&str] = &[
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$push",
    "$addToSet",
    "$pull",
    "$pop",
    "$rename",
    "$setOnInsert",
    "$currentDate",
    "$pullAll",
];

/// `_id` always leads a stored document.
pub fn id_first(mut d: Document, fallback: Option<&Bson>) -> Document {
    let id = d.remove("_id").or_else(|| fallback.cloned());
    match id {
        None => d,
        Some(id) => {
            let mut out = Document::new();
            out.insert("_id", id);
            out.extend(d);
            out
        }
    }
}

fn check_conflicts(ops: &Document) -> Result<(), CommandError> {
    let mut seen: Vec<String> = Vec::new();
    for (op, fields) in ops {
        let Bson::Document(fields) = fields else {
            continue;
        };
        for (path, arg) in fields {
            let mut paths = vec![path.clone()];
            if op == "$rename" {
                if let Bson::String(to) = arg {
                    paths.push(to.clone());
                }
            }
            for p in paths {
                for s in &seen {
                    let clash = *s == p
                        || s.starts_with(&format!("{p}."))
                        || p.starts_with(&format!("{s}."));
                    if clash {
                        return Err(errors::conflicting_update(format!(
                            "Updating the path '{p}' would create a conflict at '{}'",
                            if s.len() < p.len() { s } else { &p }
                        )));
                    }
                }
                seen.push(p);
            }
        }
    }
    Ok(())
}

fn get_path_mut<'a>(d: &'a mut Document, path: &str) -> Option<&'a mut Bson> {
    match path.split_once('.') {
        None => d.get_mut(path),
        Some((h, r)) => match d.get_mut(h)? {
            Bson::Document(sub) => get_path_mut(sub, r),
            Bson::Array(a) => {
                let (i, rest) = match r.split_once('.') {
                    Some((i, rest)) => (i, Some(rest)),
                    None => (r, None),
                };
                let elem = a.get_mut(i.parse::<usize>().ok()?)?;
                match (rest, elem) {
                    (None, e) => Some(e),
                    (Some(rest), Bson::Document(sub)) => get_path_mut(sub, rest),
                    _ => None,
                }
            }
            _ => None,
        },
    }
}

pub fn set_path(d: &mut Document, path: &str, v: Bson) -> Result<(), CommandError> {
    match path.split_once('.') {
        None => {
            d.insert(path, v);
            Ok(())
        }
        Some((h, r)) => {
            if !d.contains_key(h) {
                d.insert(h, Document::new());
            }
            match d.get_mut(h) {
                Some(Bson::Document(sub)) => set_path(sub, r, v),
                Some(Bson::Array(a)) => {
                    let (i, rest) = match r.split_once('.') {
                        Some((i, rest)) => (i, Some(rest)),
                        None => (r, None),
                    };
                    let idx: usize = i.parse().map_err(|_| {
                        errors::location(
                            28,
                            format!("Cannot create field '{i}' in element {{{h}: [...]}}"),
                        )
                    })?;
                    if idx >= a.len() {
                        a.resize(idx + 1, Bson::Null);
                    }
                    match rest {
                        None => {
                            a[idx] = v;
                            Ok(())
                        }
                        Some(rest) => {
                            if !matches!(a[idx], Bson::Document(_)) {
                                a[idx] = Bson::Document(Document::new());
                            }
                            match &mut a[idx] {
                                Bson::Document(sub) => set_path(sub, rest, v),
                                _ => Ok(()),
                            }
                        }
                    }
                }
                Some(other) => Err(CommandError::new(
                    28,
                    "PathNotViable",
                    format!(
                        "Cannot create field '{}' in element {{{h}: {other}}}",
                        r.split('.').next().unwrap_or(r)
                    ),
                )),
                None => Ok(()),
            }
        }
    }
}

pub fn unset_path(d: &mut Document, path: &str) {
    match path.split_once('.') {
        None => {
            d.remove(path);
        }
        Some((h, r)) => match d.get_mut(h) {
            Some(Bson::Document(sub)) => unset_path(sub, r),
            Some(Bson::Array(a)) => {
                if let Ok(i) = r.parse::<usize>() {
                    if i < a.len() {
                        a[i] = Bson::Null;
                    }
                }
            }
            _ => {}
        },
    }
}

fn add_numbers(a: &Bson, b: &Bson) -> Option<Bson> {
    Some(match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => match x.checked_add(*y) {
            Some(s) => Bson::Int32(s),
            None => Bson::Int64(i64::from(*x) + i64::from(*y)),
        },
        (Bson::Int32(_) | Bson::Int64(_), Bson::Int32(_) | Bson::Int64(_)) => {
            let x = as_f64(a)? as i64;
            let y = as_f64(b)? as i64;
            Bson::Int64(x.checked_add(y)?)
        }
        _ => Bson::Double(as_f64(a)? + as_f64(b)?),
    })
}

fn mul_numbers(a: &Bson, b: &Bson) -> Option<Bson> {
    Some(match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => match x.checked_mul(*y) {
            Some(s) => Bson::Int32(s),
            None => Bson::Int64(i64::from(*x) * i64::from(*y)),
        },
        (Bson::Int32(_) | Bson::Int64(_), Bson::Int32(_) | Bson::Int64(_)) => {
            Bson::Int64((as_f64(a)? as i64).checked_mul(as_f64(b)? as i64)?)
        }
        _ => Bson::Double(as_f64(a)? * as_f64(b)?),
    })
}

fn is_number(v: &Bson) -> bool {
    matches!(
        v,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
    )
}

fn apply_op(
    d: &mut Document,
    op: &str,
    path: &str,
    arg: &Bson,
    inserting: bool,
) -> Result<(), CommandError> {
    let id_str = match d.get("_id") {
        Some(id) => format!("{{_id: {id}}}"),
        None => "{}".to_string(),
    };
    let id_desc = || id_str.clone();
    match op {
        "$set" => set_path(d, path, arg.clone()),
        "$setOnInsert" => {
            if inserting {
                set_path(d, path, arg.clone())?;
            }
            Ok(())
        }
        "$unset" => {
            unset_path(d, path);
            Ok(())
        }
        "$inc" | "$mul" => {
            if !is_number(arg) {
                return Err(errors::type_mismatch(format!(
                    "Cannot {} with non-numeric argument: {{{path}: {arg}}}",
                    if op == "$inc" {
                        "increment"
                    } else {
                        "multiply"
                    }
                )));
            }
            let cur = get_path_mut(d, path).cloned();
            let new = match cur {
                None => {
                    if op == "$inc" {
                        arg.clone()
                    } else {
                        mul_numbers(&Bson::Int32(0), arg).unwrap_or(Bson::Int32(0))
                    }
                }
                Some(c) if is_number(&c) => {
                    let r = if op == "$inc" { add_numbers(&c, arg) } else { mul_numbers(&c, arg) };
                    r.ok_or_else(|| errors::bad_value("numeric overflow"))?
                }
                Some(c) => {
                    return Err(errors::type_mismatch(format!(
                        "Cannot apply {op} to a value of non-numeric type. {} has the field '{path}' of non-numeric type {}",
                        id_desc(),
                        super::type_name(&c)
                    )))
                }
            };
            set_path(d, path, new)
        }
        "$min" | "$max" => {
            let cur = get_path_mut(d, path).cloned();
            let replace = match &cur {
                None => true,
                Some(c) => {
                    let o = compare(arg, c);
                    if op == "$min" {
                        o == std::cmp::Ordering::Less
                    } else {
                        o == std::cmp::Ordering::Greater
                    }
                }
            };
            if replace {
                set_path(d, path, arg.clone())?;
            }
            Ok(())
        }
        "$currentDate" => set_path(d, path, Bson::DateTime(DateTime::now())),
        "$rename" => {
            let Bson::String(to) = arg else {
                return Err(errors::bad_value(
                    "The 'to' field for $rename must be a string",
                ));
            };
            if let Some(v) = get_path_mut(d, path).cloned() {
                unset_path(d, path);
                set_path(d, to, v)?;
            }
            Ok(())
        }
        "$push" | "$addToSet" => {
            let (items, each, slice) = match arg {
                Bson::Document(a) if a.contains_key("$each") => {
                    let items = match a.get("$each") {
                        Some(Bson::Array(x)) => x.clone(),
                        _ => {
                            return Err(errors::bad_value("The argument to $each must be an array"))
                        }
                    };
                    (
                        items,
                        true,
                        a.get("$slice").and_then(as_f64).map(|s| s as i64),
                    )
                }
                other => (vec![other.clone()], false, None),
            };
            let _ = each;
            let mut arr = match get_path_mut(d, path).cloned() {
                None => Vec::new(),
                Some(Bson::Array(a)) => a,
                Some(other) => {
                    return Err(CommandError::new(
                        2,
                        "BadValue",
                        format!(
                            "The field '{path}' must be an array but is of type {} in document {}",
                            super::type_name(&other),
                            id_desc()
                        ),
                    ))
                }
            };
            for it in items {
                if op == "$addToSet" && arr.iter().any(|e| values_equal(e, &it)) {
                    continue;
                }
                arr.push(it);
            }
            if let Some(s) = slice {
                if s >= 0 {
                    arr.truncate(s as usize);
                } else {
                    let keep = (-s) as usize;
                    if arr.len() > keep {
                        arr.drain(..arr.len() - keep);
                    }
                }
            }
            set_path(d, path, Bson::Array(arr))
        }
        "$pull" | "$pullAll" => {
            if let Some(Bson::Array(a)) = get_path_mut(d, path) {
                let targets: Vec<Bson> = match (op, arg) {
                    ("$pullAll", Bson::Array(x)) => x.clone(),
                    (_, x) => vec![x.clone()],
                };
                a.retain(|e| !targets.iter().any(|t| values_equal(e, t)));
            }
            Ok(())
        }
        "$pop" => {
            if let Some(Bson::Array(a)) = get_path_mut(d, path) {
                if as_f64(arg).unwrap_or(1.0) < 0.0 {
                    if !a.is_empty() {
                        a.remove(0);
                    }
                } else {
                    a.pop();
                }
            }
            Ok(())
        }
        _ => Err(errors::failed_to_parse(format!("Unknown modifier: {op}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc};

    fn upd(u: Document, old: Document) -> Result<Document, CommandError> {
        UpdateSpec::parse(&Bson::Document(u))?.apply(&old, false)
    }

    #[test]
    fn operators_apply() {
        let old = doc! {"_id": 1, "a": 1, "arr": [1]};
        let new = upd(
            doc! {"$set": {"b.c": "x"}, "$inc": {"a": 2_i64}, "$push": {"arr": {"$each": [2, 3]}}, "$unset": {"zz": ""}},
            old,
        )
        .unwrap();
        assert_eq!(
            new,
            doc! {"_id": 1, "a": 3_i64, "arr": [1, 2, 3], "b": {"c": "x"}}
        );
    }

    #[test]
    fn replacement_keeps_id_first() {
        let new = upd(doc! {"x": 1}, doc! {"_id": 5, "y": 2}).unwrap();
        assert_eq!(new, doc! {"_id": 5, "x": 1});
        let e = upd(doc! {"_id": 6}, doc! {"_id": 5}).unwrap_err();
        assert_eq!(e.code, 66);
    }

    #[test]
    fn errors_match_mongod() {
        let e = upd(doc! {"$inc": {"s": 1}}, doc! {"_id": 1, "s": "x"}).unwrap_err();
        assert_eq!(e.code, 14);
        let e = upd(doc! {"$set": {"a": 1}, "$inc": {"a": 1}}, doc! {"_id": 1}).unwrap_err();
        assert_eq!(e.code, 40);
        let e = UpdateSpec::parse(&bson!({"$frob": {"a": 1}})).unwrap_err();
        assert_eq!(e.code, 9);
    }

    #[test]
    fn pipeline_replace_root_literal() {
        let u = bson!([{"$replaceRoot": {"newRoot": {"$literal": {"_id": 1, "t": bson::Timestamp {time: 0, increment: 0}}}}}]);
        let new = UpdateSpec::parse(&u)
            .unwrap()
            .apply(&doc! {"_id": 1, "old": true}, false)
            .unwrap();
        assert_eq!(
            new,
            doc! {"_id": 1, "t": bson::Timestamp {time: 0, increment: 0}}
        );
    }
}
