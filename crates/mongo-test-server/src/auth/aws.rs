//! MONGODB-AWS, server side. mongod sends the client's signed STS `GetCallerIdentity`
//! request on to STS and logs in the caller ARN that STS answers with. There is no STS
//! here, so this module plays STS's part for the identities the server was started with:
//! it checks the SigV4 signature and the request time exactly as STS would, over the
//! headers mongod would have sent. Everything the client sees (payloads, nonce rules,
//! refusals) is mongod's.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bson::{rawdoc, spec::BinarySubtype, RawBsonRef, RawDocument};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest as _, Sha256};

/// mongod's default `awsSTSUrl` host.
pub const STS_HOST: &str = "sts.amazonaws.com";
const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// STS refuses requests signed more than 15 minutes away from its clock.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// AWS credentials the stand-in STS knows, and the caller ARN it answers for them
/// (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` for a role's session keys).
#[derive(Clone, PartialEq, Eq)]
pub struct AwsIdentity {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub arn: String,
}

impl std::fmt::Debug for AwsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsIdentity")
            .field("access_key_id", &self.access_key_id)
            .field("arn", &self.arn)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AwsError {
    #[error("malformed MONGODB-AWS payload: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("signed headers lack {0}")]
    UnsignedHeader(&'static str),
    #[error("STS would not see the signed header {0}")]
    UnknownHeader(String),
    #[error("unknown access key")]
    UnknownKey,
    #[error("request time is outside STS's 15-minute window")]
    Skew,
    #[error("signature does not match")]
    Signature,
}

/// The conversation after the server's first message.
#[derive(Debug)]
pub struct Conversation {
    server_nonce: Vec<u8>,
}

impl Conversation {
    /// Takes the client's first message (`{r: 32-byte nonce, p: gs2 flag}`) and returns
    /// the conversation and the server's first message (`{s: nonce, h: STS host}`).
    pub fn start(payload: &[u8]) -> Result<(Self, Vec<u8>), AwsError> {
        let doc = RawDocument::from_bytes(payload).map_err(|_| AwsError::Malformed("not BSON"))?;
        let nonce = match doc.get("r") {
            Ok(Some(RawBsonRef::Binary(b))) if b.bytes.len() == 32 => b.bytes.to_vec(),
            _ => return Err(AwsError::Malformed("r must be a 32-byte nonce")),
        };
        match doc.get("p") {
            Ok(Some(RawBsonRef::Int32(p))) if p == i32::from(b'n') || p == i32::from(b'y') => {}
            Ok(Some(RawBsonRef::Int32(p))) if p == i32::from(b'p') => {
                return Err(AwsError::ChannelBinding)
            }
            _ => return Err(AwsError::Malformed("p must be a gs2 flag")),
        }
        let mut server_nonce = nonce;
        let mut tail = [0u8; 32];
        rand::rng().fill_bytes(&mut tail);
        server_nonce.extend_from_slice(&tail);
        let reply = rawdoc! {
            "s": bson::Binary { subtype: BinarySubtype::Generic, bytes: server_nonce.clone() },
            "h": STS_HOST,
        };
        Ok((Self { server_nonce }, reply.into_bytes()))
    }

    /// Takes the client's second message (`{a: Authorization, d: X-Amz-Date, t?: token}`)
    /// and returns the name of the `$external` user it proves: the caller ARN, with an
    /// assumed role's session named by its role, as mongod maps it.
    pub fn finish(
        &self,
        payload: &[u8],
        identities: &[AwsIdentity],
        now: SystemTime,
    ) -> Result<String, AwsError> {
        let doc = RawDocument::from_bytes(payload).map_err(|_| AwsError::Malformed("not BSON"))?;
        let authorization = doc
            .get_str("a")
            .map_err(|_| AwsError::Malformed("a must be a string"))?;
        let date = doc
            .get_str("d")
            .map_err(|_| AwsError::Malformed("d must be a string"))?;
        let token = doc.get_str("t").ok();
        let auth = Authorization::parse(authorization)?;
        for required in ["x-mongodb-server-nonce", "x-mongodb-gs2-cb-flag"] {
            if !auth.signed_headers.iter().any(|h| h == required) {
                return Err(AwsError::UnsignedHeader(required));
            }
        }
        let identity = identities
            .iter()
            .find(|i| i.access_key_id == auth.key_id)
            .ok_or(AwsError::UnknownKey)?;
        let signed_at = parse_amz_date(date).ok_or(AwsError::Malformed("d is not a date"))?;
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if (now - signed_at).abs() > MAX_SKEW_SECS || !date.starts_with(&auth.scope_date) {
            return Err(AwsError::Skew);
        }
        let nonce = B64.encode(&self.server_nonce);
        let mut canonical_headers = String::new();
        for name in &auth.signed_headers {
            let value = match name.as_str() {
                "host" => STS_HOST.to_owned(),
                "content-type" => "application/x-www-form-urlencoded".to_owned(),
                "content-length" => BODY.len().to_string(),
                "x-amz-date" => date.to_owned(),
                "x-amz-security-token" => token
                    .ok_or(AwsError::UnknownHeader(name.clone()))?
                    .to_owned(),
                "x-mongodb-gs2-cb-flag" => "n".to_owned(),
                "x-mongodb-server-nonce" => nonce.clone(),
                other => return Err(AwsError::UnknownHeader(other.to_owned())),
            };
            canonical_headers.push_str(&format!("{name}:{value}\n"));
        }
        let canonical_request = format!(
            "POST\n/\n\n{canonical_headers}\n{}\n{}",
            auth.signed_headers.join(";"),
            hex(&Sha256::digest(BODY.as_bytes())),
        );
        let scope = format!(
            "{}/{}/{}/aws4_request",
            auth.scope_date, auth.region, auth.service
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", identity.secret_access_key).as_bytes(),
            auth.scope_date.as_bytes(),
        );
        for part in [auth.region.as_str(), auth.service.as_str(), "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
        if auth.service != "sts"
            || !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes())
        {
            return Err(AwsError::Signature);
        }
        Ok(user_name(&identity.arn))
    }
}

/// The `$external` user an STS caller ARN logs in as: mongod names an assumed role's
/// sessions by the role (`arn:aws:iam::ACCOUNT:role/ROLE`), so that one database user
/// covers every session of a role, as Lambda's and ECS's credentials are.
pub fn user_name(caller_arn: &str) -> String {
    if let Some(rest) = caller_arn.strip_prefix("arn:aws:sts::") {
        if let Some((account, path)) = rest.split_once(":assumed-role/") {
            if let Some((role, _session)) = path.rsplit_once('/') {
                return format!("arn:aws:iam::{account}:role/{role}");
            }
        }
    }
    caller_arn.to_owned()
}

struct Authorization {
    key_id: String,
    scope_date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

impl Authorization {
    /// `AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request,
    /// SignedHeaders=a;b;c, Signature=HEX`
    fn parse(header: &str) -> Result<Self, AwsError> {
        let bad = AwsError::Malformed("a is not a SigV4 Authorization header");
        let rest = header.strip_prefix("AWS4-HMAC-SHA256 ").ok_or(bad)?;
        let mut credential = None;
        let mut signed = None;
        let mut signature = None;
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let bad = || AwsError::Malformed("a is not a SigV4 Authorization header");
        let parts: Vec<&str> = credential.ok_or_else(bad)?.split('/').collect();
        let [key_id, scope_date, region, service, "aws4_request"] = parts[..] else {
            return Err(bad());
        };
        let signed_headers: Vec<String> = signed
            .ok_or_else(bad)?
            .split(';')
            .map(str::to_owned)
            .collect();
        Ok(Self {
            key_id: key_id.to_owned(),
            scope_date: scope_date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers,
            signature: signature.ok_or_else(bad)?.to_owned(),
        })
    }
}

/// Seconds since the epoch of an `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
fn parse_amz_date(d: &str) -> Option<i64> {
    let b = d.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| d.get(r)?.parse::<i64>().ok();
    let (y, m, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; an empty result would only fail the comparison.
    Hmac::<Sha256>::new_from_slice(key)
        .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn amz_dates_convert_to_epoch_seconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("20150830T123600"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
    }

    #[test]
    fn assumed_role_sessions_log_in_as_their_role() {
        assert_eq!(
            user_name("arn:aws:sts::123456789012:assumed-role/nightdump-fn/nightdump-fn-session"),
            "arn:aws:iam::123456789012:role/nightdump-fn"
        );
        assert_eq!(
            user_name("arn:aws:iam::123456789012:user/ann"),
            "arn:aws:iam::123456789012:user/ann"
        );
    }

    /// AWS's own SigV4 example (the IAM ListUsers request of the "Signature Version 4
    /// signing process" guide) run through the same key schedule, so that the schedule
    /// is checked against a figure this module did not produce.
    #[test]
    fn key_schedule_matches_the_aws_guide_example() {
        let mut key = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20150830");
        for part in ["us-east-1", "iam", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        assert_eq!(
            hex(&key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let string_to_sign = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59";
        assert_eq!(
            hex(&hmac(&key, string_to_sign.as_bytes())),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn the_first_message_needs_a_32_byte_nonce_and_no_channel_binding() {
        let first = |r: Vec<u8>, p: u8| {
            rawdoc! {"r": bson::Binary{subtype: BinarySubtype::Generic, bytes: r}, "p": i32::from(p)}
                .into_bytes()
        };
        let (conv, reply) = Conversation::start(&first(vec![7; 32], b'n')).unwrap();
        let reply = RawDocument::from_bytes(&reply).unwrap();
        let s = reply.get_binary("s").unwrap().bytes;
        assert_eq!(s.len(), 64);
        assert_eq!(&s[..32], &[7; 32]);
        assert_eq!(conv.server_nonce, s);
        assert_eq!(reply.get_str("h").unwrap(), STS_HOST);
        assert!(matches!(
            Conversation::start(&first(vec![7; 31], b'n')),
            Err(AwsError::Malformed(_))
        ));
        assert_eq!(
            Conversation::start(&first(vec![7; 32], b'p')).unwrap_err(),
            AwsError::ChannelBinding
        );
    }
}
