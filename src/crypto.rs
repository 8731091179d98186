//! Encryption at rest for credentials (binding and key credentials, user-provided credentials,
//! broker passwords, registry passwords): AES-256-GCM with a random 96-bit nonce per value.
//!
//! A sealed value is self-describing: `enc:v1:<key label>:<base64(nonce ‖ ciphertext+tag)>`.
//! The key label in every value lets keys rotate: new values use the current key, old ones stay
//! readable as long as their key is in the key ring, and `tether rotate-key` re-seals everything
//! under a new current key. Values without the prefix (written before encryption was on) are
//! read as plaintext and sealed on their next write or rotation.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "enc:v1:";

/// The keys as kept in the secrets file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRingConfig {
    /// Label of the key new values are sealed with.
    pub current: String,
    /// Label → base64 of 32 random bytes.
    pub keys: HashMap<String, String>,
}

impl KeyRingConfig {
    pub fn generate() -> KeyRingConfig {
        let label = new_label();
        let mut keys = HashMap::new();
        keys.insert(label.clone(), random_key_b64());
        KeyRingConfig {
            current: label,
            keys,
        }
    }
}

/// A label that says when the key was made, and is unique (two keys made in one second still
/// differ).
pub fn new_label() -> String {
    format!(
        "key-{}-{:08x}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        rand::rngs::OsRng.next_u32()
    )
}

pub fn random_key_b64() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Reads the current keys again (the application passes one that rereads the secrets file).
pub type KeySource = Box<dyn Fn() -> anyhow::Result<KeyRingConfig> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("value sealed with unknown key {0}")]
    UnknownKey(String),
    #[error("sealed value is malformed or was tampered with")]
    Corrupt,
}

struct Loaded {
    current: String,
    ciphers: HashMap<String, Aes256Gcm>,
}

/// The ring of encryption keys. When it meets a value sealed with a key it does not know (another
/// process rotated keys), it rereads the secrets file, at most once every few seconds.
pub struct KeyRing {
    loaded: RwLock<Loaded>,
    /// Where newer keys come from (the secrets file, read again), if anywhere.
    reload_from: Option<KeySource>,
    last_reload: RwLock<Option<Instant>>,
}

fn build(config: &KeyRingConfig) -> anyhow::Result<Loaded> {
    let mut ciphers = HashMap::new();
    for (label, b64) in &config.keys {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| anyhow::anyhow!("encryption key {label} is not base64"))?;
        if bytes.len() != 32 {
            anyhow::bail!(
                "encryption key {label} must be 32 bytes, got {}",
                bytes.len()
            );
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| anyhow::anyhow!("encryption key {label} is invalid"))?;
        ciphers.insert(label.clone(), cipher);
    }
    if !ciphers.contains_key(&config.current) {
        anyhow::bail!(
            "the current encryption key {} is not in the key ring",
            config.current
        );
    }
    Ok(Loaded {
        current: config.current.clone(),
        ciphers,
    })
}

impl KeyRing {
    pub fn new(config: &KeyRingConfig, reload_from: Option<KeySource>) -> anyhow::Result<KeyRing> {
        Ok(KeyRing {
            loaded: RwLock::new(build(config)?),
            reload_from,
            last_reload: RwLock::new(None),
        })
    }

    /// The labels of every key it holds.
    pub fn labels(&self) -> Vec<String> {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded.ciphers.keys().cloned().collect()
    }

    pub fn current_label(&self) -> String {
        self.loaded
            .read()
            .map(|l| l.current.clone())
            .unwrap_or_default()
    }

    /// Seals a value under the current key.
    pub fn seal(&self, plaintext: &str) -> String {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let cipher = &loaded.ciphers[&loaded.current];
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ct = cipher
            .encrypt(&Nonce::from(nonce), plaintext.as_bytes())
            .unwrap_or_default();
        let mut blob = Vec::with_capacity(12 + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        format!(
            "{PREFIX}{}:{}",
            loaded.current,
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    /// Whether a stored value is sealed (and with which key).
    pub fn label_of(stored: &str) -> Option<&str> {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .map(|(label, _)| label)
    }

    /// Opens a stored value; plaintext (unsealed) values pass through.
    pub fn open(&self, stored: &str) -> Result<String, CryptoError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let (label, b64) = rest.split_once(':').ok_or(CryptoError::Corrupt)?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| CryptoError::Corrupt)?;
        if blob.len() < 12 + 16 {
            return Err(CryptoError::Corrupt);
        }
        let nonce: [u8; 12] = blob[..12].try_into().map_err(|_| CryptoError::Corrupt)?;
        let attempt = |this: &KeyRing| -> Option<Result<String, CryptoError>> {
            let loaded = this.loaded.read().unwrap_or_else(|e| e.into_inner());
            let cipher = loaded.ciphers.get(label)?;
            Some(
                cipher
                    .decrypt(&Nonce::from(nonce), &blob[12..])
                    .map_err(|_| CryptoError::Corrupt)
                    .and_then(|pt| String::from_utf8(pt).map_err(|_| CryptoError::Corrupt)),
            )
        };
        if let Some(r) = attempt(self) {
            return r;
        }
        if self.reload() {
            if let Some(r) = attempt(self) {
                return r;
            }
        }
        Err(CryptoError::UnknownKey(label.to_string()))
    }

    /// Rereads the secrets file (rate-limited). True if keys were reloaded.
    pub fn reload(&self) -> bool {
        let Some(source) = &self.reload_from else {
            return false;
        };
        {
            let last = self.last_reload.read().map(|l| *l).unwrap_or(None);
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
                return false;
            }
        }
        if let Ok(mut l) = self.last_reload.write() {
            *l = Some(Instant::now());
        }
        match source().and_then(|keys| build(&keys)) {
            Ok(new) => {
                if let Ok(mut l) = self.loaded.write() {
                    *l = new;
                }
                tracing::info!("reloaded encryption keys");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not reload encryption keys");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_rotate_and_tamper() {
        let cfg = KeyRingConfig::generate();
        let ring = KeyRing::new(&cfg, None).unwrap();
        let sealed = ring.seal(r#"{"password":"s3cret"}"#);
        assert!(sealed.starts_with("enc:v1:key-"));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(ring.open(&sealed).unwrap(), r#"{"password":"s3cret"}"#);
        assert_ne!(ring.seal("x"), ring.seal("x"), "a fresh nonce per value");
        // Plaintext passes through.
        assert_eq!(ring.open("{}").unwrap(), "{}");
        // Tampering is detected.
        let mut bad = sealed.clone();
        bad.pop();
        bad.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(ring.open(&bad), Err(CryptoError::Corrupt)));
        // A second key: old values stay readable, new ones use it.
        let mut cfg2 = cfg.clone();
        cfg2.keys.insert("key-2".into(), random_key_b64());
        cfg2.current = "key-2".into();
        let ring2 = KeyRing::new(&cfg2, None).unwrap();
        assert_eq!(ring2.open(&sealed).unwrap(), r#"{"password":"s3cret"}"#);
        assert_eq!(KeyRing::label_of(&ring2.seal("y")), Some("key-2"));
        // Unknown key.
        let other = KeyRing::new(&KeyRingConfig::generate(), None).unwrap();
        assert!(matches!(
            other.open(&sealed),
            Err(CryptoError::UnknownKey(_))
        ));
    }
}
