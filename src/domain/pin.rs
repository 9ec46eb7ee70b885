//! PIN generation from the operating system's CSPRNG over an alphabet without
//! look-alike characters, and the secret types that carry PINs, halves and tokens.
//! None of them shows its value through `Debug` or `Display`; all are zeroized on
//! drop. Pure: no I/O besides reading the OS random source.

use std::fmt;

use base64::Engine as _;
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

/// Digits and upper-case letters without 0/O, 1/I/L.
pub const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// Random bytes at or above this are drawn again, so that every character of the
/// alphabet is equally likely (256 is not a multiple of its length).
const UNBIASED_BELOW: usize = 256 - 256 % ALPHABET.len();

/// `len` characters of the alphabet, from one read of the OS random source for the
/// usual PIN (a read draws 64 bytes; a byte at or above `UNBIASED_BELOW` is skipped,
/// and another read is made in the rare case that leaves too few). One read instead
/// of one per character: each read is a system call.
fn random_text(len: usize) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::with_capacity(len));
    let mut bytes = Zeroizing::new([0u8; 64]);
    while text.len() < len {
        OsRng.fill_bytes(&mut *bytes);
        let usable = bytes
            .iter()
            .map(|&b| usize::from(b))
            .filter(|&b| b < UNBIASED_BELOW);
        for b in usable.take(len - text.len()) {
            text.push(char::from(ALPHABET[b % ALPHABET.len()]));
        }
    }
    text
}

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name(Zeroizing<String>);

        impl $name {
            /// The clear value, for the one place that must send or hash it.
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// Wraps a value received from a user.
            pub fn from_secret_string(value: String) -> Self {
                $name(Zeroizing::new(value))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(<redacted>)"))
            }
        }

        /// Read from a command's data: the text goes straight into the zeroizing box.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map($name::from_secret_string)
            }
        }
    };
}

secret_type!(
    /// The 16-character initial PIN, delivered in two halves.
    InitialPin
);
secret_type!(
    /// Eight characters of an initial PIN.
    PinHalf
);
secret_type!(
    /// The 8-character PIN given at first access.
    Pin
);
secret_type!(
    /// A temporary PIN for the contact center.
    PhonePin
);
secret_type!(
    /// A single-use reset link token.
    ResetToken
);

impl InitialPin {
    /// A new 16-character initial PIN.
    pub fn generate() -> InitialPin {
        InitialPin(random_text(16))
    }

    /// Characters 1-8 and 9-16.
    pub fn split(&self) -> (PinHalf, PinHalf) {
        let (first, second) = self.0.split_at(8);
        (
            PinHalf(Zeroizing::new(first.to_owned())),
            PinHalf(Zeroizing::new(second.to_owned())),
        )
    }
}

impl Pin {
    /// A new 8-character PIN.
    pub fn generate() -> Pin {
        Pin(random_text(8))
    }
}

impl PhonePin {
    /// A new 8-character phone PIN.
    pub fn generate() -> PhonePin {
        PhonePin(random_text(8))
    }
}

impl ResetToken {
    /// 32 random bytes, URL-safe base64 without padding (43 characters).
    pub fn generate() -> ResetToken {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        ResetToken(Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_alphabet(text: &str) -> bool {
        text.bytes().all(|b| ALPHABET.contains(&b))
    }

    #[test]
    fn an_initial_pin_has_sixteen_characters_without_look_alikes() {
        let pin = InitialPin::generate();
        assert_eq!(pin.expose().len(), 16);
        assert!(in_alphabet(pin.expose()));
        for look_alike in ["0", "O", "1", "I", "L"] {
            assert!(!std::str::from_utf8(ALPHABET).unwrap().contains(look_alike));
        }
    }

    #[test]
    fn every_character_of_the_alphabet_is_about_equally_likely() {
        let mut counts = [0u32; ALPHABET.len()];
        for _ in 0..2_000 {
            for c in InitialPin::generate().expose().bytes() {
                let at = ALPHABET.iter().position(|&a| a == c).unwrap();
                counts[at] += 1;
            }
        }
        // 32,000 characters, about 1,032 each: a standard deviation is about 32.
        let expected = 32_000 / ALPHABET.len() as u32;
        for (at, count) in counts.iter().enumerate() {
            let c = char::from(ALPHABET[at]);
            assert!(
                count.abs_diff(expected) < expected / 5,
                "{c} drawn {count} times, about {expected} expected"
            );
        }
    }

    #[test]
    fn the_halves_concatenate_back_to_the_initial_pin() {
        let pin = InitialPin::generate();
        let (first, second) = pin.split();
        assert_eq!((first.expose().len(), second.expose().len()), (8, 8));
        assert_eq!(
            format!("{}{}", first.expose(), second.expose()),
            pin.expose()
        );
    }

    #[test]
    fn two_generations_differ() {
        assert_ne!(
            InitialPin::generate().expose(),
            InitialPin::generate().expose()
        );
        assert_ne!(Pin::generate().expose(), Pin::generate().expose());
        assert_eq!(Pin::generate().expose().len(), 8);
        assert_eq!(ResetToken::generate().expose().len(), 43);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let pin = InitialPin::generate();
        let (half, _) = pin.split();
        assert!(!format!("{pin:?}").contains(pin.expose()));
        assert!(!format!("{half:?}").contains(half.expose()));
        assert_eq!(
            format!("{:?}", Pin::from_secret_string("ABCDEFGH".into())),
            "Pin(<redacted>)"
        );
    }

    #[test]
    fn a_secret_read_from_json_keeps_its_value_out_of_debug() {
        let pin: Pin = serde_json::from_value(serde_json::json!("K7M2P9QX")).unwrap();
        assert_eq!(pin.expose(), "K7M2P9QX");
        assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");
        let token: ResetToken = serde_json::from_value(serde_json::json!("tok-123")).unwrap();
        assert!(!format!("{token:?}").contains("tok-123"));
    }
}
