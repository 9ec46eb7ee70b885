//! The dedicated workers of the product, each in its own folder with only its
//! handlers and its description. This file is the registry: one line per worker.
//! `src/` is the machinery they share and never names one; `main` hands this list to
//! the runtime and to the operator commands.

use crate::runtime::Registration;

/// Declares each worker's module and lists its registration, so adding a worker is
/// its folder and one line below.
macro_rules! registry {
    ($($worker:ident),* $(,)?) => {
        $(pub mod $worker;)*

        /// Every worker, in the order `pinflow run` starts them.
        pub const REGISTRY: &[Registration] = &[$($worker::WORKER),*];
    };
}

registry! {
    issuance,
    phone_pins,
    identity_delegation,
    delivery_receipts,
    verification,
    conversion,
    expiry,
    revocation,
    reset,
}
