//! `aggregate` with the stages the tools and tests use, on collections, views (whose
//! pipeline runs first) and time-series (whose buckets are unpacked first).

use std::sync::Arc;

use bson::{doc, Bson, DateTime, Document, RawDocumentBuf};

use super::catalog_cmds::coll_stats_doc;
use super::collection::Kind;
use super::errors;
use super::filter::Expr;
use super::projection::Projection;
use super::read_cmds::{sort_docs, sort_spec};
use super::reply::raw;
use super::value::{as_f64, compare, get_path, to_document, values_equal};
use super::{target_name, Engine};
use crate::error::CommandError;

type Docs = Vec<Arc<RawDocumentBuf>>;

/// Views nest at most this deep, as in mongod.
const MAX_VIEW_DEPTH: usize = 20;

fn eval(expr: &Bson, d: &Document) -> Bson {
    match expr {
        Bson::String(s) if s.starts_with("$$") => match s.as_str() {
            "$$ROOT" | "$$CURRENT" => Bson::Document(d.clone()),
            _ => Bson::Null,
        },
        Bson::String(s) if s.starts_with('$') => {
            get_path(d, &s[1..]).cloned().unwrap_or(Bson::Null)
        }
        Bson::Document(x) => {
            if let Some((k, arg)) = x.iter().next() {
                if k.starts_with('$') {
                    return eval_op(k, arg, d);
                }
            }
            Bson::Document(x.iter().map(|(k, v)| (k.clone(), eval(v, d))).collect())
        }
        Bson::Array(a) => Bson::Array(a.iter().map(|v| eval(v, d)).collect()),
        other => other.clone(),
    }
}

fn eval_op(op: &str, arg: &Bson, d: &Document) -> Bson {
    let args: Vec<Bson> = match arg {
        Bson::Array(a) => a.iter().map(|v| eval(v, d)).collect(),
        other => vec![eval(other, d)],
    };
    match op {
        "$literal" => arg.clone(),
        "$add" | "$sum" => args.iter().fold(Bson::Int32(0), |acc, v| add(&acc, v)),
        "$eq" => Bson::Boolean(args.len() == 2 && values_equal(&args[0], &args[1])),
        "$toString" => match args.first() {
            Some(Bson::String(s)) => Bson::String(s.clone()),
            Some(v) => Bson::String(v.to_string()),
            None => Bson::Null,
        },
        _ => Bson::Null,
    }
}

fn add(a: &Bson, b: &Bson) -> Bson {
    match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => x
            .checked_add(*y)
            .map(Bson::Int32)
            .unwrap_or(Bson::Int64(i64::from(*x) + i64::from(*y))),
        (Bson::Int32(_) | Bson::Int64(_), Bson::Int32(_) | Bson::Int64(_)) => {
            let x = as_f64(a).unwrap_or(0.0) as i64;
            let y = as_f64(b).unwrap_or(0.0) as i64;
            x.checked_add(y)
                .map(Bson::Int64)
                .unwrap_or(Bson::Double(x as f64 + y as f64))
        }
        _ => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => Bson::Double(x + y),
            (Some(_), None) => a.clone(),
            (None, Some(_)) => b.clone(),
            _ => Bson::Int32(0),
        },
    }
}

#[derive(Debug)]
enum Acc {
    Sum(Bson),
    Avg(f64, u64),
    Min(Option<Bson>),
    Max(Option<Bson>),
    First(Option<Bson>),
    Last(Bson),
    Push(Vec<Bson>),
    AddToSet(Vec<Bson>),
    Count(i32),
}

/// One `$group` key and its accumulators (output field, expression, state).
type Group = (Bson, Vec<(String, Bson, Acc)>);

