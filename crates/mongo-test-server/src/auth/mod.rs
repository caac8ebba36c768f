//! Users and their authentication (SCRAM, and MONGODB-AWS for `$external` users), with
//! mongod's commands (`saslStart`, `saslContinue`, speculative authentication in `hello`)
//! and its refusals.

pub mod authz;
pub mod aws;
mod required;
pub mod scram;
mod shell;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bson::{rawdoc, spec::BinarySubtype, RawBsonRef, RawDocument, RawDocumentBuf};

use crate::error::CommandError;
pub use authz::RoleRef;
pub use aws::AwsIdentity;
pub use required::{authorize, Decision};
use scram::{Conversation, Credentials, Mechanism, ScramError};

/// One account given at start (not stored in `admin.system.users`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
    /// The authentication database (`authSource`).
    pub db: String,
    /// Built-in roles it holds; `root` on admin unless said otherwise.
    pub roles: Vec<RoleRef>,
}

impl User {
    /// A `root` user authenticating against `admin`, as most deployments have them.
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            password: password.into(),
            db: "admin".into(),
            roles: vec![RoleRef::new("root", "admin")],
        }
    }

    /// A `root` user of `$external` named by an AWS IAM ARN, who logs in with
    /// MONGODB-AWS and has no password.
    pub fn external(arn: impl Into<String>) -> Self {
        Self {
            name: arn.into(),
            password: String::new(),
            db: EXTERNAL.into(),
            roles: vec![RoleRef::new("root", "admin")],
        }
    }

    /// The same account with exactly these roles instead.
    pub fn with_roles(mut self, roles: impl IntoIterator<Item = RoleRef>) -> Self {
        self.roles = roles.into_iter().collect();
        self
    }
}

/// The database of users whose credentials live outside MongoDB.
pub const EXTERNAL: &str = "$external";

impl Default for User {
    fn default() -> Self {
        Self::new("", "")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("user {user}@{db}: {source}")]
pub struct UserError {
    user: String,
    db: String,
    source: scram::BadPassword,
}

/// Where users created through the wire live: `admin.system.users`, as on mongod.
pub trait UserCatalog: Send + Sync + std::fmt::Debug {
    /// The stored document of `user@db`, if there is one.
    fn user_document(&self, db: &str, user: &str) -> Option<RawDocumentBuf>;
}

#[derive(Debug, Clone)]
struct StoredUser {
    sha1: Option<Credentials>,
    sha256: Option<Credentials>,
    roles: Vec<RoleRef>,
}

impl StoredUser {
    /// A user document as mongod keeps it; credentials it does not have (or that are
    /// malformed) simply cannot be used to log in.
    fn from_document(doc: &RawDocument) -> Self {
        let creds = doc.get_document("credentials").ok();
        let stored = |mech| creds.and_then(|c| Credentials::from_stored(mech, c));
        Self {
            sha1: stored(Mechanism::Sha1),
            sha256: stored(Mechanism::Sha256),
            roles: authz::roles_of(doc),
        }
    }
}

/// The accounts of one server instance: those configured at start, then the users stored
/// in `admin.system.users`. Authentication (and authorization) is enforced iff it was
/// configured with at least one user, as `--auth` would be.
#[derive(Debug)]
pub struct UserStore {
    enforced: bool,
    aws: Vec<AwsIdentity>,
    users: RwLock<HashMap<(String, String), StoredUser>>,
    catalog: Option<Arc<dyn UserCatalog>>,
}

/// The `credentials` of a user `createUser` makes, in mongod's stored shape: one entry per
/// mechanism asked for (both by default), each with its own salt.
pub fn stored_credentials(
    user: &str,
    cmd: &bson::Document,
) -> Result<bson::Document, CommandError> {
    let password = cmd.get_str("pwd").map_err(|_| {
        CommandError::bad_value(
            "Must provide a 'pwd' field for all user documents, except those with '$external' as the user's source db",
        )
    })?;
    let mechanisms: Vec<Mechanism> = match cmd.get_array("mechanisms") {
        Ok(names) => names
            .iter()
            .map(|n| {
                n.as_str()
                    .and_then(Mechanism::parse)
                    .ok_or_else(|| CommandError::bad_value(format!("Unknown auth mechanism '{n}'")))
            })
            .collect::<Result<_, _>>()?,
        Err(_) => vec![Mechanism::Sha1, Mechanism::Sha256],
    };
    let mut out = bson::Document::new();
    for mech in mechanisms {
        let creds = Credentials::derive(mech, user, password)
            .map_err(|e| CommandError::bad_value(e.to_string()))?;
        out.insert(mech.name(), creds.to_stored());
    }
    Ok(out)
}

/// mongod answers every failed authentication the same way, whatever the cause.
pub fn authentication_failed() -> CommandError {
    CommandError::new(18, "AuthenticationFailed", "Authentication failed.")
}

impl UserStore {
    pub fn new(users: &[User]) -> Result<Self, UserError> {
        let store = Self {
            enforced: !users.is_empty(),
            aws: Vec::new(),
            users: RwLock::new(HashMap::new()),
            catalog: None,
        };
        for user in users {
            store.add(user)?;
        }
        Ok(store)
    }

