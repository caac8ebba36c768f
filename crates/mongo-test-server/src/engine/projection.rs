//! `find` projections: inclusion or exclusion of (dotted) fields, `_id` included unless
//! excluded, and simple computed fields (`"$path"` references and literals).

use bson::{Bson, Document};

use super::value::{get_path, truthy};
use crate::error::CommandError;

#[derive(Debug, Clone)]
pub struct Projection {
    inclusive: bool,
    fields: Vec<(String, Spec)>,
    id: bool,
}

#[derive(Debug, Clone)]
enum Spec {
    Keep,
    Drop,
    Computed(Bson),
}

impl Projection {
    pub fn parse(p: &Document) -> Result<Option<Projection>, CommandError> {
        if p.is_empty() {
            return Ok(None);
        }
        let mut inclusive: Option<bool> = None;
        let mut fields = Vec::new();
        let mut id = true;
        for (k, v) in p {
            let spec = match v {
                Bson::Boolean(_)
                | Bson::Int32(_)
                | Bson::Int64(_)
                | Bson::Double(_)
                | Bson::Decimal128(_) => {
                    if truthy(v) {
                        Spec::Keep
                    } else {
                        Spec::Drop
                    }
                }
                other => Spec::Computed(other.clone()),
            };
            if k == "_id" {
                match spec {
                    Spec::Drop => {
                        id = false;
                        continue;
                    }
                    Spec::Keep => {
                        continue;
                    }
                    Spec::Computed(_) => {}
                }
            }
            let inc = !matches!(spec, Spec::Drop);
            match inclusive {
                None => inclusive = Some(inc),
                Some(i) if i != inc => {
                    let msg = if i {
                        format!("Cannot do exclusion on field {k} in inclusion projection")
                    } else {
                        format!("Cannot do inclusion on field {k} in exclusion projection")
                    };
                    return Err(CommandError::new(31254, "Location31254", msg));
                }
                _ => {}
            }
            fields.push((k.clone(), spec));
        }
        Ok(Some(Projection {
            inclusive: inclusive.unwrap_or(false),
            fields,
            id,
        }))
    }

    pub fn apply(&self, doc: &Document) -> Document {
        if self.inclusive {
            let mut out = Document::new();
            if self.id {
                if let Some(v) = doc.get("_id") {
                    out.insert("_id", v.clone());
                }
            }
            // Included fields keep the document's order; computed ones follow.
            for (k, v) in doc {
                if k == "_id" {
                    continue;
                }
                for (f, spec) in &self.fields {
                    if !matches!(spec, Spec::Keep) {
                        continue;
                    }
                    if f == k {
                        out.insert(k.clone(), v.clone());
                    } else if let Some(rest) = f.strip_prefix(&format!("{k}.")) {
                        if let Some(sub) = include_path(v, rest) {
                            merge_into(&mut out, k, sub);
                        }
                    }
                }
            }
            for (f, spec) in &self.fields {
                if let Spec::Computed(e) = spec {
                    let val = match e {
                        Bson::String(s) if s.starts_with('$') => get_path(doc, &s[1..]).cloned(),
                        other => Some(other.clone()),
                    };
                    if let Some(val) = val {
                        out.insert(f.clone(), val);
                    }
                }
            }
            out
        } else {
            let mut out = doc.clone();
            if !self.id {
                out.remove("_id");
            }
            for (f, _) in &self.fields {
                remove_path(&mut out, f);
            }
            out
        }
    }
}

fn include_path(v: &Bson, path: &str) -> Option<Bson> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    match v {
        Bson::Document(d) => {
            let x = d.get(head)?;
            let kept = match rest {
                None => x.clone(),
                Some(r) => include_path(x, r)?,
            };
            let mut out = Document::new();
            out.insert(head, kept);
            Some(Bson::Document(out))
        }
        Bson::Array(a) => Some(Bson::Array(
            a.iter().filter_map(|e| include_path(e, path)).collect(),
        )),
        _ => None,
    }
}

fn merge_into(out: &mut Document, k: &str, sub: Bson) {
    match (out.get_mut(k), sub) {
        (Some(Bson::Document(existing)), Bson::Document(new)) => {
            for (nk, nv) in new {
                let nk2 = nk.clone();
                merge_into(existing, &nk2, nv);
            }
        }
        (_, sub) => {
            out.insert(k, sub);
        }
    }
}

fn remove_path(doc: &mut Document, path: &str) {
    match path.split_once('.') {
        None => {
            doc.remove(path);
        }
        Some((h, r)) => match doc.get_mut(h) {
            Some(Bson::Document(d)) => remove_path(d, r),
            Some(Bson::Array(a)) => {
                for e in a {
                    if let Bson::Document(d) = e {
                        remove_path(d, r);
                    }
                }
            }
            _ => {}
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn inclusion_keeps_id_and_order() {
        let p = Projection::parse(&doc! {"b": 1, "a.x": 1})
            .unwrap()
            .unwrap();
        let d = doc! {"_id": 7, "a": {"x": 1, "y": 2}, "b": 2, "c": 3};
        assert_eq!(p.apply(&d), doc! {"_id": 7, "a": {"x": 1}, "b": 2});
    }

    #[test]
    fn exclusion_and_id_rules() {
        let p = Projection::parse(&doc! {"_id": 0, "c": 0})
            .unwrap()
            .unwrap();
        let d = doc! {"_id": 7, "b": 2, "c": 3};
        assert_eq!(p.apply(&d), doc! {"b": 2});
        let p = Projection::parse(&doc! {"_id": 0, "b": 1})
            .unwrap()
            .unwrap();
        assert_eq!(p.apply(&d), doc! {"b": 2});
        let e = Projection::parse(&doc! {"a": 1, "b": 0}).unwrap_err();
        assert_eq!(e.code, 31254);
    }
}
