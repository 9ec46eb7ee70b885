//! A presented secret checked against its stored Argon2id hash before the transaction:
//! the slow part, done in a worker's `prepare`, so a batch's checks run side by side on
//! the hashing threads and no transaction holds a row lock while Argon2 runs. The
//! handler trusts the answer only when the hash it finds under lock is still the one
//! checked. No I/O beyond the hashing threads.

use super::hashing::{HashError, PinHasher};

/// The answer of a check made before the transaction, and the hash it was made against.
pub struct Checked {
    /// The stored hash the secret was checked against.
    hash: String,
    /// Whether it matched.
    matched: bool,
}

impl Checked {
    /// Checks `presented` against `hash` on a hashing thread.
    pub async fn against(
        hasher: &PinHasher,
        presented: &str,
        hash: String,
    ) -> Result<Checked, HashError> {
        let matched = hasher
            .verify_off_thread(presented.to_owned(), hash.clone())
            .await?;
        Ok(Checked { hash, matched })
    }
}

/// Compares a presented secret with the hash found under lock (a missing hash never
/// matches), reusing the check made before the transaction when it was against this
/// hash, and checking again otherwise.
pub async fn matches(
    hasher: &PinHasher,
    presented: &str,
    hash: Option<&String>,
    checked: Option<&Checked>,
) -> Result<bool, HashError> {
    match (hash, checked) {
        (None, _) => Ok(false),
        (Some(hash), Some(checked)) if checked.hash == *hash => Ok(checked.matched),
        (Some(hash), _) => {
            hasher
                .verify_off_thread(presented.to_owned(), hash.clone())
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HashParams;

    fn cheap() -> PinHasher {
        let params = HashParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        };
        PinHasher::new(params).unwrap()
    }

    #[tokio::test]
    async fn a_check_made_before_the_transaction_counts_only_for_the_same_hash() {
        let hasher = cheap();
        let old = hasher.hash("ABCDEFGH").unwrap();
        let new = hasher.hash("KLMNPQRS").unwrap();
        let presented = "ABCDEFGH";
        let checked = Checked::against(&hasher, presented, old.clone())
            .await
            .unwrap();
        assert!(checked.matched);
        // The hash is still the one checked: its answer is used.
        assert!(
            matches(&hasher, presented, Some(&old), Some(&checked))
                .await
                .unwrap()
        );
        // The secret changed meanwhile: checked again, against the new hash.
        assert!(
            !matches(&hasher, presented, Some(&new), Some(&checked))
                .await
                .unwrap()
        );
        assert!(
            matches(&hasher, "KLMNPQRS", Some(&new), Some(&checked))
                .await
                .unwrap()
        );
        // No hash stored: nothing matches.
        assert!(
            !matches(&hasher, presented, None, Some(&checked))
                .await
                .unwrap()
        );
        // No check made before: checked now.
        assert!(matches(&hasher, presented, Some(&old), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_wrong_secret_checked_before_is_reused_as_wrong() {
        let hasher = cheap();
        let stored = hasher.hash("ABCDEFGH").unwrap();
        let checked = Checked::against(&hasher, "ZZZZZZZZ", stored.clone())
            .await
            .unwrap();
        assert!(
            !matches(&hasher, "ZZZZZZZZ", Some(&stored), Some(&checked))
                .await
                .unwrap()
        );
    }
}
