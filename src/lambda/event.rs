//! The invocation payload: the scheduler's event, or a manual run's overrides.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::layout::parse_time;
use crate::namespace::NamespacePattern;

/// The payload as Lambda delivers it. Bytes that are not JSON are kept as the parser's
/// complaint, so they are reported like any other bad event (its error type, a metrics
/// record, a log line) instead of by the runtime before the handler is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(Value),
    NotJson(String),
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer) {
            Ok(value) => Payload::Json(value),
            Err(e) => Payload::NotJson(e.to_string()),
        })
    }
}

/// What an invocation runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Action {
    /// A backup (a scheduled event, `{}`, or a manual object).
    #[default]
    Backup,
    /// An oplog capture: `{"action": "oplog"}`.
    Oplog,
    /// A restore drill: `{"action": "drill"}`, or `{"action": "drill", "backup_id": ID}`.
    Drill,
}

/// What one invocation asks for, on top of the environment's configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invocation {
    pub action: Action,
    /// Names the backup; `None` means "now".
    pub scheduled_at: Option<OffsetDateTime>,
    /// Replace the environment's lists when given.
    pub include: Option<Vec<NamespacePattern>>,
    pub exclude: Option<Vec<NamespacePattern>>,
    pub parallel: Option<usize>,
    /// Make the backup even if the selection matches no collection.
    pub allow_empty: Option<bool>,
    /// True for an EventBridge / Scheduler event.
    pub scheduled: bool,
    /// The backup a drill restores (`None`: the latest).
    pub backup_id: Option<String>,
}

