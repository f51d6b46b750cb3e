//! Attempt tokens: short bearer tokens that name one attempt of one task
//! instance and expire, signed with HMAC-SHA256 under a key only the `pave`
//! process holds.
//!
//! A token is `base64url(payload) "." base64url(mac)`, where the payload is
//! the JSON of the attempt's scope plus `exp` (Unix seconds) and the MAC is
//! computed over the encoded payload text. The server keeps no table of
//! tokens: whoever holds the key can check one, and a token stops working
//! when it expires or when the attempt it names is no longer running (that
//! second check is the API's, against the store).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use pave_core::{DagId, MapIndex, RunId, TaskId, TryNumber};
use pave_store::{RunKey, TiKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

type HmacSha256 = Hmac<Sha256>;

/// Length of a signing key in bytes.
pub const KEY_LEN: usize = 32;

/// The attempt a token is good for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptScope {
    pub dag_id: DagId,
    pub run_id: RunId,
    /// The store's key of the run (what the API looks the attempt up by).
    pub run: RunKey,
    pub task_id: TaskId,
    pub map_index: MapIndex,
    pub try_number: TryNumber,
}

impl AttemptScope {
    /// The task instance the attempt belongs to.
    pub fn ti_key(&self) -> TiKey {
        TiKey::new(self.run, self.task_id.clone(), self.map_index)
    }
}

impl fmt::Display for AttemptScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{} run `{}` map index {} try {}",
            self.dag_id, self.task_id, self.run_id, self.map_index, self.try_number
        )
    }
}

/// Why a token was refused. Each is answered with 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed attempt token: {0}")]
    Malformed(String),
    #[error("attempt token has a bad signature (forged, altered, or signed with another key)")]
    BadSignature,
    #[error(
        "attempt token expired at {expired_at}; the attempt outlived its token, start a new try"
    )]
    Expired { expired_at: DateTime<Utc> },
}

/// A signing key that cannot be read, created or trusted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the token key file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "cannot create the token key file {}: {source}; check that its folder exists and is writable",
        path.display()
    )]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "the token key file {} holds {len} bytes, expected {KEY_LEN}; delete it to make a new key \
         (running tasks' tokens become invalid)",
        path.display()
    )]
    BadLength { path: PathBuf, len: usize },
    #[error("the operating system gave no random bytes for a token key: {0}")]
    Random(String),
}

/// What a token's payload holds: the scope and its expiry.
#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(flatten)]
    scope: AttemptScope,
    /// Expiry, Unix seconds.
    exp: i64,
}

/// Issues and checks attempt tokens with one HMAC-SHA256 key.
#[derive(Clone)]
pub struct TokenSigner {
    key: [u8; KEY_LEN],
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSigner { key: <redacted> }")
    }
}

impl TokenSigner {
    pub fn new(key: [u8; KEY_LEN]) -> Self {
        TokenSigner { key }
    }

    /// A signer with a fresh random key (tokens die with the process).
    pub fn generate() -> Result<Self, KeyError> {
        Ok(TokenSigner::new(random_key()?))
    }

