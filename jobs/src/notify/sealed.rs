//! Secrets that travel through e-mail jobs. A one-time code must reach the mailer, but job arguments are kept for
//! days and shown to every admin, so the code rides in them sealed: XChaCha20-Poly1305 (authenticated encryption)
//! under a key derived from the server secret (`JWT_SECRET`), opened only by the mailer at the moment it renders the
//! message. Without the server secret a sealed code can be neither read nor forged.
//!
//! In a template context the sealed code is the field `code_sealed`; the templates read `code`, which exists only
//! in the mailer's memory while it renders ([`reveal`]). The development mailbox stores the message rendered with
//! the code hidden ([`hide`]).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The template field that carries a sealed code.
pub const SEALED_CODE_FIELD: &str = "code_sealed";
/// The template field the templates print the code from.
pub const CODE_FIELD: &str = "code";
/// What the development mailbox shows where a code was.
pub const HIDDEN_CODE: &str = "[hidden]";

/// Separates this key from the other keys derived from the same server secret (token signing, code hashes).
const KEY_LABEL: &[u8] = b"paycore/email-secret-seal/v1";
/// Bound to every sealed value, so a value sealed for another purpose under the same key does not open here.
const ASSOCIATED_DATA: &[u8] = b"paycore email secret v1";
/// Marks the format, so a later scheme can be told apart.
const PREFIX: &str = "v1.";
const NONCE_BYTES: usize = 24;

/// The key that seals e-mail secrets; `Debug` never shows it.
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(**redacted**)")
    }
}

impl SealKey {
    /// Derives the key from the server secret: HMAC-SHA256 of a fixed label, so the key is as strong as the
    /// secret and rotating `JWT_SECRET` rotates it (codes sealed before then no longer open, like their hashes
    /// no longer verify).
    pub fn derive(server_secret: &str) -> Self {
        let mut key = [0u8; 32];
        // HMAC accepts a key of any length, so this cannot fail; an empty key would still give a fixed key.
        if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(server_secret.as_bytes()) {
            mac.update(KEY_LABEL);
            key.copy_from_slice(&mac.finalize().into_bytes());
        }
        Self(key)
    }

    pub fn from_config(config: &crate::platform::config::Config) -> Self {
        Self::derive(config.jwt_secret.expose())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sealed value is not in the expected format")]
    Malformed,
    #[error("the sealed value does not open with this server's key")]
    DoesNotOpen,
}

/// A sealed secret as it is stored: `v1.` and the URL-safe base64 of the nonce and the ciphertext with its tag.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(String);

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

impl SealedSecret {
    /// Seals `secret` with a fresh random nonce (24 bytes, so random nonces never collide in practice).
    pub fn seal(key: &SealKey, secret: &str) -> Self {
        let cipher = XChaCha20Poly1305::new((&key.0).into());
        let mut nonce = [0u8; NONCE_BYTES];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: ASSOCIATED_DATA,
        };
        // Encryption fails only for messages beyond 256 GiB; a code is six bytes.
        let ciphertext = cipher
            .encrypt(&XNonce::from(nonce), payload)
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Self(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Opens a sealed value (as stored) with `key`.
pub fn open(key: &SealKey, sealed: &str) -> Result<String, SealError> {
    let encoded = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| SealError::Malformed)?;
    if bytes.len() <= NONCE_BYTES {
        return Err(SealError::Malformed);
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SealError::Malformed)?;
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let plaintext = cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: ASSOCIATED_DATA,
            },
        )
        .map_err(|_| SealError::DoesNotOpen)?;
    String::from_utf8(plaintext).map_err(|_| SealError::Malformed)
}

/// The context to render for sending: the sealed code opened into `code`. A context without one is unchanged.
pub fn reveal(key: &SealKey, context: &serde_json::Value) -> Result<serde_json::Value, SealError> {
    let Some(sealed) = context.get(SEALED_CODE_FIELD) else {
        return Ok(context.clone());
    };
    let sealed = sealed.as_str().ok_or(SealError::Malformed)?;
    let code = open(key, sealed)?;
    let mut context = context.clone();
    if let Some(fields) = context.as_object_mut() {
        fields.remove(SEALED_CODE_FIELD);
        fields.insert(CODE_FIELD.to_owned(), serde_json::Value::String(code));
    }
    Ok(context)
}

/// The context to render for the development mailbox: a sealed (or, from jobs enqueued before codes were sealed,
/// a clear) code replaced by [`HIDDEN_CODE`], and the sealed code if there was one, to keep beside the message.
pub fn hide(context: &serde_json::Value) -> (serde_json::Value, Option<String>) {
    let mut context = context.clone();
    let Some(fields) = context.as_object_mut() else {
        return (context, None);
    };
    let sealed = fields
        .remove(SEALED_CODE_FIELD)
        .and_then(|value| value.as_str().map(str::to_owned));
    if sealed.is_some() || fields.contains_key(CODE_FIELD) {
        fields.insert(
            CODE_FIELD.to_owned(),
            serde_json::Value::String(HIDDEN_CODE.to_owned()),
        );
    }
    (context, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sealed_code_opens_only_with_the_key_it_was_sealed_with() {
        let key = SealKey::derive("a server secret that is long enough");
        let sealed = SealedSecret::seal(&key, "123456");
        assert!(!sealed.as_str().contains("123456"));
        assert_ne!(sealed, SealedSecret::seal(&key, "123456"), "fresh nonce");
        assert_eq!(open(&key, sealed.as_str()).as_deref(), Ok("123456"));
        let other = SealKey::derive("another server secret entirely!!");
        assert_eq!(open(&other, sealed.as_str()), Err(SealError::DoesNotOpen));
        let mut tampered = sealed.as_str().to_owned();
        let last = if tampered.ends_with('A') { 'B' } else { 'A' };
        tampered.pop();
        tampered.push(last);
        assert!(open(&key, &tampered).is_err());
        assert_eq!(open(&key, "123456"), Err(SealError::Malformed));
        assert_eq!(open(&key, "v1.!!"), Err(SealError::Malformed));
    }

    #[test]
    fn reveal_opens_the_code_for_rendering_and_hide_keeps_it_out_of_the_mailbox() {
        let key = SealKey::derive("a server secret that is long enough");
        let sealed = SealedSecret::seal(&key, "654321");
        let context = json!({"code_sealed": sealed.as_str(), "minutes": 15, "name": "Ada"});
        let revealed = reveal(&key, &context).expect("opens");
        assert_eq!(revealed["code"], "654321");
        assert!(revealed.get(SEALED_CODE_FIELD).is_none());
        let (hidden, kept) = hide(&context);
        assert_eq!(hidden["code"], HIDDEN_CODE);
        assert_eq!(kept.as_deref(), Some(sealed.as_str()));
        assert!(!hidden.to_string().contains(sealed.as_str()));
        let (legacy, kept) = hide(&json!({"code": "111111"}));
        assert_eq!((legacy["code"].as_str(), kept), (Some(HIDDEN_CODE), None));
        let plain = json!({"amount": "NGN 1.00"});
        assert_eq!(reveal(&key, &plain), Ok(plain.clone()));
        assert_eq!(hide(&plain), (plain, None));
    }
}
