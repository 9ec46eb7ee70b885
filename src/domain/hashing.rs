//! Argon2id hashing of PINs, with the work moved off the async threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for HashParams {
    /// The OWASP minimum for Argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        HashParams {
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

/// Why hashing failed. Never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error("stored hash is malformed")]
    Malformed,
    #[error("the blocking pool is gone")]
    Pool,
}

impl HashParams {
    /// Checks that Argon2 accepts these parameters.
    pub fn validate(&self) -> Result<(), HashError> {
        self.argon2_params().map(|_| ())
    }

    fn argon2_params(&self) -> Result<Params, HashError> {
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, None)
            .map_err(|e| HashError::Params(e.to_string()))
    }
}

/// Hashes and verifies secrets with Argon2id.
#[derive(Clone)]
pub struct PinHasher {
    /// The checked parameters.
    params: Params,
    /// Hashing is CPU- and memory-bound: at most one hash per core at a time, so a
    /// burst of requests queues here instead of holding one Argon2 buffer per
    /// blocking thread.
    permits: Arc<Semaphore>,
}

impl PinHasher {
    /// A hasher with these parameters.
    pub fn new(params: HashParams) -> Result<PinHasher, HashError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(PinHasher {
            params: params.argon2_params()?,
            permits: Arc::new(Semaphore::new(cores)),
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string of `secret`, with a random salt.
    pub fn hash(&self, secret: &str) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError::Hash(e.to_string()))
    }

    /// Whether `secret` matches the PHC string `phc`.
    pub fn verify(&self, secret: &str, phc: &str) -> Result<bool, HashError> {
        let parsed = PasswordHash::new(phc).map_err(|_| HashError::Malformed)?;
        match self.argon2().verify_password(secret.as_bytes(), &parsed) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::Password) => Ok(false),
            Err(_) => Err(HashError::Malformed),
        }
    }

    /// `hash` on tokio's blocking pool.
    pub async fn hash_off_thread(&self, secret: String) -> Result<String, HashError> {
        let secret = Zeroizing::new(secret);
        let hasher = self.clone();
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Pool)?;
        tokio::task::spawn_blocking(move || hasher.hash(&secret))
            .await
            .map_err(|_| HashError::Pool)?
    }

    /// `verify` on tokio's blocking pool.
    pub async fn verify_off_thread(&self, secret: String, phc: String) -> Result<bool, HashError> {
        let secret = Zeroizing::new(secret);
        let hasher = self.clone();
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Pool)?;
        tokio::task::spawn_blocking(move || hasher.verify(&secret, &phc))
            .await
            .map_err(|_| HashError::Pool)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PinHasher {
        PinHasher::new(HashParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        })
        .unwrap()
    }

    #[test]
    fn a_hash_verifies_its_secret_and_no_other() {
        let hasher = cheap();
        let phc = hasher.hash("ABCDEFGH").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("ABCDEFGH"));
        assert_eq!(hasher.verify("ABCDEFGH", &phc), Ok(true));
        assert_eq!(hasher.verify("ABCDEFGJ", &phc), Ok(false));
    }

    #[test]
    fn two_hashes_of_one_secret_differ_by_their_salt() {
        let hasher = cheap();
        assert_ne!(
            hasher.hash("ABCDEFGH").unwrap(),
            hasher.hash("ABCDEFGH").unwrap()
        );
    }

    #[test]
    fn a_malformed_hash_is_an_error() {
        assert_eq!(
            cheap().verify("ABCDEFGH", "not a hash"),
            Err(HashError::Malformed)
        );
    }

    #[test]
    fn the_default_parameters_are_the_owasp_minimum() {
        assert_eq!(
            HashParams::default(),
            HashParams {
                m_cost_kib: 19_456,
                t_cost: 2,
                p_cost: 1
            }
        );
        assert!(
            HashParams {
                m_cost_kib: 1,
                t_cost: 0,
                p_cost: 1
            }
            .validate()
            .is_err()
        );
    }

    #[tokio::test]
    async fn hashing_off_thread_gives_the_same_answers() {
        let hasher = cheap();
        let phc = hasher.hash_off_thread("ABCDEFGH".into()).await.unwrap();
        assert!(
            hasher
                .verify_off_thread("ABCDEFGH".into(), phc.clone())
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify_off_thread("XXXXXXXX".into(), phc)
                .await
                .unwrap()
        );
    }
}
