//! Namespace selection with mongorestore's pattern syntax (`--nsInclude`/`--nsExclude`):
//! `db.coll`, `db.*`, `*.coll`, with `*` matching any run of characters and `\` escaping.

use std::fmt;
use std::str::FromStr;

/// What a namespace of a backup holds: one type for discovery, the manifest (its `type`)
/// and restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceKind {
    Collection,
    View,
    /// A time-series collection (its documents are in `system.buckets.<name>`).
    Timeseries,
    /// The oplog captured during a point-in-time backup (`db ""`, collection `oplog`).
    Oplog,
}

impl NamespaceKind {
    /// The name mongodump's prelude and the manifest use.
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceKind::Collection => "collection",
            NamespaceKind::View => "view",
            NamespaceKind::Timeseries => "timeseries",
            NamespaceKind::Oplog => "oplog",
        }
    }
}

impl fmt::Display for NamespaceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for NamespaceKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One `db.collection` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePattern {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    Star,
}

impl FromStr for NamespacePattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("empty namespace pattern: use DB.COLLECTION, DB.* or *.COLLECTION".into());
        }
        let mut tokens = Vec::new();
        let mut chars = s.chars();
        let mut saw_dot = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e) => tokens.push(Token::Literal(e)),
                    None => {
                        return Err(format!(
                            "namespace pattern '{s}' ends with a lone backslash: escape it as \\\\"
                        ))
                    }
                },
                '*' => tokens.push(Token::Star),
                '.' => {
                    saw_dot = true;
                    tokens.push(Token::Literal('.'));
                }
                c => tokens.push(Token::Literal(c)),
            }
        }
        if !saw_dot {
            return Err(format!(
                "namespace pattern '{s}' has no '.': use DB.COLLECTION, DB.* or *.COLLECTION"
            ));
        }
        // A side with nothing on it matches nothing: 'shop.' is a typo for 'shop.*'.
        let dot = tokens
            .iter()
            .position(|t| *t == Token::Literal('.'))
            .unwrap_or(0);
        if dot == 0 || dot + 1 == tokens.len() {
            let side = if dot == 0 { "database" } else { "collection" };
            return Err(format!(
                "namespace pattern '{s}' has an empty {side} name, so it matches nothing: use DB.COLLECTION, DB.* or *.COLLECTION"
            ));
        }
        Ok(Self {
            text: s.to_string(),
            tokens,
        })
    }
}

impl fmt::Display for NamespacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl NamespacePattern {
    /// Matches `db.collection` (database names hold no dots, so the first dot splits them).
    pub fn matches(&self, namespace: &str) -> bool {
        let text: Vec<char> = namespace.chars().collect();
        glob(&self.tokens, &text)
    }

    /// The part before the first dot, when it has no wildcard: lets a whole database be
    /// skipped without listing it.
    pub fn literal_db(&self) -> Option<String> {
        let mut db = String::new();
        for t in &self.tokens {
            match t {
                Token::Literal('.') => return Some(db),
                Token::Literal(c) => db.push(*c),
                Token::Star => return None,
            }
        }
        None
    }
}

fn glob(pattern: &[Token], text: &[char]) -> bool {
    // Iterative wildcard matching with single backtrack point: linear in practice, never
    // exponential on hostile patterns.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Token::Literal(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|t| *t == Token::Star)
}

/// Include and exclude lists: a namespace is selected when it matches an include (or there
/// are none) and matches no exclude.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceFilter {
    pub include: Vec<NamespacePattern>,
    pub exclude: Vec<NamespacePattern>,
}

impl NamespaceFilter {
    pub fn selects(&self, db: &str, collection: &str) -> bool {
        let ns = format!("{db}.{collection}");
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(&ns)))
            && !self.exclude.iter().any(|p| p.matches(&ns))
    }

    /// Whether any collection of `db` could be selected (false only when every include names
    /// another database literally).
    pub fn may_select_db(&self, db: &str) -> bool {
        self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| p.literal_db().is_none_or(|d| d == db))
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

/// Parses a comma-separated list (the Lambda's environment form); empty items are ignored.
pub fn parse_list(s: &str) -> Result<Vec<NamespacePattern>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NamespacePattern {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_match_like_mongorestore() {
        assert!(p("shop.*").matches("shop.orders"));
        assert!(p("shop.*").matches("shop.orders.archive.2024"));
        assert!(!p("shop.*").matches("shopping.orders"));
        assert!(p("*.users").matches("app.users"));
        assert!(!p("*.users").matches("app.users2"));
        assert!(p("a.b").matches("a.b"));
        assert!(!p("a.b").matches("a.bc"));
        assert!(p("a.\\*").matches("a.*"));
        assert!(!p("a.\\*").matches("a.x"));
        assert!(p("*.*").matches("x.y"));
        assert!(p("a.*x*y").matches("a.1x2y"));
    }

    #[test]
    fn bad_patterns_are_rejected_with_the_fix() {
        assert!(NamespacePattern::from_str("")
            .unwrap_err()
            .contains("DB.COLLECTION"));
        assert!(NamespacePattern::from_str("nodot")
            .unwrap_err()
            .contains("no '.'"));
        for empty in [".", "shop.", ".orders"] {
            assert!(
                NamespacePattern::from_str(empty)
                    .unwrap_err()
                    .contains("matches nothing"),
                "{empty}"
            );
        }
        assert!(NamespacePattern::from_str("a.b\\")
            .unwrap_err()
            .contains("backslash"));
    }

    #[test]
    fn filter_combines_include_and_exclude() {
        let f = NamespaceFilter {
            include: vec![p("shop.*")],
            exclude: vec![p("shop.tmp*")],
        };
        assert!(f.selects("shop", "orders"));
        assert!(!f.selects("shop", "tmp1"));
        assert!(!f.selects("crm", "orders"));
        assert!(f.may_select_db("shop"));
        assert!(!f.may_select_db("crm"));
        assert!(NamespaceFilter::default().selects("any", "thing"));
    }

    #[test]
    fn list_parsing_skips_empty_items() {
        assert_eq!(parse_list(" a.b, ,c.*").unwrap().len(), 2);
        assert!(parse_list("").unwrap().is_empty());
        assert!(parse_list("a.b,bad").is_err());
    }
}
