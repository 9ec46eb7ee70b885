//! AES-256-GCM sealing of secrets that wait in the outbox (and in dead-letter copies):
//! a PIN half exists in clear only in the message that delivers it. Keys carry ids and
//! live in a ring, so they can rotate: new seals use the newest key, and what an older
//! key sealed still opens with it. Pure: no I/O.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;

/// The 32-byte outbox key.
pub struct OutboxKey(Zeroizing<[u8; 32]>);

/// Why a key or a sealed value is not usable. Never holds key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not base64")]
    Base64,
    #[error("must be 32 bytes, is {0}")]
    Length(usize),
    #[error("sealed value too short")]
    TooShort,
    #[error("sealed value does not open: wrong key, altered, or moved")]
    Open,
}

impl OutboxKey {
    /// A key from standard base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<OutboxKey, SealError> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| SealError::Base64)?,
        );
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Length(bytes.len()))?;
        Ok(OutboxKey(Zeroizing::new(array)))
    }

    /// A new random key from the OS CSPRNG.
    pub fn generate() -> OutboxKey {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        OutboxKey(key)
    }

    /// The key in standard base64 (for `pinflow keygen`).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.as_ref())
    }

    /// The first 8 hex digits of the key's SHA-256: tells keys apart without showing
    /// them.
    pub fn key_id(&self) -> String {
        let digest = Sha256::digest(self.0.as_ref());
        hex::encode(&digest[..4])
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }

    /// Seals `plaintext`, binding it to `aad`: a random nonce followed by the
    /// ciphertext and tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(sealed);
        out
    }

    /// Opens what `seal` made with the same key and `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SealError::TooShort);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }
}

/// Every outbox key this process holds, oldest first. New seals use the newest; a
/// sealed value names its key by id, so older ones keep opening until retired.
pub struct KeyRing {
    /// Never empty.
    keys: Vec<OutboxKey>,
}

impl KeyRing {
    /// A ring of these keys, oldest first; `None` when there are none.
    pub fn new(keys: Vec<OutboxKey>) -> Option<KeyRing> {
        (!keys.is_empty()).then_some(KeyRing { keys })
    }

    /// A ring of one key.
    pub fn single(key: OutboxKey) -> KeyRing {
        KeyRing { keys: vec![key] }
    }

    /// The key new seals use.
    pub fn current(&self) -> &OutboxKey {
        self.keys.last().expect("a key ring is never empty")
    }

    /// The key with this id, if the ring holds it.
    pub fn find(&self, key_id: &str) -> Option<&OutboxKey> {
        self.keys.iter().find(|k| k.key_id() == key_id)
    }

    /// Every key id, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(OutboxKey::key_id).collect()
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRing({})", self.ids().join(", "))
    }
}

impl fmt::Debug for OutboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutboxKey({})", self.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_and_aad_only() {
        let key = OutboxKey::generate();
        let sealed = key.seal(b"ABCDEFGH", b"message-1");
        assert!(!sealed.windows(8).any(|w| w == b"ABCDEFGH"));
        assert_eq!(
            key.open(&sealed, b"message-1").unwrap().as_slice(),
            b"ABCDEFGH"
        );
        assert_eq!(key.open(&sealed, b"message-2"), Err(SealError::Open));
        assert_eq!(
            OutboxKey::generate().open(&sealed, b"message-1"),
            Err(SealError::Open)
        );
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert_eq!(key.open(&tampered, b"message-1"), Err(SealError::Open));
        assert_eq!(
            key.open(&sealed[..10], b"message-1"),
            Err(SealError::TooShort)
        );
    }

    #[test]
    fn keys_round_trip_through_base64_and_bad_ones_are_refused() {
        let key = OutboxKey::generate();
        let again = OutboxKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(again.key_id(), key.key_id());
        assert_eq!(key.key_id().len(), 8);
        assert_eq!(
            OutboxKey::from_base64("not base64!").unwrap_err(),
            SealError::Base64
        );
        assert_eq!(
            OutboxKey::from_base64("AAAA").unwrap_err(),
            SealError::Length(3)
        );
    }

    #[test]
    fn a_ring_seals_with_its_newest_key_and_finds_the_others() {
        let (old, new) = (OutboxKey::generate(), OutboxKey::generate());
        let (old_id, new_id) = (old.key_id(), new.key_id());
        let ring = KeyRing::new(vec![old, new]).unwrap();
        assert_eq!(ring.current().key_id(), new_id);
        assert!(ring.find(&old_id).is_some());
        assert!(ring.find("00000000").is_none());
        assert!(KeyRing::new(Vec::new()).is_none());
        assert!(!format!("{ring:?}").contains(&ring.current().to_base64()));
    }

    #[test]
    fn debug_shows_the_key_id_not_the_key() {
        let key = OutboxKey::generate();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.to_base64()));
        assert!(shown.contains(&key.key_id()));
    }
}