fn group(docs: Docs, spec: &Document) -> Result<Docs, CommandError> {
    let id_expr = spec
        .get("_id")
        .cloned()
        .ok_or_else(|| errors::location(15955, "a group specification must include an _id"))?;
    let mut groups: Vec<Group> = Vec::new();
    for rd in docs {
        let d = to_document(&rd);
        let key = eval(&id_expr, &d);
        let pos = match groups.iter().position(|(k, _)| {
            values_equal(k, &key) && super::value::type_rank(k) == super::value::type_rank(&key)
        }) {
            Some(p) => p,
            None => {
                let mut accs = Vec::new();
                for (f, a) in spec {
                    if f == "_id" {
                        continue;
                    }
                    let Bson::Document(a) = a else {
                        return Err(errors::location(
                            40234,
                            format!("The field '{f}' must be an accumulator object"),
                        ));
                    };
                    let Some((op, expr)) = a.iter().next() else {
                        return Err(errors::location(
                            40238,
                            format!("The field '{f}' must specify one accumulator"),
                        ));
                    };
                    let acc = match op.as_str() {
                        "$sum" => Acc::Sum(Bson::Int32(0)),
                        "$avg" => Acc::Avg(0.0, 0),
                        "$min" => Acc::Min(None),
                        "$max" => Acc::Max(None),
                        "$first" => Acc::First(None),
                        "$last" => Acc::Last(Bson::Null),
                        "$push" => Acc::Push(Vec::new()),
                        "$addToSet" => Acc::AddToSet(Vec::new()),
                        "$count" => Acc::Count(0),
                        other => {
                            return Err(errors::location(
                                15952,
                                format!("unknown group operator '{other}'"),
                            ))
                        }
                    };
                    accs.push((f.clone(), expr.clone(), acc));
                }
                groups.push((key, accs));
                groups.len() - 1
            }
        };
        for (_, expr, acc) in &mut groups[pos].1 {
            let v = eval(expr, &d);
            match acc {
                Acc::Sum(s) => {
                    if as_f64(&v).is_some() {
                        *s = add(s, &v);
                    }
                }
                Acc::Avg(t, n) => {
                    if let Some(x) = as_f64(&v) {
                        *t += x;
                        *n += 1;
                    }
                }
                Acc::Min(m) => {
                    if !matches!(v, Bson::Null) && m.as_ref().is_none_or(|c| compare(&v, c).is_lt())
                    {
                        *m = Some(v);
                    }
                }
                Acc::Max(m) => {
                    if !matches!(v, Bson::Null) && m.as_ref().is_none_or(|c| compare(&v, c).is_gt())
                    {
                        *m = Some(v);
                    }
                }
                Acc::First(f) => {
                    if f.is_none() {
                        *f = Some(v);
                    }
                }
                Acc::Last(l) => *l = v,
                Acc::Push(p) => p.push(v),
                Acc::AddToSet(s) => {
                    if !s.iter().any(|e| values_equal(e, &v)) {
                        s.push(v);
                    }
                }
                Acc::Count(c) => *c += 1,
            }
        }
    }
    Ok(groups
        .into_iter()
        .map(|(k, accs)| {
            let mut d = doc! {"_id": k};
            for (f, _, acc) in accs {
                let v = match acc {
                    Acc::Sum(s) => s,
                    Acc::Avg(t, n) => {
                        if n == 0 {
                            Bson::Null
                        } else {
                            Bson::Double(t / n as f64)
                        }
                    }
                    Acc::Min(m) | Acc::Max(m) | Acc::First(m) => m.unwrap_or(Bson::Null),
                    Acc::Last(l) => l,
                    Acc::Push(p) | Acc::AddToSet(p) => Bson::Array(p),
                    Acc::Count(c) => Bson::Int32(c),
                };
                d.insert(f, v);
            }
            Arc::new(raw(&d))
        })
        .collect())
}

fn count_usize(v: &Bson, stage: &str) -> Result<usize, CommandError> {
    match as_f64(v) {
        Some(n) if n >= 0.0 && n.fract() == 0.0 => Ok(n as usize),
        _ => Err(errors::location(
            15957,
            format!("the {stage} must be specified as a non-negative number"),
        )),
    }
}

impl Engine {
    /// Documents of a namespace as an aggregation sees them, plus the view pipeline to run
    /// over them first.
    fn source(
        &self,
        db: &str,
        name: &str,
        depth: usize,
    ) -> Result<(Docs, Vec<Document>), CommandError> {
        if depth > MAX_VIEW_DEPTH {
            return Err(CommandError::new(
                149,
                "ViewDepthLimitExceeded",
                "View depth too deep or view cycle detected; maximum depth is 20",
            ));
        }
        let Some(coll) = self.coll(db, name) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let kind = coll
            .read()
            .map(|c| c.kind.clone())
            .unwrap_or(Kind::Collection);
        match kind {
            Kind::Collection => {
                let docs = coll
                    .read()
                    .map(|c| c.scan_forward(None).map(|(_, d)| d.clone()).collect())
                    .unwrap_or_default();
                Ok((docs, Vec::new()))
            }
            Kind::Timeseries => Ok((self.timeseries_measurements(db, name), Vec::new())),
            Kind::View { view_on, pipeline } => {
                let (docs, mut inner) = self.source(db, &view_on, depth + 1)?;
                inner.extend(pipeline);
                Ok((docs, inner))
            }
        }
    }

