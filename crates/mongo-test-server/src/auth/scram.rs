//! SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802 / RFC 7677), server side, as mongod runs them:
//! SHA-1 hashes the MongoDB password digest `md5("user:mongo:password")` rather than the
//! password, SHA-256 hashes the SASLprep'd password, and the iteration counts and salt
//! sizes are mongod's defaults.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use md5::Digest as _;
use rand::RngCore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Sha1,
    Sha256,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-1" => Some(Self::Sha1),
            "SCRAM-SHA-256" => Some(Self::Sha256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SCRAM-SHA-1",
            Self::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn iterations(self) -> u32 {
        match self {
            Self::Sha1 => 10_000,
            Self::Sha256 => 15_000,
        }
    }

    fn salt_len(self) -> usize {
        match self {
            Self::Sha1 => 16,
            Self::Sha256 => 28,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so construction cannot fail; an empty result
        // would only make the proof comparison fail.
        match self {
            Self::Sha1 => Hmac::<sha1::Sha1>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
            Self::Sha256 => Hmac::<sha2::Sha256>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2::<Hmac<sha1::Sha1>>(password, salt, iterations, &mut out)
                    .map(|()| out.to_vec())
                    .unwrap_or_default()
            }
            Self::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2::<Hmac<sha2::Sha256>>(password, salt, iterations, &mut out)
                    .map(|()| out.to_vec())
                    .unwrap_or_default()
            }
        }
    }
}

/// What mongod keeps per user and mechanism (`credentials.SCRAM-SHA-*` in admin.system.users).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub mechanism: Mechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("password cannot be prepared for SCRAM-SHA-256 (SASLprep refused it); choose another")]
pub struct BadPassword;

impl Credentials {
    pub fn derive(mechanism: Mechanism, user: &str, password: &str) -> Result<Self, BadPassword> {
        let secret = match mechanism {
            Mechanism::Sha1 => {
                let digest = md5::Md5::digest(format!("{user}:mongo:{password}").as_bytes());
                hex(&digest).into_bytes()
            }
            Mechanism::Sha256 => stringprep::saslprep(password)
                .map_err(|_| BadPassword)?
                .into_owned()
                .into_bytes(),
        };
        let mut salt = vec![0u8; mechanism.salt_len()];
        rand::rng().fill_bytes(&mut salt);
        let iterations = mechanism.iterations();
        let salted = mechanism.salted_password(&secret, &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        Ok(Self {
            mechanism,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        })
    }
}

impl Credentials {
    /// Reads one mechanism's entry of a stored user's `credentials` (mongod's shape:
    /// `iterationCount`, and base64 `salt`, `storedKey`, `serverKey`). `None` when the entry
    /// is missing or malformed: such a user cannot log in with that mechanism.
    pub fn from_stored(mechanism: Mechanism, credentials: &bson::RawDocument) -> Option<Self> {
        let entry = credentials.get_document(mechanism.name()).ok()?;
        let iterations = match entry.get("iterationCount").ok()?? {
            bson::RawBsonRef::Int32(i) => u32::try_from(i).ok()?,
            bson::RawBsonRef::Int64(i) => u32::try_from(i).ok()?,
            bson::RawBsonRef::Double(d) if d >= 1.0 && d <= f64::from(u32::MAX) => d as u32,
            _ => return None,
        };
        let field = |name| B64.decode(entry.get_str(name).ok()?).ok();
        Some(Self {
            mechanism,
            salt: field("salt")?,
            iterations,
            stored_key: field("storedKey")?,
            server_key: field("serverKey")?,
        })
    }

    /// This entry as mongod stores it under `credentials.<mechanism>`.
    pub fn to_stored(&self) -> bson::Document {
        bson::doc! {
            "iterationCount": i32::try_from(self.iterations).unwrap_or(i32::MAX),
            "salt": B64.encode(&self.salt),
            "storedKey": B64.encode(&self.stored_key),
            "serverKey": B64.encode(&self.server_key),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a SCRAM exchange failed. Clients only ever see "Authentication failed."; the detail
/// goes to the log, as mongod does.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("unknown user")]
    UnknownUser,
    #[error("nonce mismatch")]
    NonceMismatch,
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("invalid proof")]
    InvalidProof,
}

/// The client-first message, parsed.
#[derive(Debug)]
pub struct ClientFirst {
    pub user: String,
    bare: String,
    nonce: String,
}

pub fn parse_client_first(payload: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(payload).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    // GS2 header: "n,," (no channel binding, no authzid) or "y,,"; "p=" asks for binding.
    let (cbind, rest) = text
        .split_once(',')
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    match cbind {
        "n" | "y" => {}
        _ if cbind.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad GS2 channel-binding flag")),
    }
    let (_authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    let mut user = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        if let Some(v) = attr.strip_prefix("n=") {
            user = Some(decode_saslname(v)?);
        } else if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v.to_owned());
        } else if attr.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension not supported"));
        }
    }
    let user = user.ok_or(ScramError::Malformed("no user name"))?;
    let nonce = nonce
        .filter(|n| !n.is_empty())
        .ok_or(ScramError::Malformed("no client nonce"))?;
    Ok(ClientFirst {
        user,
        bare: bare.to_owned(),
        nonce,
    })
}

fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("=2C") {
            out.push(',');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("=3D") {
            out.push('=');
            rest = t;
        } else {
            return Err(ScramError::Malformed("bad escape in user name"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A conversation after the server-first message, waiting for the client proof.
#[derive(Debug)]
pub struct Conversation {
    credentials: Credentials,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl Conversation {
    /// Answers the client-first message: returns the conversation and the server-first
    /// message to send.
    pub fn start(first: &ClientFirst, credentials: Credentials) -> (Self, String) {
        let mut server_nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut server_nonce);
        let nonce = format!("{}{}", first.nonce, B64.encode(server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credentials.salt),
            credentials.iterations
        );
        let conversation = Self {
            credentials,
            client_first_bare: first.bare.clone(),
            server_first: server_first.clone(),
            nonce,
        };
        (conversation, server_first)
    }

    pub fn mechanism(&self) -> Mechanism {
        self.credentials.mechanism
    }

    /// Checks the client-final message; on success returns the server-final message.
    pub fn finish(&self, payload: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(payload).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                channel = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        // "biws" and "eSws" are base64 of the GS2 headers "n,," and "y,,".
        match channel {
            Some("biws") | Some("eSws") => {}
            Some(_) => return Err(ScramError::ChannelBinding),
            None => return Err(ScramError::Malformed("no channel binding attribute")),
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let mech = self.credentials.mechanism;
        let signature = mech.hmac(&self.credentials.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::InvalidProof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&mech.hash(&client_key), &self.credentials.stored_key) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = mech.hmac(&self.credentials.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
pub(crate) mod client {
    //! A minimal SCRAM client, to drive the server side in unit tests.
    use super::*;

    pub fn final_message(
        mech: Mechanism,
        user: &str,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, String) {
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for attr in server_first.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = v;
            } else if let Some(v) = attr.strip_prefix("s=") {
                salt = B64.decode(v).unwrap();
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = v.parse().unwrap();
            }
        }
        let secret = match mech {
            Mechanism::Sha1 => hex(&md5::Md5::digest(format!("{user}:mongo:{password}"))),
            Mechanism::Sha256 => stringprep::saslprep(password).unwrap().into_owned(),
        };
        let salted = mech.salted_password(secret.as_bytes(), &salt, iterations);
        let client_key = mech.hmac(&salted, b"Client Key");
        let stored_key = mech.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mech.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = mech.hmac(&salted, b"Server Key");
        let expected = format!(
            "v={}",
            B64.encode(mech.hmac(&server_key, auth_message.as_bytes()))
        );
        (format!("{without_proof},p={}", B64.encode(proof)), expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(mech: Mechanism, stored_pw: &str, given_pw: &str) -> Result<(), ScramError> {
        let creds = Credentials::derive(mech, "ann", stored_pw).unwrap();
        let first = parse_client_first(b"n,,n=ann,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(first.user, "ann");
        let (conv, server_first) = Conversation::start(&first, creds);
        assert!(server_first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
        let (client_final, expected) = client::final_message(
            mech,
            "ann",
            given_pw,
            "n=ann,r=fyko+d2lbbFgONRv9qkxdawL",
            &server_first,
        );
        let server_final = conv.finish(client_final.as_bytes())?;
        assert_eq!(server_final, expected);
        Ok(())
    }

    #[test]
    fn both_mechanisms_accept_the_right_password_only() {
        for mech in [Mechanism::Sha1, Mechanism::Sha256] {
            exchange(mech, "pencil", "pencil").unwrap();
            assert_eq!(
                exchange(mech, "pencil", "pen"),
                Err(ScramError::InvalidProof)
            );
        }
    }

    #[test]
    fn sha256_uses_saslprep() {
        // U+00AD (soft hyphen) maps to nothing under SASLprep.
        exchange(Mechanism::Sha256, "pen\u{ad}cil", "pencil").unwrap();
    }

    #[test]
    fn rfc7677_test_vector_for_the_key_schedule() {
        // RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
        // 4096 iterations, server signature 6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=.
        let mech = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = mech.salted_password(b"pencil", &salt, 4096);
        let client_key = mech.hmac(&salted, b"Client Key");
        let creds = Credentials {
            mechanism: mech,
            salt,
            iterations: 4096,
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(&salted, b"Server Key"),
        };
        let conv = Conversation {
            credentials: creds,
            client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(),
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        };
        let final_msg = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            conv.finish(final_msg.as_bytes()).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn malformed_client_messages_are_refused() {
        assert!(parse_client_first(b"").is_err());
        assert!(parse_client_first(b"n,,r=abc").is_err());
        assert!(parse_client_first(b"n,,n=ann").is_err());
        assert_eq!(
            parse_client_first(b"p=tls-unique,,n=a,r=b").unwrap_err(),
            ScramError::ChannelBinding
        );
        assert_eq!(
            parse_client_first(b"n,,n=a=2Cb=3Dc,r=x").unwrap().user,
            "a,b=c"
        );
        assert!(parse_client_first(b"n,,n=a=zz,r=x").is_err());
        let creds = Credentials::derive(Mechanism::Sha1, "a", "b").unwrap();
        let first = parse_client_first(b"n,,n=a,r=x").unwrap();
        let (conv, _) = Conversation::start(&first, creds);
        assert_eq!(
            conv.finish(b"c=biws,r=other,p=AAAA").unwrap_err(),
            ScramError::NonceMismatch
        );
        assert!(conv.finish(b"garbage").is_err());
    }
}