    /// Also accepts the users stored in `catalog`.
    pub fn with_catalog(mut self, catalog: Arc<dyn UserCatalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Also accepts MONGODB-AWS logins signed with these credentials (see [`aws`]).
    pub fn with_aws(mut self, identities: Vec<AwsIdentity>) -> Self {
        self.aws = identities;
        self
    }

    pub fn enforced(&self) -> bool {
        self.enforced
    }

    pub fn add(&self, user: &User) -> Result<(), UserError> {
        let derive = |mech| {
            Credentials::derive(mech, &user.name, &user.password).map_err(|source| UserError {
                user: user.name.clone(),
                db: user.db.clone(),
                source,
            })
        };
        // `$external` users have no password: MONGODB-AWS (or x.509) proves who they are.
        let external = user.db == EXTERNAL;
        let stored = StoredUser {
            sha1: if external {
                None
            } else {
                Some(derive(Mechanism::Sha1)?)
            },
            sha256: if external {
                None
            } else {
                Some(derive(Mechanism::Sha256)?)
            },
            roles: user.roles.clone(),
        };
        self.write()
            .insert((user.db.clone(), user.name.clone()), stored);
        Ok(())
    }

    /// Removes every configured user called `name` (in any database); returns whether one
    /// existed.
    pub fn revoke(&self, name: &str) -> bool {
        let mut users = self.write();
        let before = users.len();
        users.retain(|(_, n), _| n != name);
        users.len() != before
    }

    /// Removes one configured user; returns whether it existed.
    pub fn remove(&self, db: &str, name: &str) -> bool {
        self.write()
            .remove(&(db.to_owned(), name.to_owned()))
            .is_some()
    }

    pub fn exists(&self, db: &str, name: &str) -> bool {
        self.lookup(db, name).is_some()
    }

    /// The mechanisms `name@db` has credentials for (hello's `saslSupportedMechs`).
    pub fn mechanisms(&self, db: &str, name: &str) -> Vec<&'static str> {
        let Some(u) = self.lookup(db, name) else {
            return Vec::new();
        };
        [
            (u.sha1.is_some(), Mechanism::Sha1),
            (u.sha256.is_some(), Mechanism::Sha256),
        ]
        .into_iter()
        .filter(|(has, _)| *has)
        .map(|(_, m)| m.name())
        .collect()
    }

    /// The roles `name@db` holds, if that user exists.
    pub fn roles(&self, db: &str, name: &str) -> Option<Vec<RoleRef>> {
        self.lookup(db, name).map(|u| u.roles)
    }

    fn lookup(&self, db: &str, name: &str) -> Option<StoredUser> {
        if let Some(u) = self.read().get(&(db.to_owned(), name.to_owned())) {
            return Some(u.clone());
        }
        let doc = self.catalog.as_ref()?.user_document(db, name)?;
        Some(StoredUser::from_document(&doc))
    }

