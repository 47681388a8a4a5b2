//! Webhook signatures: HMAC over the raw request body, compared in constant time.

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

/// Paystack's scheme: hex HMAC-SHA512 of the raw body, keyed with the secret key (`x-paystack-signature`).
pub fn hmac_sha512_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha512>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is the HMAC-SHA512 of `body` under `secret`; constant time in the signature.
pub fn verify_hmac_sha512_hex(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(expected) = hex::decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha512>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Hex HMAC-SHA256 (Flutterwave's newer webhook scheme and other providers').
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether two secrets (tokens, keys) are equal, in time that does not depend on where they first differ: both
/// are hashed and the digests compared in full.
pub fn secrets_equal(given: &str, expected: &str) -> bool {
    use sha2::Digest;
    let (given, expected) = (Sha256::digest(given), Sha256::digest(expected));
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_and_secret() {
        let signature = hmac_sha512_hex("sk_test", b"{\"a\":1}");
        assert_eq!(signature.len(), 128);
        assert!(verify_hmac_sha512_hex("sk_test", b"{\"a\":1}", &signature));
        assert!(!verify_hmac_sha512_hex("sk_test", b"{\"a\":2}", &signature));
        assert!(!verify_hmac_sha512_hex(
            "sk_other",
            b"{\"a\":1}",
            &signature
        ));
        assert!(!verify_hmac_sha512_hex("sk_test", b"{\"a\":1}", "not hex"));
        assert_eq!(hmac_sha256_hex("k", b"x").len(), 64);
    }
}