    /// Runs `pipeline` over namespace `name` (views resolved) and returns the results.
    pub(super) fn run_aggregate(
        &self,
        db: &str,
        name: &str,
        pipeline: &[Document],
    ) -> Result<Docs, CommandError> {
        let (docs, mut stages) = self.source(db, name, 0)?;
        stages.extend(pipeline.iter().cloned());
        self.run_stages(db, name, docs, &stages)
    }

    fn run_stages(
        &self,
        db: &str,
        name: &str,
        mut docs: Docs,
        stages: &[Document],
    ) -> Result<Docs, CommandError> {
        for (i, st) in stages.iter().enumerate() {
            if st.len() != 1 {
                return Err(errors::location(
                    40323,
                    "A pipeline stage specification object must contain exactly one field.",
                ));
            }
            let Some((sname, arg)) = st.iter().next() else {
                continue;
            };
            docs = match sname.as_str() {
                "$match" => {
                    let Bson::Document(f) = arg else {
                        return Err(errors::location(
                            15959,
                            "the match filter must be an expression in an object",
                        ));
                    };
                    let e = Expr::parse(f)?;
                    docs.into_iter().filter(|d| e.matches(d)).collect()
                }
                "$count" => {
                    let Bson::String(f) = arg else {
                        return Err(errors::location(
                            40156,
                            "the count field must be a non-empty string",
                        ));
                    };
                    if docs.is_empty() {
                        Vec::new()
                    } else {
                        let n = docs.len();
                        let n = i32::try_from(n)
                            .map(Bson::Int32)
                            .unwrap_or(Bson::Int64(n as i64));
                        vec![Arc::new(raw(&doc! {f.as_str(): n}))]
                    }
                }
                "$group" => {
                    let Bson::Document(g) = arg else {
                        return Err(errors::location(
                            15947,
                            "a group's fields must be specified in an object",
                        ));
                    };
                    group(docs, g)?
                }
                "$sort" => {
                    let Bson::Document(s) = arg else {
                        return Err(errors::location(
                            15973,
                            "the $sort key specification must be an object",
                        ));
                    };
                    sort_docs(&mut docs, &sort_spec(s)?);
                    docs
                }
                "$limit" => {
                    let n = count_usize(arg, "limit")?;
                    docs.truncate(n);
                    docs
                }
                "$skip" => {
                    let n = count_usize(arg, "skip")?;
                    docs.into_iter().skip(n).collect()
                }
                "$project" => {
                    let Bson::Document(p) = arg else {
                        return Err(errors::location(
                            15969,
                            "$project specification must be an object",
                        ));
                    };
                    match Projection::parse(p)? {
                        None => {
                            return Err(errors::location(
                                51272,
                                "projection specification must have at least one field",
                            ))
                        }
                        Some(p) => docs
                            .into_iter()
                            .map(|d| Arc::new(raw(&p.apply(&to_document(&d)))))
                            .collect(),
                    }
                }
                "$addFields" | "$set" => {
                    let Bson::Document(f) = arg else {
                        return Err(errors::location(
                            40272,
                            "$addFields specification stage must be an object",
                        ));
                    };
                    docs.into_iter()
                        .map(|rd| {
                            let mut d = to_document(&rd);
                            let orig = d.clone();
                            for (k, e) in f {
                                let _ = super::update::set_path(&mut d, k, eval(e, &orig));
                            }
                            Arc::new(raw(&d))
                        })
                        .collect()
                }
                "$unset" => {
                    let names: Vec<String> = match arg {
                        Bson::String(s) => vec![s.clone()],
                        Bson::Array(a) => a
                            .iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect(),
                        _ => {
                            return Err(errors::location(
                                31002,
                                "$unset specification must be a string or an array",
                            ))
                        }
                    };
                    docs.into_iter()
                        .map(|rd| {
                            let mut d = to_document(&rd);
                            for n in &names {
                                super::update::unset_path(&mut d, n);
                            }
                            Arc::new(raw(&d))
                        })
                        .collect()
                }
                "$unwind" => {
                    let path = match arg {
                        Bson::String(s) => s.clone(),
                        Bson::Document(d) => d.get_str("path").unwrap_or_default().to_string(),
                        _ => String::new(),
                    };
                    let Some(field) = path.strip_prefix('$') else {
                        return Err(errors::location(
                            28818,
                            "path option to $unwind stage should be prefixed with a '$'",
                        ));
                    };
                    let mut out = Vec::new();
                    for rd in docs {
                        let d = to_document(&rd);
                        match get_path(&d, field) {
                            Some(Bson::Array(a)) => {
                                for e in a {
                                    let mut x = d.clone();
                                    let _ = super::update::set_path(&mut x, field, e.clone());
                                    out.push(Arc::new(raw(&x)));
                                }
                            }
                            Some(Bson::Null) | None => {}
                            Some(_) => out.push(rd.clone()),
                        }
                    }
                    out
                }
                "$replaceRoot" | "$replaceWith" => {
                    let e = match arg {
                        Bson::Document(d) if sname == "$replaceRoot" => {
                            d.get("newRoot").cloned().unwrap_or(Bson::Null)
                        }
                        other => other.clone(),
                    };
                    let mut out = Vec::new();
                    for rd in docs {
                        match eval(&e, &to_document(&rd)) {
                            Bson::Document(n) => out.push(Arc::new(raw(&n))),
                            _ => {
                                return Err(errors::location(
                                    40228,
                                    "'newRoot' expression must evaluate to an object",
                                ))
                            }
                        }
                    }
                    out
                }
                "$collStats" => {
                    if i != 0 {
                        return Err(errors::location(
                            40602,
                            "$collStats is only valid as the first stage in a pipeline",
                        ));
                    }
                    let Bson::Document(opts) = arg else {
                        return Err(errors::location(
                            5447000,
                            "$collStats must take a nested object",
                        ));
                    };
                    let ns = format!("{db}.{name}");
                    let mut out = doc! {"ns": ns.as_str(), "host": "127.0.0.1:27017", "localTime": DateTime::now()};
                    let coll = self.coll(db, name);
                    if opts.contains_key("count") {
                        let n = coll
                            .as_ref()
                            .and_then(|c| c.read().ok().map(|g| g.len() as i64))
                            .unwrap_or(0);
                        out.insert("count", n);
                    }
                    if opts.contains_key("storageStats") {
                        match &coll {
                            Some(c) => {
                                let mut s = coll_stats_doc(&ns, c);
                                s.remove("ns");
                                out.insert("storageStats", s);
                            }
                            None => return Err(errors::namespace_not_found_ns(&ns)),
                        }
                    }
                    vec![Arc::new(raw(&out))]
                }
                other => {
                    return Err(errors::location(
                        40324,
                        format!("Unrecognized pipeline stage name: '{other}'"),
                    ));
                }
            };
        }
        Ok(docs)
    }