/// Fields EventBridge puts in a scheduled event; only `time` matters, the rest is accepted.
const SCHEDULED_EVENT_FIELDS: &[&str] = &[
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manual {
    #[allow(dead_code)]
    action: Option<String>,
    scheduled_at: Option<String>,
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    parallel: Option<u64>,
    allow_empty: Option<bool>,
}

const MANUAL_FORM: &str = r#"{"scheduled_at": "2026-11-25T03:00:00Z", "include": ["db.*"], "exclude": ["db.tmp"], "parallel": 4}"#;

impl Invocation {
    /// As [`Invocation::parse`], for a payload that may not be JSON at all.
    pub fn from_payload(payload: &Payload) -> Result<Invocation> {
        match payload {
            Payload::Json(value) => Self::parse(value),
            Payload::NotJson(why) => Err(Error::InvalidEvent(format!(
                "the event is not JSON ({}): send {{}} to back up now, or {MANUAL_FORM}",
                truncate(why)
            ))),
        }
    }

    /// `{"action": "drill"}` with at most a `backup_id` (a backup id or `latest`).
    fn parse_drill(map: &serde_json::Map<String, Value>) -> Result<Invocation> {
        if let Some(other) = map.keys().find(|k| *k != "action" && *k != "backup_id") {
            return Err(Error::InvalidEvent(format!(
                "a drill takes no other field than action and backup_id, but the event has '{}': send {{\"action\": \"drill\"}}",
                truncate(other)
            )));
        }
        let backup_id = match map.get("backup_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => {
                crate::settings::backup_selector(id)
                    .map_err(|e| Error::InvalidEvent(e.to_string()))?;
                Some(id.clone())
            }
            Some(other) => {
                return Err(Error::InvalidEvent(format!(
                    "the drill's backup_id must be a backup id or \"latest\", not {}",
                    truncate(&other.to_string())
                )))
            }
        };
        Ok(Invocation {
            action: Action::Drill,
            backup_id,
            ..Invocation::default()
        })
    }

    /// Accepts an EventBridge scheduled event (its `time` names the backup, so a repeated
    /// delivery finds the finished backup), a manual object, `{}` or `null` (back up now).
    pub fn parse(payload: &Value) -> Result<Invocation> {
        let map = match payload {
            Value::Null => return Ok(Invocation::default()),
            Value::Object(map) => map,
            _ => {
                return Err(Error::InvalidEvent(format!(
                    "the event must be a JSON object: send {{}} to back up now, or {MANUAL_FORM}"
                )))
            }
        };
        if map.contains_key("detail-type") || map.contains_key("source") {
            return Self::parse_scheduled(map);
        }
        match map.get("action") {
            None => {}
            Some(Value::String(a)) if a == "backup" => {}
            Some(Value::String(a)) if a == "oplog" => {
                if let Some(other) = map.keys().find(|k| *k != "action") {
                    return Err(Error::InvalidEvent(format!(
                        "an oplog capture takes no other field than action, but the event has '{}': send {{\"action\": \"oplog\"}}",
                        truncate(other)
                    )));
                }
                return Ok(Invocation {
                    action: Action::Oplog,
                    ..Invocation::default()
                });
            }
            Some(Value::String(a)) if a == "drill" => return Self::parse_drill(map),
            Some(other) => {
                return Err(Error::InvalidEvent(format!(
                    "the event's action must be \"backup\", \"oplog\" or \"drill\", not {}",
                    truncate(&other.to_string())
                )))
            }
        }
        if let Some(unknown) = map.keys().find(|k| {
            ![
                "action",
                "scheduled_at",
                "include",
                "exclude",
                "parallel",
                "allow_empty",
            ]
            .contains(&k.as_str())
        }) {
            return Err(Error::InvalidEvent(format!(
                "unknown field '{}' in the event: the fields are action, scheduled_at, include, exclude, parallel and allow_empty, e.g. {MANUAL_FORM}",
                truncate(unknown)
            )));
        }
        // Messages are built here rather than taken from serde, which quotes values.
        let manual: Manual = serde_json::from_value(payload.clone()).map_err(|_| {
            Error::InvalidEvent(format!(
                "the event's fields have the wrong types: scheduled_at is an RFC 3339 string, include and exclude are lists of strings, parallel is a number, allow_empty true or false, e.g. {MANUAL_FORM}"
            ))
        })?;
        Ok(Invocation {
            scheduled_at: manual
                .scheduled_at
                .as_deref()
                .map(|s| {
                    let t = parse_time(s)
                        .map_err(|e| Error::InvalidEvent(format!("event scheduled_at: {e}")))?;
                    crate::layout::check_not_future(
                        "event scheduled_at",
                        t,
                        OffsetDateTime::now_utc(),
                    )
                    .map_err(Error::InvalidEvent)?;
                    Ok::<_, Error>(t)
                })
                .transpose()?,
            include: manual
                .include
                .map(|v| patterns("include", &v))
                .transpose()?,
            exclude: manual
                .exclude
                .map(|v| patterns("exclude", &v))
                .transpose()?,
            parallel: manual
                .parallel
                .map(|n| {
                    crate::settings::parallel("event parallel", &n.to_string())
                        .map_err(|e| Error::InvalidEvent(e.to_string()))
                })
                .transpose()?,
            allow_empty: manual.allow_empty,
            scheduled: false,
            action: Action::Backup,
            backup_id: None,
        })
    }

    fn parse_scheduled(map: &serde_json::Map<String, Value>) -> Result<Invocation> {
        if let Some(unknown) = map
            .keys()
            .find(|k| !SCHEDULED_EVENT_FIELDS.contains(&k.as_str()))
        {
            return Err(Error::InvalidEvent(format!(
                "unknown field '{}' in the scheduled event: a scheduled event carries only EventBridge's fields; send overrides as a manual event instead",
                truncate(unknown)
            )));
        }
        let time = map.get("time").and_then(Value::as_str).ok_or_else(|| {
            Error::InvalidEvent(
                "the scheduled event has no \"time\": the schedule's input must carry \"time\": \"<aws.scheduler.scheduled-time>\"".into(),
            )
        })?;
        let at = parse_time(time).map_err(|e| {
            Error::InvalidEvent(format!(
                "the scheduled event's time: {e}; the schedule's input must use <aws.scheduler.scheduled-time>"
            ))
        })?;
        crate::layout::check_not_future(
            "the scheduled event's time",
            at,
            OffsetDateTime::now_utc(),
        )
        .map_err(Error::InvalidEvent)?;
        Ok(Invocation {
            scheduled_at: Some(at),
            scheduled: true,
            ..Invocation::default()
        })
    }
}