    /// The key stored at `path`, or a new random one written there with mode
    /// 0600 if the file does not exist. Tokens then survive a restart of
    /// pave, so adopted attempts keep talking to the API.
    pub fn from_file_or_create(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        match read_key(path) {
            Ok(key) => return Ok(TokenSigner::new(key)),
            Err(KeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let key = random_key()?;
        match create_key_file(path, &key) {
            Ok(()) => Ok(TokenSigner::new(key)),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(path).map(Self::new),
            Err(source) => Err(KeyError::Create {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// A token for `scope`, valid until `expires_at`.
    pub fn issue(&self, scope: &AttemptScope, expires_at: DateTime<Utc>) -> String {
        let claims = Claims {
            scope: scope.clone(),
            exp: expires_at.timestamp(),
        };
        // Serializing plain ids and integers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let sig = URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// The scope of a token this signer issued, if it has not expired by `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AttemptScope, TokenError> {
        let (payload, sig) = token
            .split_once('.')
            .ok_or_else(|| TokenError::Malformed("expected `payload.signature`".into()))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Malformed("the signature is not base64url".into()))?;
        // Constant-time comparison.
        self.mac(payload.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed("the payload is not base64url".into()))?;
        let claims: Claims = serde_json::from_slice(&json)
            .map_err(|e| TokenError::Malformed(format!("the payload is not a scope: {e}")))?;
        if now.timestamp() >= claims.exp {
            return Err(TokenError::Expired {
                expired_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
            });
        }
        Ok(claims.scope)
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length, so this never fails.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(data);
        mac
    }
}

fn random_key() -> Result<[u8; KEY_LEN], KeyError> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(key)
}

fn read_key(path: &Path) -> Result<[u8; KEY_LEN], KeyError> {
    let read_err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::with_capacity(KEY_LEN);
    std::fs::File::open(path)
        .and_then(|f| f.take(KEY_LEN as u64 + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| KeyError::BadLength {
        path: path.to_owned(),
        len: bytes.len(),
    })
}

fn create_key_file(path: &Path, key: &[u8; KEY_LEN]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let written = file.write_all(key).and_then(|()| file.sync_all());
    if written.is_err() {
        // Leave no short key behind for the next start to trip over.
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn scope() -> AttemptScope {
        AttemptScope {
            dag_id: "etl".into(),
            run_id: "manual__2026-01-01T00:00:00+00:00".into(),
            run: RunKey(7),
            task_id: "train".into(),
            map_index: MapIndex(3),
            try_number: TryNumber(2),
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn round_trip() {
        let s = TokenSigner::new([7; KEY_LEN]);
        let token = s.issue(&scope(), t0() + Duration::hours(1));
        assert_eq!(s.verify(&token, t0()), Ok(scope()));
    }

    #[test]
    fn tampered_payload_is_refused() {
        let s = TokenSigner::new([7; KEY_LEN]);
        let token = s.issue(&scope(), t0() + Duration::hours(1));
        let (payload, sig) = token.split_once('.').unwrap();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["try_number"] = 3.into();
        let forged = format!(
            "{}.{sig}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert_eq!(s.verify(&forged, t0()), Err(TokenError::BadSignature));
    }

    #[test]
    fn another_key_is_refused() {
        let token = TokenSigner::new([7; KEY_LEN]).issue(&scope(), t0() + Duration::hours(1));
        let other = TokenSigner::new([8; KEY_LEN]);
        assert_eq!(other.verify(&token, t0()), Err(TokenError::BadSignature));
    }

    #[test]
    fn expired_token_is_refused() {
        let s = TokenSigner::new([7; KEY_LEN]);
        let exp = t0() + Duration::minutes(5);
        let token = s.issue(&scope(), exp);
        assert!(s.verify(&token, exp - Duration::seconds(1)).is_ok());
        assert_eq!(
            s.verify(&token, exp),
            Err(TokenError::Expired { expired_at: exp })
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let s = TokenSigner::new([7; KEY_LEN]);
        for bad in ["", "nodot", "a.!!!", "..", "x.y.z"] {
            match s.verify(bad, t0()) {
                Err(TokenError::Malformed(_) | TokenError::BadSignature) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        // Correctly signed but not a scope.
        let payload = URL_SAFE_NO_PAD.encode(b"[1,2]");
        let sig = URL_SAFE_NO_PAD.encode(s.mac(payload.as_bytes()).finalize().into_bytes());
        assert!(matches!(
            s.verify(&format!("{payload}.{sig}"), t0()),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let s = TokenSigner::new([7; KEY_LEN]);
        assert!(!format!("{s:?}").contains('7'));
    }

    #[test]
    fn key_file_is_created_private_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let a = TokenSigner::from_file_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = TokenSigner::from_file_or_create(&path).unwrap();
        let token = a.issue(&scope(), t0() + Duration::hours(1));
        assert_eq!(b.verify(&token, t0()), Ok(scope()));
    }

    #[test]
    fn bad_key_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.key");
        std::fs::write(&short, b"abc").unwrap();
        let msg = TokenSigner::from_file_or_create(&short)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("3 bytes") && msg.contains("short.key"),
            "{msg}"
        );

        let missing_dir = dir.path().join("nope").join("token.key");
        let msg = TokenSigner::from_file_or_create(&missing_dir)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("cannot create"), "{msg}");

        // A directory where the key should be cannot be read as one.
        let msg = TokenSigner::from_file_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("cannot read"), "{msg}");
    }
}