    pub(super) fn cmd_aggregate(
        &self,
        db: &str,
        cmd: &Document,
    ) -> Result<RawDocumentBuf, CommandError> {
        let name =
            match cmd.get("aggregate") {
                Some(Bson::String(_)) => target_name(cmd, "aggregate")?,
                _ => return Err(errors::invalid_namespace(
                    "aggregate on a database is not supported by this server; name a collection",
                )),
            };
        let pipeline: Vec<Document> = match cmd.get("pipeline") {
            Some(Bson::Array(a)) => a
                .iter()
                .map(|s| match s {
                    Bson::Document(d) => Ok(d.clone()),
                    _ => Err(errors::type_mismatch(
                        "Each element of the 'pipeline' array must be an object",
                    )),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(errors::location(
                    40414,
                    "BSON field 'aggregate.pipeline' is missing but a required field",
                ))
            }
        };
        let cursor = match cmd.get("cursor") {
            Some(Bson::Document(c)) => c.clone(),
            _ if cmd.contains_key("explain") => Document::new(),
            _ => return Err(errors::failed_to_parse(
                "The 'cursor' option is required, except for aggregate with the explain argument",
            )),
        };
        let batch_size = cursor.get("batchSize").and_then(as_f64).map(|b| b as usize);
        let starts_with_coll_stats = pipeline
            .first()
            .is_some_and(|s| s.contains_key("$collStats"));
        let docs = if starts_with_coll_stats {
            self.run_stages(db, &name, Vec::new(), &pipeline)?
        } else {
            self.run_aggregate(db, &name, &pipeline)?
        };
        self.docs_cursor_reply(&format!("{db}.{name}"), docs, batch_size, None)
    }
}