fn patterns(field: &str, values: &[String]) -> Result<Vec<NamespacePattern>> {
    values
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|e: String| Error::InvalidEvent(format!("event {field}: {e}")))
        })
        .collect()
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scheduler_event(time: &str) -> Value {
        json!({
            "version": "0", "id": "e-1", "detail-type": "Scheduled Event",
            "source": "aws.scheduler", "account": "123456789012", "time": time,
            "region": "eu-west-1",
            "resources": ["arn:aws:scheduler:eu-west-1:123456789012:schedule/default/x"],
            "detail": {}
        })
    }

    #[test]
    fn scheduled_event_time_names_the_backup() {
        let a = Invocation::parse(&scheduler_event("2026-11-25T03:00:00Z")).unwrap();
        let b = Invocation::parse(&scheduler_event("2026-11-25T03:00:00Z")).unwrap();
        assert!(a.scheduled);
        assert_eq!(a, b);
        assert_eq!(
            crate::layout::BackupId::from_time(a.scheduled_at.unwrap()).to_string(),
            "20261125T030000Z"
        );
    }

    #[test]
    fn scheduled_event_with_unreplaced_placeholder_fails_clearly() {
        let e = Invocation::parse(&scheduler_event("<aws.scheduler.scheduled-time>")).unwrap_err();
        assert!(
            e.to_string().contains("aws.scheduler.scheduled-time"),
            "{e}"
        );
        let mut no_time = scheduler_event("x");
        no_time.as_object_mut().unwrap().remove("time");
        assert!(Invocation::parse(&no_time)
            .unwrap_err()
            .to_string()
            .contains("no \"time\""));
    }

    #[test]
    fn manual_overrides() {
        let inv = Invocation::parse(&json!({
            "scheduled_at": "2026-01-02T03:04:05+01:00",
            "include": ["app.*"], "exclude": ["app.tmp"], "parallel": 2
        }))
        .unwrap();
        assert!(!inv.scheduled);
        assert_eq!(
            crate::layout::format_time(inv.scheduled_at.unwrap()),
            "2026-01-02T02:04:05Z"
        );
        assert!(inv.include.as_ref().unwrap()[0].matches("app.users"));
        assert!(inv.exclude.as_ref().unwrap()[0].matches("app.tmp"));
        assert_eq!(inv.parallel, Some(2));
    }

    #[test]
    fn a_payload_that_is_not_json_is_a_bad_event_like_any_other() {
        for body in [&b"not json"[..], b"", b"{\"open\":"] {
            // As the runtime reads it: one value from the start of the body.
            let payload =
                Payload::deserialize(&mut serde_json::Deserializer::from_slice(body)).unwrap();
            let e = Invocation::from_payload(&payload).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent");
            let msg = e.to_string();
            assert!(msg.starts_with("the event is not JSON"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
        let payload: Payload = serde_json::from_slice(b"{}").unwrap();
        assert_eq!(
            Invocation::from_payload(&payload).unwrap(),
            Invocation::default()
        );
    }

    #[test]
    fn a_drill_action_names_its_backup_or_takes_the_latest() {
        let inv = Invocation::parse(&json!({"action": "drill"})).unwrap();
        assert_eq!((inv.action, inv.backup_id), (Action::Drill, None));
        let inv = Invocation::parse(&json!({"action": "drill", "backup_id": "20261125T030000Z"}))
            .unwrap();
        assert_eq!(inv.backup_id.as_deref(), Some("20261125T030000Z"));
        assert!(Invocation::parse(&json!({"action": "drill", "backup_id": "yesterday"})).is_err());
    }

    #[test]
    fn an_oplog_action_asks_for_a_capture() {
        let inv = Invocation::parse(&json!({"action": "oplog"})).unwrap();
        assert_eq!(inv.action, Action::Oplog);
        let inv = Invocation::parse(&json!({"action": "backup", "parallel": 2})).unwrap();
        assert_eq!((inv.action, inv.parallel), (Action::Backup, Some(2)));
    }

    #[test]
    fn empty_and_null_mean_now() {
        for v in [json!({}), Value::Null] {
            assert_eq!(Invocation::parse(&v).unwrap(), Invocation::default());
        }
    }

    #[test]
    fn bad_events_are_rejected_with_one_line() {
        let cases = [
            (json!({"paralel": 2}), "unknown field 'paralel'"),
            (json!({"parallel": 0}), "event parallel"),
            (json!({"parallel": 100}), "event parallel"),
            (json!({"parallel": "2"}), "wrong types"),
            (json!({"include": "app.*"}), "wrong types"),
            (json!({"include": ["nodot"]}), "event include"),
            (json!({"scheduled_at": "yesterday"}), "event scheduled_at"),
            (
                json!({"scheduled_at": "2062-12-03T03:00:00Z"}),
                "event scheduled_at 2062-12-03T03:00:00Z is in the future",
            ),
            (json!([1, 2]), "JSON object"),
            (
                json!({"action": "restore"}),
                "must be \"backup\", \"oplog\" or \"drill\"",
            ),
            (
                json!({"action": 1}),
                "must be \"backup\", \"oplog\" or \"drill\"",
            ),
            (
                json!({"action": "drill", "parallel": 2}),
                "a drill takes no other field than action and backup_id",
            ),
            (
                json!({"action": "drill", "backup_id": 7}),
                "backup_id must be",
            ),
            (
                json!({"action": "oplog", "parallel": 2}),
                "takes no other field than action",
            ),
            (json!("backup"), "JSON object"),
        ];
        for (event, expected) in cases {
            let e = Invocation::parse(&event).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent");
            let msg = e.to_string();
            assert!(msg.contains(expected), "{event}: {msg}");
            assert!(!msg.contains('\n'));
        }
        let mut extra = scheduler_event("2026-11-25T03:00:00Z");
        extra
            .as_object_mut()
            .unwrap()
            .insert("include".into(), json!(["a.b"]));
        assert!(Invocation::parse(&extra)
            .unwrap_err()
            .to_string()
            .contains("unknown field 'include'"));
    }
}