    fn credentials(&self, db: &str, name: &str, mech: Mechanism) -> Option<Credentials> {
        self.lookup(db, name).and_then(|u| match mech {
            Mechanism::Sha1 => u.sha1,
            Mechanism::Sha256 => u.sha256,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(String, String), StoredUser>> {
        self.users.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<(String, String), StoredUser>> {
        self.users.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The authenticated identity of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub db: String,
}

#[derive(Debug)]
enum Exchange {
    Scram(Conversation),
    Aws(aws::Conversation),
}

#[derive(Debug)]
struct Pending {
    conversation_id: i32,
    db: String,
    user: String,
    exchange: Exchange,
    skip_empty_exchange: bool,
    /// The proof was accepted; only the empty final exchange is outstanding.
    verified: bool,
}

/// Authentication state of one connection.
#[derive(Debug, Default)]
pub struct Session {
    identity: Option<Identity>,
    pending: Option<Pending>,
    next_conversation_id: i32,
}

impl Session {
    /// The identity, if still valid: a revoked user is no longer authenticated.
    pub fn identity(&mut self, store: &UserStore) -> Option<&Identity> {
        if let Some(id) = &self.identity {
            if !store.exists(&id.db, &id.user) {
                tracing::info!(user = %id.user, db = %id.db, "user was removed; connection deauthenticated");
                self.identity = None;
            }
        }
        self.identity.as_ref()
    }

    /// `saslStart` on `db`. Returns the reply without `ok` (so it can also be embedded
    /// as `speculativeAuthenticate`).
    pub fn sasl_start(
        &mut self,
        store: &UserStore,
        db: &str,
        cmd: &RawDocument,
    ) -> Result<RawDocumentBuf, CommandError> {
        let mechanism = cmd.get_str("mechanism").map_err(|_| {
            CommandError::bad_value("saslStart requires a string 'mechanism' field")
        })?;
        let unavailable = || {
            CommandError::new(
                334,
                "MechanismUnavailable",
                format!(
                    "Received authentication for mechanism {mechanism} which is unknown or not enabled"
                ),
            )
        };
        let payload = payload(cmd)?;
        let (exchange, user, reply) = if mechanism == "MONGODB-AWS" {
            if store.aws.is_empty() {
                return Err(unavailable());
            }
            if db != EXTERNAL {
                tracing::info!(%db, "MONGODB-AWS outside $external");
                return Err(authentication_failed());
            }
            let (conversation, reply) = aws::Conversation::start(&payload).map_err(|e| {
                tracing::info!(error = %e, "saslStart refused");
                authentication_failed()
            })?;
            (Exchange::Aws(conversation), String::new(), reply)
        } else {
            let mech = Mechanism::parse(mechanism).ok_or_else(unavailable)?;
            let first = scram::parse_client_first(&payload).map_err(|e| {
                tracing::info!(error = %e, "saslStart refused");
                authentication_failed()
            })?;
            let Some(credentials) = store.credentials(db, &first.user, mech) else {
                tracing::info!(user = %first.user, %db, "authentication for an unknown user");
                return Err(authentication_failed());
            };
            let (conversation, server_first) = Conversation::start(&first, credentials);
            (
                Exchange::Scram(conversation),
                first.user,
                server_first.into_bytes(),
            )
        };
        let skip_empty_exchange = cmd
            .get_document("options")
            .ok()
            .and_then(|o| o.get_bool("skipEmptyExchange").ok())
            .unwrap_or(false);
        self.next_conversation_id += 1;
        let conversation_id = self.next_conversation_id;
        self.pending = Some(Pending {
            conversation_id,
            db: db.to_owned(),
            user,
            exchange,
            skip_empty_exchange,
            verified: false,
        });
        Ok(rawdoc! {
            "conversationId": conversation_id,
            "done": false,
            "payload": binary(reply),
        })
    }

    /// `saslContinue`. Returns the reply without `ok`.
    pub fn sasl_continue(
        &mut self,
        store: &UserStore,
        cmd: &RawDocument,
    ) -> Result<RawDocumentBuf, CommandError> {
        let conversation_id = match cmd.get("conversationId") {
            Ok(Some(RawBsonRef::Int32(i))) => i,
            Ok(Some(RawBsonRef::Int64(i))) => i32::try_from(i).unwrap_or(-1),
            Ok(Some(RawBsonRef::Double(d))) => d as i32,
            _ => {
                return Err(CommandError::bad_value(
                    "saslContinue requires a numeric 'conversationId' field",
                ))
            }
        };
        let payload = payload(cmd)?;
        let Some(pending) = self.pending.take() else {
            return Err(CommandError::new(
                17,
                "ProtocolError",
                "No SASL session state found",
            ));
        };
        if pending.conversation_id != conversation_id {
            return Err(CommandError::new(
                17,
                "ProtocolError",
                "Mismatched SASL conversation id",
            ));
        }
        if pending.verified {
            self.identity = Some(Identity {
                user: pending.user,
                db: pending.db,
            });
            return Ok(rawdoc! {
                "conversationId": conversation_id,
                "done": true,
                "payload": binary(Vec::new()),
            });
        }
        let conversation = match &pending.exchange {
            Exchange::Scram(c) => c,
            Exchange::Aws(c) => {
                let user = c
                    .finish(&payload, &store.aws, std::time::SystemTime::now())
                    .map_err(|e| e.to_string())
                    .and_then(|user| {
                        if store.exists(EXTERNAL, &user) {
                            Ok(user)
                        } else {
                            Err(format!("no $external user {user}"))
                        }
                    })
                    .map_err(|e| {
                        tracing::info!(mechanism = "MONGODB-AWS", error = %e, "authentication failed");
                        authentication_failed()
                    })?;
                tracing::debug!(%user, "authenticated");
                self.identity = Some(Identity {
                    user,
                    db: pending.db,
                });
                return Ok(rawdoc! {
                    "conversationId": conversation_id,
                    "done": true,
                    "payload": binary(Vec::new()),
                });
            }
        };
        let server_final = conversation.finish(&payload).map_err(|e: ScramError| {
            tracing::info!(
                user = %pending.user,
                db = %pending.db,
                mechanism = conversation.mechanism().name(),
                error = %e,
                "authentication failed"
            );
            authentication_failed()
        })?;
        let done = pending.skip_empty_exchange;
        if done {
            tracing::debug!(user = %pending.user, db = %pending.db, "authenticated");
            self.identity = Some(Identity {
                user: pending.user,
                db: pending.db,
            });
        } else {
            self.pending = Some(Pending {
                verified: true,
                ..pending
            });
        }
        Ok(rawdoc! {
            "conversationId": conversation_id,
            "done": done,
            "payload": binary(server_final.into_bytes()),
        })
    }
}

fn payload(cmd: &RawDocument) -> Result<Vec<u8>, CommandError> {
    match cmd.get("payload") {
        Ok(Some(RawBsonRef::Binary(b))) => Ok(b.bytes.to_vec()),
        Ok(Some(RawBsonRef::String(s))) => Ok(s.as_bytes().to_vec()),
        _ => Err(CommandError::bad_value("Missing required field 'payload'")),
    }
}

fn binary(bytes: Vec<u8>) -> bson::Binary {
    bson::Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(session: &mut Session, store: &UserStore, skip: bool) -> String {
        let cmd = rawdoc! {
            "saslStart": 1,
            "mechanism": "SCRAM-SHA-256",
            "payload": binary(b"n,,n=ann,r=abcdef".to_vec()),
            "options": {"skipEmptyExchange": skip},
        };
        let reply = session.sasl_start(store, "admin", &cmd).unwrap();
        assert_eq!(reply.get_i32("conversationId").unwrap(), 1);
        assert!(!reply.get_bool("done").unwrap());
        String::from_utf8(reply.get_binary("payload").unwrap().bytes.to_vec()).unwrap()
    }

    #[test]
    fn full_exchange_without_skip_needs_an_empty_round() {
        let store = UserStore::new(&[User::new("ann", "pw")]).unwrap();
        let mut session = Session::default();
        let server_first = start(&mut session, &store, false);
        let (client_final, _) = scram::client::final_message(
            Mechanism::Sha256,
            "ann",
            "pw",
            "n=ann,r=abcdef",
            &server_first,
        );
        let reply = session
            .sasl_continue(&store, &rawdoc! {"saslContinue": 1, "conversationId": 1, "payload": binary(client_final.into_bytes())})
            .unwrap();
        assert!(!reply.get_bool("done").unwrap());
        assert!(session.identity(&store).is_none());
        let reply = session
            .sasl_continue(
                &store,
                &rawdoc! {"saslContinue": 1, "conversationId": 1, "payload": binary(vec![])},
            )
            .unwrap();
        assert!(reply.get_bool("done").unwrap());
        assert_eq!(
            session.identity(&store),
            Some(&Identity {
                user: "ann".into(),
                db: "admin".into()
            })
        );
        assert!(store.revoke("ann"));
        assert!(session.identity(&store).is_none());
    }

    #[test]
    fn wrong_db_unknown_user_and_bad_mechanism_fail() {
        let store = UserStore::new(&[User::new("ann", "pw")]).unwrap();
        let mut session = Session::default();
        let cmd = rawdoc! {
            "saslStart": 1,
            "mechanism": "SCRAM-SHA-1",
            "payload": binary(b"n,,n=ann,r=abcdef".to_vec()),
        };
        assert_eq!(
            session.sasl_start(&store, "test", &cmd).unwrap_err().code,
            18
        );
        let cmd = rawdoc! {"saslStart": 1, "mechanism": "PLAIN", "payload": binary(vec![])};
        assert_eq!(
            session.sasl_start(&store, "admin", &cmd).unwrap_err().code,
            334
        );
        let cmd = rawdoc! {"saslContinue": 1, "conversationId": 1, "payload": binary(vec![])};
        assert_eq!(session.sasl_continue(&store, &cmd).unwrap_err().code, 17);
    }
}
