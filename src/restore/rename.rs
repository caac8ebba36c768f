//! `--rename 'from.*=to.*'`: mongorestore's nsFrom/nsTo, where each `*` in the source pattern
//! captures text that the matching `*` of the target pattern puts back.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Star,
}

/// One rename rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    text: String,
    from: Vec<Part>,
    to: Vec<Part>,
}

fn parse_pattern(s: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => literal.push(e),
                None => {
                    return Err(format!(
                        "'{s}' ends with a lone backslash: escape it as \\\\"
                    ))
                }
            },
            '*' => {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                if parts.last() == Some(&Part::Star) {
                    return Err(format!("'{s}' has two '*' in a row: use one"));
                }
                parts.push(Part::Star);
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

fn stars(parts: &[Part]) -> usize {
    parts.iter().filter(|p| **p == Part::Star).count()
}

impl FromStr for Rename {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (from, to) = s.split_once('=').ok_or_else(|| {
            format!("rename '{s}' has no '=': use FROM=TO, e.g. 'shop.*=shop_copy.*'")
        })?;
        if !from.contains('.') || !to.contains('.') {
            return Err(format!(
                "rename '{s}' needs DB.COLLECTION on both sides of '=', e.g. 'shop.*=shop_copy.*'"
            ));
        }
        let (from_parts, to_parts) = (parse_pattern(from)?, parse_pattern(to)?);
        if stars(&from_parts) != stars(&to_parts) {
            return Err(format!(
                "rename '{s}' has {} '*' before '=' and {} after: they must pair up",
                stars(&from_parts),
                stars(&to_parts)
            ));
        }
        Ok(Rename {
            text: s.to_string(),
            from: from_parts,
            to: to_parts,
        })
    }
}

impl fmt::Display for Rename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Rename {
    /// The new `db.collection` for `namespace`, or `None` when the rule does not match it.
    pub fn apply(&self, namespace: &str) -> Option<String> {
        let mut captures = Vec::new();
        if !capture(&self.from, namespace, &mut captures) {
            return None;
        }
        let mut out = String::new();
        let mut groups = captures.iter();
        for part in &self.to {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Star => out.push_str(groups.next().map(String::as_str).unwrap_or("")),
            }
        }
        Some(out)
    }
}

/// Matches the whole of `text`, each `*` taking as little as it can (so `a.*.b` splits at the
/// first place that lets the rest match).
fn capture(parts: &[Part], text: &str, out: &mut Vec<String>) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((Part::Literal(l), rest)) => text
            .strip_prefix(l.as_str())
            .is_some_and(|tail| capture(rest, tail, out)),
        Some((Part::Star, rest)) => {
            let boundaries = text
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()));
            for end in boundaries {
                out.push(text[..end].to_string());
                if capture(rest, &text[end..], out) {
                    return true;
                }
                out.pop();
            }
            false
        }
    }
}

/// The first rule that matches wins, as in mongorestore.
pub fn rename(rules: &[Rename], namespace: &str) -> Option<String> {
    rules.iter().find_map(|r| r.apply(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_carry_their_text_over() {
        let r: Rename = "shop.*=archive.shop_*".parse().unwrap();
        assert_eq!(
            r.apply("shop.orders").as_deref(),
            Some("archive.shop_orders")
        );
        assert_eq!(r.apply("shop.a.b").as_deref(), Some("archive.shop_a.b"));
        assert_eq!(r.apply("other.orders"), None);
        let two: Rename = "*.orders_*=*_old.orders_*".parse().unwrap();
        assert_eq!(
            two.apply("shop.orders_2024").as_deref(),
            Some("shop_old.orders_2024")
        );
        let exact: Rename = "shop.orders=shop.orders_copy".parse().unwrap();
        assert_eq!(
            exact.apply("shop.orders").as_deref(),
            Some("shop.orders_copy")
        );
        assert_eq!(exact.apply("shop.orders2"), None);
        let escaped: Rename = r"shop.a\*=shop.b".parse().unwrap();
        assert_eq!(escaped.apply("shop.a*").as_deref(), Some("shop.b"));
        assert_eq!(escaped.apply("shop.ax"), None);
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!("shop.*".parse::<Rename>().is_err());
        assert!("shop.*=other.x".parse::<Rename>().is_err());
        assert!("shop=other".parse::<Rename>().is_err());
        assert!("shop.**=x.*".parse::<Rename>().is_err());
    }
}
