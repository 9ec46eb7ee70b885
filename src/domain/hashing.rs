//! Argon2id hashing of PINs, with the work moved off the async threads onto the
//! hashing threads (see `hash_pool`).

use std::sync::Arc;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use super::hash_pool::{HashPool, OtherWork};
use crate::telemetry::metrics;

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
    #[error("the hashing threads are gone")]
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
    /// Hashing is CPU- and memory-bound: one thread per core, so a burst of requests
    /// queues there, and Argon2's work memory (19 MiB at the default cost) exists
    /// once per thread, reused, instead of a fresh allocation each time that the
    /// allocator keeps long after it is freed.
    pool: HashPool,
}

/// Length of the stored hash.
const OUTPUT_LEN: usize = 32;

/// The cores this process may run on: the default number of hashing threads.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl PinHasher {
    /// A hasher with these parameters, and its hashing threads (one per core).
    pub fn new(params: HashParams) -> Result<PinHasher, HashError> {
        PinHasher::with_threads(params, cores())
    }

    /// A hasher with these parameters that runs `threads` hashes at a time.
    pub fn with_threads(params: HashParams, threads: usize) -> Result<PinHasher, HashError> {
        PinHasher::beside(params, threads, threads, &Arc::default())
    }

    /// A hasher that runs `threads` hashes at a time, but only `keep` (at least one)
    /// while `other` says commands that do not hash are being handled: the other
    /// threads step aside for them between two hashes (see `hash_pool`).
    pub fn beside(
        params: HashParams,
        threads: usize,
        keep: usize,
        other: &Arc<OtherWork>,
    ) -> Result<PinHasher, HashError> {
        Ok(PinHasher {
            params: params.argon2_params()?,
            pool: HashPool::start(threads.max(1), keep, other)?,
        })
    }

    /// Hashes at a time.
    pub fn parallel(&self) -> usize {
        self.pool.threads()
    }

    /// Runs Argon2id with `params` into `out`, in `memory` when it is the size these
    /// parameters need or can be made so; a check against other (older) costs gets
    /// memory of its own, so `memory` stays the size the configured costs need.
    fn compute(
        &self,
        params: Params,
        secret: &[u8],
        salt: &[u8],
        out: &mut [u8],
        memory: &mut Vec<Block>,
    ) -> Result<(), HashError> {
        let blocks = params.block_count();
        let mut own = Vec::new();
        let memory = if blocks == self.params.block_count() {
            memory.resize(blocks, Block::default());
            memory
        } else {
            own.resize(blocks, Block::default());
            &mut own
        };
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into_with_memory(secret, salt, out, memory)
            .map_err(|e| HashError::Hash(e.to_string()))
    }

    /// The PHC string of `secret`, with a random salt.
    pub fn hash(&self, secret: &str) -> Result<String, HashError> {
        self.hash_in(secret, &mut Vec::new())
    }

    fn hash_in(&self, secret: &str, memory: &mut Vec<Block>) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| HashError::Hash(e.to_string()))?;
        let mut out = [0u8; OUTPUT_LEN];
        self.compute(
            self.params.clone(),
            secret.as_bytes(),
            salt_raw,
            &mut out,
            memory,
        )?;
        let hash = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params)
                .map_err(|e| HashError::Hash(e.to_string()))?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| HashError::Hash(e.to_string()))?),
        };
        Ok(hash.to_string())
    }

    /// Whether `secret` matches the PHC string `phc` (compared in constant time).
    pub fn verify(&self, secret: &str, phc: &str) -> Result<bool, HashError> {
        self.verify_in(secret, phc, &mut Vec::new())
    }

    fn verify_in(
        &self,
        secret: &str,
        phc: &str,
        memory: &mut Vec<Block>,
    ) -> Result<bool, HashError> {
        let parsed = PasswordHash::new(phc).map_err(|_| HashError::Malformed)?;
        if parsed.algorithm != argon2::ARGON2ID_IDENT {
            return Err(HashError::Malformed);
        }
        let params = Params::try_from(&parsed).map_err(|_| HashError::Malformed)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(HashError::Malformed);
        };
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|_| HashError::Malformed)?;
        let mut out = vec![0u8; expected.len()];
        self.compute(params, secret.as_bytes(), salt_raw, &mut out, memory)?;
        let computed = Output::new(&out).map_err(|_| HashError::Malformed)?;
        Ok(computed == expected)
    }

    /// Whether the PHC string `phc` was made with this hasher's parameters; a hash made
    /// with other (older, weaker) ones is replaced at the next successful check.
    pub fn is_current(&self, phc: &str) -> bool {
        PasswordHash::new(phc)
            .ok()
            .and_then(|parsed| Params::try_from(&parsed).ok())
            .is_some_and(|params| {
                params.m_cost() == self.params.m_cost()
                    && params.t_cost() == self.params.t_cost()
                    && params.p_cost() == self.params.p_cost()
            })
    }

    /// `hash` on a hashing thread.
    pub async fn hash_off_thread(&self, secret: String) -> Result<String, HashError> {
        let secret = Zeroizing::new(secret);
        let hasher = self.clone();
        self.pool
            .run(move |memory| timed(|| hasher.hash_in(&secret, memory)))
            .await?
    }

    /// `verify` on a hashing thread.
    pub async fn verify_off_thread(&self, secret: String, phc: String) -> Result<bool, HashError> {
        let secret = Zeroizing::new(secret);
        let hasher = self.clone();
        self.pool
            .run(move |memory| timed(|| hasher.verify_in(&secret, &phc, memory)))
            .await?
    }
}

/// Runs one hash or check and records how long it took.
fn timed<T>(work: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let result = work();
    metrics::argon2(started.elapsed());
    result
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
    fn hashes_agree_with_the_argon2_crates_own_phc_api() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let hasher = cheap();
        let params = Params::new(64, 1, 1, None).unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let theirs = reference
            .hash_password(b"ABCDEFGH", &salt)
            .unwrap()
            .to_string();
        assert_eq!(hasher.verify("ABCDEFGH", &theirs), Ok(true));
        assert_eq!(hasher.verify("ABCDEFGX", &theirs), Ok(false));
        let ours = hasher.hash("ABCDEFGH").unwrap();
        assert!(
            reference
                .verify_password(b"ABCDEFGH", &PasswordHash::new(&ours).unwrap())
                .is_ok()
        );
    }

    #[test]
    fn a_hash_made_with_other_costs_still_verifies() {
        let old = PinHasher::new(HashParams {
            m_cost_kib: 128,
            t_cost: 2,
            p_cost: 1,
        })
        .unwrap();
        let phc = old.hash("ABCDEFGH").unwrap();
        assert_eq!(cheap().verify("ABCDEFGH", &phc), Ok(true));
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
