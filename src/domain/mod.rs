//! Pure rules, no I/O: tax code, contacts, PIN generation and hashing, validity
//! periods, the credential state machine.

pub mod checked;
pub mod contact;
pub mod country;
pub mod credential;
pub mod device;
mod hash_pool;
pub mod hashing;
pub mod lifecycle;
pub mod period;
pub mod pin;
pub mod tax_code;

pub use contact::{ContactError, Email, Mobile};
pub use country::{Country, CountryError};
pub use hash_pool::OtherWork;
pub use hashing::{HashError, HashParams, PinHasher};
pub use period::{Period, PeriodError};
pub use pin::{InitialPin, PhonePin, Pin, PinHalf, ResetToken};
pub use tax_code::{TaxCode, TaxCodeError};
